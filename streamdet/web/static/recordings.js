"use strict";
// A camera's recordings page (/recordings/{name}), run after review.js (withToken) and overlay.js (drawDetections).
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

function paint(t) {
  const video = document.getElementById("video"), canvas = document.getElementById("overlay");
  const line = lines.length && video.videoWidth ? lineAt(t ?? video.currentTime) : null;
  canvas.dataset.boxes = String(drawDetections(canvas, video, line));
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
