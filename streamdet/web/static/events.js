"use strict";
// The events page (/events), run after review.js, which gives it withToken.
document.getElementById("live").href = withToken("/");
const form = document.getElementById("filters");
let next = null;

function card(e) {
  const li = document.createElement("li");
  li.className = "event";
  li.dataset.id = e.id;
  const img = document.createElement("img");
  img.alt = `${e.label} ${e.track}`;
  if (e.snapshot) img.src = withToken(e.snapshot);
  const text = document.createElement("div");
  text.className = "text";
  const head = document.createElement("div");
  head.className = "label";
  head.textContent = `${e.label} #${e.track} · ${e.source}`;   // textContent, never HTML: names are shown as they are
  const meta = document.createElement("div");
  meta.className = "meta";
  const places = [...e.zones, ...e.lines];
  meta.textContent = `${new Date(e.time).toLocaleString()} · ${e.duration_s === null ? "–" : e.duration_s.toFixed(1) + " s"}` +
    ` · score ${e.score.toFixed(2)}${places.length ? " · " + places.join(", ") : ""}`;
  text.append(head, meta);
  if (e.clip) {
    const play = document.createElement("button");
    play.type = "button";
    play.textContent = "play clip";
    play.addEventListener("click", () => {
      const video = document.getElementById("video");
      video.style.display = "block";
      video.src = withToken(e.clip);
      video.play().catch(() => {});
    });
    text.append(play);
  }
  li.append(img, text);
  return li;
}

function address() {
  const params = new URLSearchParams();
  for (const [key, value] of new FormData(form)) if (value) params.set(key, value);
  return `/api/events?${params}`;
}

async function load(path, replace) {
  try {
    const response = await fetch(withToken(path), { cache: "no-store" });
    if (!response.ok) throw new Error(`${response.status} ${(await response.text()).trim()}`);
    const page = await response.json();
    const list = document.getElementById("events");
    if (replace) list.replaceChildren();
    page.events.forEach((e) => list.append(card(e)));
    next = page.next;
    document.getElementById("more").hidden = !next;
    document.getElementById("summary").textContent = `${list.children.length} event(s) shown`;
  } catch (err) {
    document.getElementById("summary").textContent = `no answer from streamdet (${err.message})`;
  }
}

async function cameras() {
  const response = await fetch(withToken("/api/sources"), { cache: "no-store" });
  if (!response.ok) return;
  const select = form.elements.source;
  for (const s of await response.json()) {
    const option = document.createElement("option");
    option.value = option.textContent = s.name;
    select.append(option);
  }
  const wanted = new URLSearchParams(location.search).get("source");
  if (wanted) select.value = wanted;
}

form.addEventListener("change", () => load(address(), true));
form.addEventListener("submit", (ev) => { ev.preventDefault(); load(address(), true); });
document.getElementById("more").addEventListener("click", () => next && load(next, false));
cameras().finally(() => load(address(), true));
