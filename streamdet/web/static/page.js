"use strict";
// The page's own address may carry ?token=; every request of the page carries it on.
const token = new URLSearchParams(location.search).get("token");
const withToken = (path) => token ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : path;
const tiles = new Map();
document.getElementById("review").href = withToken("/events");
// The boxes drawn over the live video, shown or hidden (the choice kept for the next visit).
const boxesButton = document.getElementById("boxes");
function showBoxes(on) {
  document.body.classList.toggle("noboxes", !on);
  boxesButton.setAttribute("aria-pressed", String(on));
  boxesButton.textContent = on ? "boxes: on" : "boxes: off";
  try { localStorage.setItem("streamdet.boxes", on ? "on" : "off"); } catch (err) { /* private mode */ }
}
boxesButton.addEventListener("click", () => showBoxes(document.body.classList.contains("noboxes")));
showBoxes((() => { try { return localStorage.getItem("streamdet.boxes") !== "off"; } catch (err) { return true; } })());

function fmt(value, digits, unit) {
  return value === null || value === undefined ? "–" : `${value.toFixed(digits)}${unit}`;
}

function tile(source) {
  const el = document.createElement("section");
  el.className = "tile";
  el.dataset.source = source.name;
  const head = document.createElement("div");
  head.className = "head";
  const title = document.createElement("span");
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = source.name;   // textContent, never HTML: names and URLs are shown as they are
  const url = document.createElement("span");
  url.className = "url";
  url.textContent = source.url === source.name ? "" : source.url;
  url.title = source.url;
  title.append(name, url);
  const state = document.createElement("span");
  state.className = "state";
  head.append(title, state);
  const player = livePlayer(source.name);  // live.js: H.264 with boxes drawn over it, else MJPEG
  const stats = document.createElement("div");
  stats.className = "stats";
  // The camera's latest ended tracks, and links to all of its events and its recordings.
  const recent = document.createElement("div");
  recent.className = "recent";
  const links = document.createElement("div");
  const events = document.createElement("a");
  events.href = withToken(`/events?source=${encodeURIComponent(source.name)}`);
  events.textContent = "events";
  const recordings = document.createElement("a");
  recordings.href = withToken(`/recordings/${encodeURIComponent(source.name)}`);
  recordings.textContent = "recordings";
  links.append(events, " · ", recordings);
  const latest = document.createElement("div");
  recent.append(latest, links);
  el.append(head, player, stats, recent);
  document.getElementById("tiles").append(el);
  return { el, state, stats, latest };
}

function show(s) {
  let t = tiles.get(s.name);
  if (!t) { t = tile(s); tiles.set(s.name, t); }
  t.state.textContent = s.state;
  t.state.className = `state ${s.state}`;
  if (s.state === "offline") {
    t.stats.innerHTML = "";
    const line = document.createElement("span");
    line.className = "error";
    line.textContent = `offline ${fmt(s.offline_s, 0, " s")}${s.last_error ? ": " + s.last_error : ""}; reconnects ${s.reconnects}`;
    t.stats.append(line);
    return;
  }
  t.stats.textContent =
    (s.live ? `input ${fmt(s.input_fps, 1, " fps")} · ` : "") + `processed ${fmt(s.processed_fps, 1, " fps")} · ` +
    `frames ${s.frames_processed} · dropped ${s.dropped} · latency ${fmt(s.latency_ms, 0, " ms")} · ` +
    `reconnects ${s.reconnects} · ${s.width}×${s.height} · viewers ${s.viewers}`;
}

async function refresh() {
  try {
    const response = await fetch(withToken("/api/stats"), { cache: "no-store" });
    if (response.status === 401 && me.logins) { location.replace("/login"); return; }  // the login expired
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const run = await response.json();
    run.sources.forEach(show);
    // A camera removed while the page is open (a reload) leaves the page too.
    const names = new Set(run.sources.map((s) => s.name));
    for (const [name, t] of tiles) if (!names.has(name)) { t.el.remove(); tiles.delete(name); }
    const offline = run.sources.filter((s) => s.state === "offline").length;
    document.getElementById("summary").textContent =
      `${run.sources.length} source(s)${offline ? `, ${offline} offline` : ""} · ${run.frames} frames · ` +
      `up ${Math.round(run.uptime_s)} s · ${run.web.clients} client(s)` +
      (run.inference ? ` · ${run.inference.devices.join(", ")}, ${run.inference.precision}` : "");
  } catch (err) {
    document.getElementById("summary").textContent = `no answer from streamdet (${err.message}); retrying`;
  }
}

// A few lines per tile: the newest ended tracks of each camera.
async function recentEvents() {
  try {
    for (const [name, t] of tiles) {
      // One camera at a time: a busy camera's events never push a quiet one's out of its tile.
      const response = await fetch(withToken(`/api/events?source=${encodeURIComponent(name)}&limit=3`),
                                   { cache: "no-store" });
      if (!response.ok) return;
      const page = await response.json();
      const lines = page.events.map((e) => {
        const line = document.createElement("div");
        line.className = "event";
        line.textContent = `${new Date(e.time).toLocaleTimeString()} ${e.label} #${e.track}` +
          (e.duration_s === null ? "" : ` ${e.duration_s.toFixed(1)} s`) +
          ([...e.zones, ...e.lines].length ? ` · ${[...e.zones, ...e.lines].join(", ")}` : "");
        return line;
      });
      t.latest.replaceChildren(...lines);
    }
  } catch (err) {
    // the figures' line says when streamdet does not answer
  }
}

// Who is logged in (GET /api/me): the name, and the CSRF token a change (logging out) carries. Without
// logins the asker is the admin and there is nobody to log out.
let me = { name: null, role: "admin", cameras: null, csrf: null, logins: false };

async function whoAmI() {
  try {
    const response = await fetch(withToken("/api/me"), { cache: "no-store" });
    if (response.ok) me = await response.json();
  } catch (err) {
    return;
  }
  if (!me.name) return;
  document.getElementById("me").textContent = `${me.name} (${me.role})`;
  const button = document.getElementById("logout");
  button.hidden = false;
  button.addEventListener("click", async () => {
    await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": me.csrf }, cache: "no-store" });
    location.replace("/login");
  });
}

whoAmI();
refresh();
setInterval(refresh, 1000);
recentEvents();
setInterval(recentEvents, 3000);
