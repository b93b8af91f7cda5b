"""`streamdet run`: its flags, the settings they make (over config.yaml), and the run with its signals."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from ..config.events import LineConfig, ZoneConfig
from ..config.fields import choices
from ..config.loader import load_config
from ..config.sections import (DEFAULT_PRECISION, Hint, Hwaccel, LogLevel, Policy, Precision, RecordingMode, Transport,
                               Config, override)
from ..errors import ConfigError
from .logs import setup_logging
from .systemd import Notifier
from .reloads import ReloadOnSignal
from ..assembly.changes import SettingsFile


RUN_EXAMPLES = """examples:
  streamdet run --source clip.mp4 --output annotated.mp4 --json detections.jsonl
  streamdet run --source 0 --show                       # first webcam, in a window
  streamdet run --source 'rtsp://user:pass@192.168.1.20:554/stream1' --output cam_{name}.mp4
  streamdet run --source cam1.mp4 --source 'rtsp://host/live' --output out_{name}.mp4
  streamdet run --config site.yaml --threshold 0.6 --classes person,car
  streamdet run --source 'rtsp://host/live' --serve 8080   # watch at http://127.0.0.1:8080/
  streamdet run --source 'rtsp://host/live' --server grpc://10.0.0.5:9000   # infer on OpenVINO Model Server
  streamdet run --config /etc/streamdet/config.yaml   # as a systemd service (Type=notify): docs/service.md

SIGHUP reads the settings file again (with the same flags over it) and applies the difference: cameras
added start, removed ones stop, changed ones restart alone (docs/service.md); POST /api/reload does the same.
"""


def _classes(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def register(sub) -> None:
    p = sub.add_parser(
        "run",
        help="detect objects in video files, images, webcams or network cameras",
        description="Detect objects in every frame, draw them, show and/or record the result.",
        epilog=RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE", help="settings file (default: ./config.yaml if present, else built-in defaults)")
    p.add_argument("-s", "--source", action="append", metavar="SRC",
                   help="video file, image, folder of images, camera index (0), /dev/videoN, rtsp:// or http(s):// URL; repeat for several")
    p.add_argument("-m", "--model", metavar="MODEL", help="model name (ssdlite_mobilenet_v2), .xml IR or TF frozen .pb")
    p.add_argument("-d", "--device", help="OpenVINO device: CPU, GPU, NPU, AUTO, ...")
    p.add_argument("--hint", choices=choices(Hint), type=str.upper, help="OpenVINO performance hint")
    p.add_argument("--precision", choices=choices(Precision), type=str.lower,
                   help=f"inference precision (default {DEFAULT_PRECISION}; bf16/f16 are faster where the device has "
                        "them but change the detections, see docs/precision.md; auto = the device's own choice)")
    p.add_argument("--nireq", type=int, metavar="N", help="async infer requests (0 = the device's optimal number, +1 under THROUGHPUT; 4 with --server)")
    p.add_argument("--streams", type=int, metavar="N", help="CPU streams (0 = from the hint)")
    p.add_argument("--threads", type=int, metavar="N", help="inference threads (0 = from the hint)")
    p.add_argument("--server", metavar="URL",
                   help="infer on a KServe v2 gRPC server (OpenVINO Model Server, Triton) instead of here: "
                        "grpc://HOST:PORT or grpcs://HOST:PORT; no local model is loaded; token from "
                        "STREAMDET_SERVER_TOKEN; see inference.server_* in config.yaml")
    p.add_argument("--server-model", metavar="NAME", help="the model's name on --server (default ssdlite_mobilenet_v2)")
    p.add_argument("-t", "--threshold", type=float, metavar="SCORE", help="minimum score, 0..1")
    p.add_argument("--classes", type=_classes, metavar="LIST", help="only these classes, by name or id, comma-separated")
    p.add_argument("--motion", action="store_const", const=True,
                   help="run the network only on frames where something moved (and every --stationary-interval s)")
    p.add_argument("--stationary-interval", type=float, metavar="S",
                   help="with --motion: seconds after which a still scene is looked at again (default 10)")
    p.add_argument("--detect-fps", type=float, metavar="N",
                   help="detect.fps: the network sees at most N frames a second of each camera, evenly spaced; the "
                        "frames between carry the tracks' predicted boxes (default 0: every frame)")
    p.add_argument("--labels", metavar="FILE", help="label file replacing the COCO labels (one per line, each once, line 0 = background)")
    p.add_argument("-o", "--output", metavar="PATH",
                   help="annotated recording (.mp4 .mkv .avi .mov); for images a folder, or an image name for one image; {name} = source name")
    p.add_argument("--record", dest="record_mode", choices=choices(RecordingMode),
                   help="recording.mode: annotated (the frames as drawn, encoded here) or copy (a network camera's own "
                        "H.264/H.265 as sent, no encoding; detections in a .jsonl beside each file)")
    p.add_argument("--json", metavar="PATH", help="JSON Lines of detections, one line per frame ('-' = stdout)")
    p.add_argument("--summary-json", metavar="PATH", help="write the run summary as JSON")
    p.add_argument("--overwrite", action="store_const", const=True,
                   help="replace output files that exist already (default: refuse, so no earlier result is lost)")
    show = p.add_mutually_exclusive_group()
    show.add_argument("--show", dest="show", action="store_const", const="yes", help="open a window per source")
    show.add_argument("--no-show", dest="show", action="store_const", const="no", help="never open a window")
    p.add_argument("--loop", action="store_const", const=True, help="restart file sources at their end")
    p.add_argument("--policy", choices=choices(Policy),
                   help="frame policy: all = never drop (files), newest = keep only the newest (cameras); auto picks per source")
    p.add_argument("--ignore-errors", action="store_const", const=True,
                   help="a video file that is damaged part-way: keep the frames before the damage and exit 0")
    p.add_argument("--rtsp-transport", choices=choices(Transport), help="RTSP transport")
    p.add_argument("--hwaccel", choices=choices(Hwaccel),
                   help="decode network cameras on a GPU's media engine (auto: what this machine has, else software)")
    p.add_argument("--open-timeout", type=float, metavar="S", help="seconds a camera, stream, pipe or device may take to open")
    p.add_argument("--read-timeout", type=float, metavar="S", help="seconds without a frame before a camera or stream counts as lost and is reopened")
    p.add_argument("--no-labels", dest="labels_shown", action="store_const", const=False, help="draw boxes without label text")
    p.add_argument("--no-scores", dest="scores_shown", action="store_const", const=False, help="leave scores out of the labels")
    p.add_argument("--no-fps", dest="fps_shown", action="store_const", const=False, help="hide the FPS/latency line")
    p.add_argument("--line-width", type=int, metavar="PX", help="box line width (0 = from frame size)")
    p.add_argument("--font-scale", type=float, metavar="X", help="label font scale (0 = from frame size)")
    p.add_argument("--track", action="store_const", const=True,
                   help="give objects identities across frames (on by itself with --events, --zone, --line, --mqtt)")
    p.add_argument("--events", metavar="PATH", help="JSON Lines of events: tracks starting and ending, zones, lines")
    p.add_argument("--zone", action="append", metavar="NAME:X,Y;X,Y;X,Y",
                   help="a zone (3 or more points, pixels or fractions of the frame); repeat for several")
    p.add_argument("--line", action="append", metavar="NAME:X,Y;X,Y",
                   help="a counting line from the first point to the second (crossing it left to right is 'in')")
    p.add_argument("--snapshots", metavar="DIR", help="write a JPEG of each ended track's best frame into DIR")
    p.add_argument("--clips", metavar="DIR", help="write a video of each tracked object into DIR, with events.pre_capture "
                                                  "and post_capture seconds around it")
    p.add_argument("--mqtt", metavar="URL", help="publish events to an MQTT broker: mqtt://[user:pass@]host[:1883] or mqtts://")
    p.add_argument("--mqtt-discovery", action="store_const", const=True,
                   help="with --mqtt: announce each source to Home Assistant (MQTT discovery) with its counts")
    p.add_argument("--serve", metavar="[HOST:]PORT",
                   help="web view: live pictures, figures, MJPEG, JSON, /healthz, /metrics and /events (this run's events and clips) "
                        "on this port (127.0.0.1 unless a host "
                        "is given; another address needs web.users (logins) or web.token or STREAMDET_WEB_TOKEN; "
                        "HTTPS with web.tls_cert and web.tls_key)")
    p.add_argument("--no-metrics", dest="metrics", action="store_const", const=False,
                   help="serve no Prometheus /metrics on the web view (web.metrics)")
    p.add_argument("-q", "--quiet", action="store_const", const=True, help="no progress bar or status lines, only errors and the summary")
    p.add_argument("--log-level", choices=choices(LogLevel), help="logging level")
    p.set_defaults(func=cmd_run)


def settings_file(args: argparse.Namespace) -> str | None:
    """The settings file the run reads: --config, else ./config.yaml if there is one."""
    if args.config is None and Path("config.yaml").is_file():
        return "config.yaml"
    return args.config


def build_config(args: argparse.Namespace) -> Config:
    """The settings: the file, then the flags over it, checked whole. Called again for each reload (SIGHUP,
    POST /api/reload), so a reload reads the same file with the same flags."""
    config = load_config(settings_file(args))
    if args.source:
        config.sources = list(args.source)
    override(config, "model", name=args.model, labels=args.labels)
    override(config, "inference", device=args.device, hint=args.hint, precision=args.precision, nireq=args.nireq,
             streams=args.streams,
             threads=args.threads, server=args.server, server_model=args.server_model)
    override(config, "detect", threshold=args.threshold, classes=args.classes, motion=args.motion,
             stationary_interval=args.stationary_interval, fps=args.detect_fps)
    override(config, "source", loop=args.loop, policy=args.policy, rtsp_transport=args.rtsp_transport,
             ignore_errors=args.ignore_errors, hwaccel=args.hwaccel,
             open_timeout=args.open_timeout, read_timeout=args.read_timeout)
    override(config, "recording", mode=args.record_mode)
    override(config, "output", video=args.output, json=args.json, events=args.events,
             summary_json=args.summary_json, overwrite=args.overwrite)
    override(config, "track", enabled=args.track)
    override(config, "events", snapshots=args.snapshots, clips=args.clips,
             zones=[_shape("--zone", z, ZoneConfig) for z in args.zone] if args.zone else None,
             lines=[_shape("--line", x, LineConfig) for x in args.line] if args.line else None)
    override(config, "mqtt", url=args.mqtt, discovery=args.mqtt_discovery)
    override(config, "display", show=args.show)
    override(config, "overlay", labels=args.labels_shown, scores=args.scores_shown, fps=args.fps_shown,
             line_width=args.line_width, font_scale=args.font_scale)
    override(config, "logging", quiet=args.quiet, level=args.log_level)
    override(config, "web", listen=args.serve, metrics=args.metrics)
    config.check()  # the rules between sections, now that every flag is in
    return config


def _shape(flag: str, text: str, cls):
    """A zone or line from `NAME:X,Y;X,Y;...` (points may also be apart by spaces)."""
    name, sep, rest = text.partition(":")
    try:
        points = [[float(v) for v in point.split(",")] for point in rest.replace(";", " ").split()]
    except ValueError:
        points = []
    if not sep or not name or not points or any(len(p) != 2 for p in points):
        raise ConfigError(f"{flag} {text!r}: write NAME:X,Y;X,Y;... (pixels, or fractions of the frame from 0 to 1)")
    try:
        return cls(name, points)
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


def cmd_run(args: argparse.Namespace) -> int:
    from ..outputs import write_atomically
    from ..pipeline import Pipeline

    config = build_config(args)
    quiet_info = config.logging.quiet and config.logging.level == "info"
    setup_logging("warning" if quiet_info else config.logging.level)
    path = settings_file(args)
    pipeline = Pipeline(config, progress=not config.logging.quiet and sys.stderr.isatty(),
                        settings=SettingsFile(Path(path), lambda: build_config(args)) if path is not None else None)
    notifier = Notifier()  # systemd's Type=notify; nothing at all without $NOTIFY_SOCKET
    # systemd (Type=notify) is told RELOADING=1 and READY=1 around each reload.
    reloads = ReloadOnSignal(pipeline.reload_settings,
                             on_reload=lambda phase: notifier.reloading() if phase == "reloading" else notifier.ready())
    signals = {"code": 0}

    def on_signal(signum, _frame):
        name = signal.Signals(signum).name
        if signals["code"]:
            # Second signal: give up on in-flight frames, still finalise the files.
            pipeline.abort(f"{name} twice")
            return
        signals["code"] = 128 + signum
        notifier.stopping()
        pipeline.stop(name)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, reloads.request)
    try:
        with notifier.watch(pipeline):  # READY=1 now: every source tried, the web view listening
            summary = pipeline.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        reloads.close()
    print(summary.format(), file=sys.stderr)
    if config.output.summary_json:
        write_atomically(config.output.summary_json, (summary.to_json() + "\n").encode())
    if pipeline.aborted:
        # In-flight requests may still hold OpenVINO threads: leave without waiting for them.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(signals["code"] or 130)
    return signals["code"]
