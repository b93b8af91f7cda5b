"use strict";
// One processed frame's detections drawn on a <canvas> over a <video>, as a live run draws them onto the picture
// (streamdet.drawing): the boxes with label, track and score, the zones and lines with their counts. Shared by
// the recordings page (a copied segment's detections file) and the live page (the detections channel).
const SCENE = "rgb(255, 215, 0)";  // zones and lines: the live drawing's amber (BGR 0, 215, 255)

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

// Sizes the canvas to the video as shown and draws `line` (null: nothing) over the picture inside it
// (letterboxed like object-fit: contain), the line's pixels (`size`) scaled to it; returns the boxes drawn.
function drawDetections(canvas, video, line) {
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
  if (!line || !video.videoWidth) return 0;
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
  return line.detections.length;
}
