"use strict";
// The live page's players, run after overlay.js (drawDetections) and before page.js (which makes the tiles).
// Each source's H.264 stream (/live/{name}.mp4 over a WebSocket) plays through Media Source Extensions, its
// detections (/live/{name}.detections) drawn over it on the frame shown. Without MSE (MediaSource, or Safari's
// ManagedMediaSource) the tile shows the MJPEG stream (/stream/{name}.mjpg) as before.
const LiveMSE = window.ManagedMediaSource || window.MediaSource;
const LIVE_MSE = Boolean(LiveMSE && LiveMSE.isTypeSupported('video/mp4; codecs="avc1.42E01E"'));
const BEHIND_S = 1.0;     // past this behind the newest picture, the player jumps to where it wants to be
const EDGE_S = 0.15;      // the least it stays behind it (a frame or so of room)
const CATCH_UP_S = 0.2;   // this much further behind than it wants, the player plays at 1.1x
const LINE_HOLD_S = 1.0;  // a frame the run did not process shows the newest earlier boxes, at most this old
const LINE_SLACK_S = 0.02;
const KEEP_S = 10;        // played video kept in the buffer
const livePlayers = new Map();  // by source name (the tests read their figures)

function liveUrl(path) {
  const url = new URL(withToken(path), location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

class LivePlayer {
  constructor(name) {
    this.name = name;
    this.el = document.createElement("div");
    this.el.className = "player";
    this.el.dataset.mode = LIVE_MSE ? "mse" : "mjpeg";
    this.el.title = "click for full screen";
    this.el.addEventListener("click", () => this.fullScreen());
    this.lines = [];          // the newest detections lines of this stream, in time order
    this.delays = [];         // ms from a frame's arrival at streamdet to its display (frames with a line)
    this.frames = { shown: 0, own: 0 };  // frames shown with boxes, and of those with their own frame's boxes
    this.presented = [];      // the newest frames shown: [mediaTime, time of the line drawn or null]
    this.lineTimes = [];      // the newest lines' times (which frames the run processed)
    this.lags = [];           // s from the newest picture's time to a line's, when the line came
    this.shown = null;        // what the last frame shown had drawn: {mediaTime, t, detections}
    this.timer = null;
    if (LIVE_MSE) {
      this.video = document.createElement("video");
      this.video.muted = true;
      this.video.playsInline = true;
      this.video.disableRemotePlayback = true;  // ManagedMediaSource plays only so
      this.canvas = document.createElement("canvas");
      this.canvas.className = "overlay";
      this.canvas.dataset.boxes = "0";
      this.el.append(this.video, this.canvas);
      this.follow();
    } else {
      this.img = document.createElement("img");
      this.img.alt = name;
      this.img.addEventListener("error", () => this.retry());
      this.el.append(this.img);
    }
  }

  path(kind) { return `/live/${encodeURIComponent(this.name)}.${kind}`; }

  start() {
    this.stop();
    if (!LIVE_MSE) {
      this.img.src = withToken(`/stream/${encodeURIComponent(this.name)}.mjpg`) + `${token ? "&" : "?"}t=${Date.now()}`;
      return;
    }
    const socket = new WebSocket(liveUrl(this.path("mp4")));
    socket.binaryType = "arraybuffer";
    const stream = { socket, queue: [], buffer: null, source: null, started: false };
    this.stream = stream;
    socket.onmessage = (event) => this.received(stream, event.data);
    socket.onclose = () => { if (this.stream === stream) this.retry(); };
    const detections = new WebSocket(liveUrl(this.path("detections")));
    detections.onmessage = (event) => this.addLines(stream, event.data);
    this.detections = detections;
  }

  stop() {
    clearTimeout(this.timer);
    if (this.img) this.img.removeAttribute("src");
    const stream = this.stream;
    this.stream = null;
    for (const socket of [stream && stream.socket, this.detections]) if (socket) socket.close();
    this.detections = null;
    if (stream && stream.url) {
      this.video.removeAttribute("src");
      this.video.load();
      URL.revokeObjectURL(stream.url);
    }
    this.lines = [];
  }

  retry() {
    // The stream ended (a camera back with another picture, the run stopped, a timeout): again a little later.
    this.stop();
    if (!document.hidden) this.timer = setTimeout(() => this.start(), 2000);
  }

  received(stream, data) {
    if (typeof data === "string") {  // the stream's first message: what it is
      const hello = JSON.parse(data);
      stream.mime = hello.mime;
      this.el.dataset.drawn = hello.drawn ? "yes" : "no";  // boxes in the picture already: none drawn over it
      stream.source = new LiveMSE();
      stream.url = URL.createObjectURL(stream.source);
      stream.source.addEventListener("sourceopen", () => {
        stream.buffer = stream.source.addSourceBuffer(stream.mime);
        stream.buffer.addEventListener("updateend", () => this.appended(stream));
        this.append(stream);
      });
      this.video.src = stream.url;
      return;
    }
    stream.queue.push(data);
    this.append(stream);
  }

  append(stream) {
    const buffer = stream.buffer;
    if (!buffer || buffer.updating || !stream.queue.length || this.stream !== stream) return;
    try {
      buffer.appendBuffer(stream.queue.shift());
    } catch (err) {
      this.retry();  // the buffer is full or the stream is broken: start again at the newest keyframe
    }
  }

  appended(stream) {
    if (this.stream !== stream) return;
    const video = this.video, ranges = stream.buffer.buffered;
    if (ranges.length) {
      const end = ranges.end(ranges.length - 1);
      // Near the live edge: at the start, after a skip to a newer keyframe (a gap), or when over 1 s behind.
      // The player keeps as far behind the newest picture as a frame's detections come after it (so each
      // frame is drawn with its own boxes), no further: 10% faster when behind that, 10% slower when ahead.
      const behind = end - video.currentTime, target = this.target();
      video.playbackRate = behind > target + CATCH_UP_S ? 1.1 : behind < target - 0.05 ? 0.9
        : Math.abs(behind - target) < 0.05 ? 1.0 : video.playbackRate;
      if (!stream.started || video.currentTime < ranges.start(ranges.length - 1) || behind > BEHIND_S) {
        video.currentTime = Math.max(ranges.start(ranges.length - 1), end - target);
        if (!stream.started) video.play().catch(() => {});
        stream.started = true;
      } else if (!stream.buffer.updating && video.currentTime - ranges.start(0) > 2 * KEEP_S) {
        stream.buffer.remove(0, video.currentTime - KEEP_S);
        return;
      }
    }
    this.append(stream);
  }

  addLines(stream, text) {
    for (const row of text.split("\n")) {
      const line = JSON.parse(row);
      if (this.lines.length && line.session !== this.lines[this.lines.length - 1].session) this.lines = [];
      this.lines.push(line);
      this.lineTimes.push(line.t);
      // How far the newest picture had got when this frame's detections came: the run's detection delay.
      const ranges = stream.buffer ? stream.buffer.buffered : null;
      if (ranges && ranges.length && stream === this.stream) {
        this.lags.push(ranges.end(ranges.length - 1) - line.t);
        if (this.lags.length > 100) this.lags.shift();
      }
    }
    if (this.lineTimes.length > 2000) this.lineTimes.splice(0, this.lineTimes.length - 2000);
    if (this.lines.length > 200) this.lines.splice(0, this.lines.length - 200);
  }

  target() {
    // The longest of the newest 100 detection delays, and a little room: where the player wants to be.
    if (!this.lags.length) return EDGE_S;
    return Math.min(BEHIND_S - 0.3, Math.max(EDGE_S, Math.max(...this.lags) + 0.05));
  }

  lineAt(t) {
    let found = null;
    for (const line of this.lines) if (line.t <= t + LINE_SLACK_S) found = line;
    return found && t - found.t <= LINE_HOLD_S ? found : null;
  }

  paint(mediaTime) {
    const line = this.el.dataset.drawn === "yes" ? null : this.lineAt(mediaTime);
    this.canvas.dataset.boxes = String(drawDetections(this.canvas, this.video, line));
    this.shown = line ? { mediaTime, t: line.t, detections: line.detections } : null;
    this.presented.push([mediaTime, line ? line.t : null]);
    if (this.presented.length > 1000) this.presented.shift();
    if (!line) return;
    this.frames.shown += 1;
    if (Math.abs(line.t - mediaTime) <= LINE_SLACK_S) {
      this.frames.own += 1;
      this.delays.push(Date.now() - line.epoch_ms);
      if (this.delays.length > 1000) this.delays.shift();
    }
  }

  follow() {
    // In step with the picture: each frame presented where the browser says which it is, else every
    // animation frame (the newest frame is then drawn against the time the player reports).
    const video = this.video;
    if ("requestVideoFrameCallback" in video) {
      const onFrame = (now, meta) => { this.paint(meta.mediaTime); video.requestVideoFrameCallback(onFrame); };
      video.requestVideoFrameCallback(onFrame);
    } else {
      const onAnimation = () => { if (this.stream) this.paint(video.currentTime); requestAnimationFrame(onAnimation); };
      requestAnimationFrame(onAnimation);
    }
    window.addEventListener("resize", () => this.paint(video.currentTime));
  }

  fullScreen() {
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    else if (this.el.requestFullscreen) this.el.requestFullscreen().catch(() => {});
  }
}

// One player per source, for page.js's tiles; a hidden tab fetches nothing.
function livePlayer(name) {
  const player = new LivePlayer(name);
  livePlayers.set(name, player);
  if (!document.hidden) player.start();
  return player.el;
}

document.addEventListener("visibilitychange", () => {
  for (const player of livePlayers.values()) {
    if (document.hidden) player.stop();
    else player.start();
  }
});
