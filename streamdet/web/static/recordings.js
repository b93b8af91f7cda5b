"use strict";
// A camera's recordings page (/recordings/{name}), run after review.js, which gives it withToken.
document.getElementById("live").href = withToken("/");
document.getElementById("events").href = withToken("/events");
// The camera's name is the last part of this page's own address (/recordings/{name}), still encoded.
const camera = location.pathname.split("/").pop();
document.getElementById("title").textContent = `recordings of ${decodeURIComponent(camera)}`;

async function load() {
  try {
    const response = await fetch(withToken(`/api/recordings/${camera}`), { cache: "no-store" });
    if (!response.ok) throw new Error(`${response.status} ${(await response.text()).trim()}`);
    const run = await response.json();
    const list = document.getElementById("segments");
    list.replaceChildren();
    for (const s of run.segments) {
      const li = document.createElement("li");
      const play = document.createElement("button");
      play.type = "button";
      play.textContent = "play";
      play.addEventListener("click", () => {
        const video = document.getElementById("video");
        document.getElementById("player").style.display = "block";
        showDetections(s.detections);
        video.src = withToken(s.url);
        video.play().catch(() => {});
      });
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = `${new Date(s.start).toLocaleString()} · ${s.name} · ${(s.size / 1e6).toFixed(1)} MB`;
      li.append(play, meta);
      list.append(li);
    }
    document.getElementById("summary").textContent = run.recording
      ? `${run.segments.length} segment(s)` : "this camera records no segments in this run ({start} in its recording path)";
  } catch (err) {
    document.getElementById("summary").textContent = `no answer from streamdet (${err.message})`;
  }
}

// ---- The segment's detections (a copy recording's SEGMENT.jsonl) drawn over the video, as a live run draws them.
// A frame at time t shows the line with the largest pts <= t + half a frame; frames the run skipped keep the
// last line's boxes for up to 1 s (as `streamdet render` does).
const HOLD_S = 1.0, SLACK_S = 0.02;
const SCENE = "rgb(255, 215, 0)";  // zones and lines: the live drawing's amber (BGR 0, 215, 255)
let lines = [];       // the played segment's lines, in pts order
let wanted = 0;       // which segment's detections are wanted now: a late answer for another is dropped

async function showDetections(url) {
  const mine = ++wanted;
  lines = [];
  paint();
  if (!url) return;
  try {
    const response = await fetch(withToken(url), { cache: "no-store" });
    if (!response.ok || mine !== wanted) return;
    const text = await response.text();
    if (mine !== wanted) return;
    lines = parseLines(text);
    paint();
  } catch (err) {
    // No detections shown is all that is lost; the video plays on.
  }
}

function parseLines(text) {
  const found = [];
  for (const row of text.split("\n")) {
    try {
      const line = JSON.parse(row);
      if (typeof line.pts === "number" && Array.isArray(line.size) && Array.isArray(line.detections)) found.push(line);
    } catch (err) {
      // a line cut off by a segment still being written
    }
  }
  return found.sort((a, b) => a.pts - b.pts);
}

function lineAt(t) {
  let lo = 0, hi = lines.length;  // the first line after t + slack
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (lines[mid].pts <= t + SLACK_S) lo = mid + 1; else hi = mid;
  }
  const line = lines[lo - 1];
  return line && t - line.pts <= HOLD_S ? line : null;
}

// The class colours of streamdet.drawing.class_color: golden-ratio steps round the hue circle.
function classColor(id) {
  const h = (id * 0.618033988749895) % 1, s = 0.85, v = 0.95;
  const i = Math.floor(h * 6), f = h * 6 - i, p = v * (1 - s), q = v * (1 - s * f), u = v * (1 - s * (1 - f));
  const [r, g, b] = [[v, u, p], [q, v, p], [p, v, u], [p, q, v], [u, p, v], [v, p, q]][i % 6].map((c) => Math.floor(c * 255));
  // Black label text on light colours, white on dark (streamdet.drawing._text_color).
  return { fill: `rgb(${r}, ${g}, ${b})`, ink: 0.114 * b + 0.587 * g + 0.299 * r > 140 ? "#000" : "#fff" };
}

function label(ctx, text, x, y, fill, ink) {
  const w = ctx.measureText(text).width + 6, h = 16;
  const top = y - h >= 0 ? y - h : y;
  ctx.fillStyle = fill;
  ctx.fillRect(x, top, w, h);
  ctx.fillStyle = ink;
  ctx.fillText(text, x + 3, top + 12);
}

function paint(t) {
  const video = document.getElementById("video"), canvas = document.getElementById("overlay");
  const dpr = window.devicePixelRatio || 1;
  const width = video.clientWidth, height = video.clientHeight;
  if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const line = lines.length && video.videoWidth ? lineAt(t ?? video.currentTime) : null;
  canvas.dataset.boxes = line ? String(line.detections.length) : "0";
  if (!line) return;
  // The picture inside the element (letterboxed like object-fit: contain), then the line's pixels onto it.
  const fit = Math.min(width / video.videoWidth, height / video.videoHeight);
  const left = (width - video.videoWidth * fit) / 2, top = (height - video.videoHeight * fit) / 2;
  const sx = video.videoWidth * fit / line.size[0], sy = video.videoHeight * fit / line.size[1];
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.font = "12px system-ui, sans-serif";
  ctx.lineWidth = 2;
  const at = ([x, y]) => [left + x * sx, top + y * sy];
  const scene = line.scene || {};
  for (const [name, zone] of Object.entries(scene.zones || {})) {
    ctx.strokeStyle = SCENE;
    ctx.beginPath();
    zone.points.forEach((p, i) => (i ? ctx.lineTo(...at(p)) : ctx.moveTo(...at(p))));
    ctx.closePath();
    ctx.stroke();
    const [x, y] = at(zone.points[0]);
    label(ctx, `${name}: ${zone.inside} in`, x, y + 16, SCENE, "#000");
  }
  for (const [name, seg] of Object.entries(scene.lines || {})) {
    const [a, b] = [at(seg.points[0]), at(seg.points[1])];
    ctx.strokeStyle = SCENE;
    ctx.beginPath();
    ctx.moveTo(...a);
    ctx.lineTo(...b);
    ctx.stroke();
    label(ctx, `${name}: in ${seg.in} out ${seg.out}`, (a[0] + b[0]) / 2, (a[1] + b[1]) / 2, SCENE, "#000");
  }
  for (const d of line.detections) {
    const [x1, y1] = at(d.box.slice(0, 2)), [x2, y2] = at(d.box.slice(2, 4));
    const color = classColor(d.class_id);
    ctx.strokeStyle = color.fill;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const name = d.track ? `${d.label} #${d.track}` : d.label;
    label(ctx, `${name} ${Number(d.score).toFixed(2)}`, x1, y1, color.fill, color.ink);
  }
}

// In step with the picture: each presented frame where the browser says which it is, else at every
// animation frame while playing; and on seeking, pausing and resizing.
(function follow() {
  const video = document.getElementById("video");
  if ("requestVideoFrameCallback" in video) {
    const onFrame = (now, meta) => { paint(meta.mediaTime); video.requestVideoFrameCallback(onFrame); };
    video.requestVideoFrameCallback(onFrame);
  } else {
    const onAnimation = () => { paint(); if (!video.paused && !video.ended) requestAnimationFrame(onAnimation); };
    video.addEventListener("play", () => requestAnimationFrame(onAnimation));
    video.addEventListener("timeupdate", () => paint());
  }
  for (const kind of ["seeked", "pause", "loadeddata"]) video.addEventListener(kind, () => paint());
  window.addEventListener("resize", () => paint());
})();

load();
