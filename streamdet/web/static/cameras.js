"use strict";
// The admin's form on the page: add, edit and remove a camera through the camera API (/api/config/sources),
// showing the API's own messages. Uses withToken from page.js, loaded before it.
const cameras = { entries: new Map(), csrf: null };
const cameraForm = document.getElementById("camera-form");
const cameraMessage = document.getElementById("camera-message");

// Who may change cameras: /api/me says (admins only); a server without user accounts answers 404, and there
// whoever loaded the page holds the run's token, which has the admin's rights.
async function mayChangeCameras() {
  try {
    const response = await fetch(withToken("/api/me"), { cache: "no-store" });
    if (response.status === 404) return true;
    if (!response.ok) return false;
    const me = await response.json();
    cameras.csrf = me.csrf || null;
    return me.role === "admin";
  } catch (err) {
    return false;
  }
}

function say(text, failed) {
  cameraMessage.textContent = text;
  cameraMessage.className = failed ? "error" : "";
}

async function api(method, name, body) {
  const headers = { "Content-Type": "application/json" };
  if (cameras.csrf) headers["X-CSRF-Token"] = cameras.csrf;  // state-changing requests carry the session's token
  const path = `/api/config/sources${name === undefined ? "" : "/" + encodeURIComponent(name)}`;
  const response = await fetch(withToken(path), { method, headers, cache: "no-store",
                                                  body: body === undefined ? undefined : JSON.stringify(body) });
  let data = {};
  try { data = await response.json(); } catch (err) { data = { error: `HTTP ${response.status}` }; }
  return { ok: response.ok, data };
}

async function listCameras() {
  const { ok, data } = await api("GET");
  if (!ok) { say(data.error || "the cameras could not be listed", true); return; }
  cameras.entries = new Map(data.sources.filter((s) => s.name).map((s) => [s.name, s]));
  const rows = data.sources.map((s) => {
    const row = document.createElement("li");
    const label = document.createElement("span");
    label.textContent = `${s.name || "(no name)"} · ${s.url}`;   // textContent: names and URLs shown as they are
    row.append(label);
    if (s.name) {
      const edit = document.createElement("button");
      edit.type = "button";
      edit.textContent = "edit";
      edit.addEventListener("click", () => fill(s));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "remove";
      remove.addEventListener("click", () => removeCamera(s.name));
      row.append(" ", edit, " ", remove);
    }
    return row;
  });
  document.getElementById("camera-list").replaceChildren(...rows);
}

function fill(entry) {
  cameraForm.elements.name.value = entry ? entry.name : "";
  cameraForm.elements.url.value = entry ? entry.url : "";   // masked: sent back as it is, the stored URL stays
  cameraForm.elements.detect_url.value = entry && entry.detect_url ? entry.detect_url : "";
  cameraForm.elements.mode.value = entry && entry.recording && entry.recording.mode ? entry.recording.mode : "";
}

// The entry as the form leaves it: the camera's other keys (zones, masks, ...) as they were.
function entryFromForm(name) {
  const entry = { ...(cameras.entries.get(name) || {}) };
  delete entry.name;
  entry.url = cameraForm.elements.url.value.trim();
  const detect = cameraForm.elements.detect_url.value.trim();
  if (detect) entry.detect_url = detect; else delete entry.detect_url;
  const recording = { ...(entry.recording || {}) };
  const mode = cameraForm.elements.mode.value;
  if (mode) recording.mode = mode; else delete recording.mode;
  if (Object.keys(recording).length) entry.recording = recording; else delete entry.recording;
  return entry;
}

async function saveCamera(event) {
  event.preventDefault();
  const name = cameraForm.elements.name.value.trim();
  if (!name) { say("give the camera a name", true); return; }
  say("saving…", false);
  const { ok, data } = await api("PUT", name, entryFromForm(name));
  say(ok ? data.line : data.error, !ok);
  if (ok) await listCameras();
}

async function removeCamera(name) {
  if (!confirm(`Remove the camera ${name} from the config file and the run?`)) return;
  const { ok, data } = await api("DELETE", name);
  say(ok ? data.line : data.error, !ok);
  if (ok) { fill(null); await listCameras(); }
}

(async () => {
  if (!(await mayChangeCameras())) return;
  cameraForm.addEventListener("submit", saveCamera);
  document.getElementById("camera-new").addEventListener("click", () => fill(null));
  document.getElementById("cameras").hidden = false;
  await listCameras();
})();
