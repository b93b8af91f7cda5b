"""`streamdet bench`: the pipeline against raw inference, cameras per machine, or local against a server."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config.fields import choices
from ..config.loader import load_config
from ..config.sections import DEFAULT_PRECISION, Precision, RecordingMode, override
from ..errors import StreamdetError
from .logs import setup_logging


def register(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="measure the pipeline against raw OpenVINO inference on this machine",
        description="Raw async inference vs the pipeline (headless, recording, JSONL, web view with 0, 1 and 10 "
        "viewers) and live frame age, "
        "interleaved round by round; prints FPS and ratios to raw. With --server: local inference against the "
        "server instead (raw and pipeline FPS, single-request and pipeline latency).",
    )
    p.add_argument("--model", default="ssdlite_mobilenet_v2", help="model name, .xml or .pb")
    p.add_argument("--clip", help="video file to play (repeated up to --frames); with --cameras, the cameras' footage "
                                  "unless --url")
    p.add_argument("--frames", type=int, default=1000, help="frames per measurement")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; figures are medians")
    p.add_argument("--device", default="CPU")
    p.add_argument("--precision", choices=choices(Precision), type=str.lower, default=DEFAULT_PRECISION,
                   help=f"inference precision (default {DEFAULT_PRECISION}, as `streamdet run`)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--server", metavar="URL", help="compare with this KServe v2 server: grpc://HOST:PORT or grpcs://")
    p.add_argument("--server-model", metavar="NAME", help="the model's name on --server (default ssdlite_mobilenet_v2)")
    p.add_argument("--nireq", type=int, metavar="N", help="requests in flight to --server (default 4)")
    capacity = p.add_argument_group(
        "capacity", "with --cameras: simulated cameras play the clip at its frame rate (decoded as they go, newest "
        "frame policy); prints processed fps, drop rate and frame age per camera, and CPU use")
    capacity.add_argument("--cameras", metavar="N|max",
                          help="play N cameras at once; max: add one at a time until a camera drops 5%% or more")
    capacity.add_argument("--seconds", type=float, default=20.0, help="measured seconds per trial (after 3 s of warm-up)")
    capacity.add_argument("--motion", action="store_true", help="with the motion gate on (detect.motion)")
    capacity.add_argument("--url", metavar="URL", help="real cameras instead of played clips: each camera opens its "
                                                        "own connection to this rtsp:// or http(s):// stream")
    capacity.add_argument("--record", choices=("none", *choices(RecordingMode)), default="none",
                          help="record every camera as well: annotated (encoded here) or copy (the camera's own "
                               "stream, needs --url); default none")
    capacity.add_argument("--detect-fps", type=float, default=0.0, metavar="N",
                          help="every camera's detect.fps: the network sees N frames a second of it, the tracks' "
                               "predictions the frames between (default 0: every frame)")
    capacity.add_argument("--sub-url", metavar="URL",
                          help="with --url and --record copy: each camera is detected on its own connection to this "
                               "sub-stream (detect_url, e.g. 640x360) and recorded from --url")
    capacity.add_argument("--ladder", action="store_true",
                          help="with --detect-fps N: run the cameras for each setting in turn (every frame; N fps; N "
                               "fps + motion gate; and with --sub-url, + the sub-stream) and print cameras kept up "
                               "with for each")
    capacity.add_argument("--still-share", type=float, metavar="SHARE",
                          help="play the clip as a mostly still camera: this share of the time (e.g. 0.8) shows one "
                               "of its pictures held still, the rest the clip moving")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from ..bench.capacity import run_cameras
    from ..bench.ladder import run_ladder_cameras
    from ..bench.pipeline import run_bench
    from ..outputs import write_atomically

    clip = Path(args.clip) if args.clip else None
    if (args.url or args.record != "none") and args.cameras is None:
        raise StreamdetError("bench: --url and --record are for --cameras N|max")
    if (args.detect_fps or args.sub_url or args.ladder) and args.cameras is None:
        raise StreamdetError("bench: --detect-fps, --sub-url and --ladder are for --cameras N|max")
    if not 0 <= args.detect_fps <= 240 or (args.ladder and not args.detect_fps):
        raise StreamdetError("bench: --detect-fps must be between 0 and 240 (and more than 0 with --ladder)")
    if args.sub_url and (not args.url or args.record != "copy"):
        raise StreamdetError("bench: --sub-url is a camera's sub-stream, detected on while --url is recorded: "
                             "give --url and --record copy")
    if args.url and args.still_share is not None:
        raise StreamdetError("bench: --still-share plays a clip; real cameras (--url) show what they show")
    if args.record == "copy" and not args.url:
        raise StreamdetError("bench: --record copy records real cameras' own streams; give --url rtsp://...")
    if clip is None and not args.url:
        raise StreamdetError("bench: give --clip FILE (or, with --cameras, --url of a camera)")
    if clip is not None and not clip.is_file():
        raise StreamdetError(f"bench: clip '{clip}' does not exist; give a video file")
    if args.json and (not Path(args.json).resolve().parent.is_dir()
                      or (clip is not None and Path(args.json).resolve() == clip.resolve())):
        raise StreamdetError(f"bench: --json '{args.json}': give a new file in a folder that exists (the figures "
                             "are written there at the end)")
    setup_logging("warning")
    if args.cameras is not None:
        cameras = None if args.cameras == "max" else _count(args.cameras)
        if not 1 <= args.seconds <= 3600 or (args.still_share is not None and not 0 < args.still_share < 1):
            raise StreamdetError("bench: --seconds must be between 1 and 3600 and --still-share between 0 and 1")
        common = dict(seconds=args.seconds, still_share=args.still_share, device=args.device,
                      precision=args.precision, url=args.url, record=args.record, detect_fps=args.detect_fps,
                      sub_url=args.sub_url)
        result = (run_ladder_cameras(args.model, clip, cameras, **common) if args.ladder
                  else run_cameras(args.model, clip, cameras, motion=args.motion, **common))
    elif args.frames < 250 or args.rounds < 1:
        raise StreamdetError("bench: --frames must be at least 250 and --rounds at least 1")
    elif args.server:
        from ..bench.remote import run_remote_bench

        config = load_config(None)  # the built-in settings, with the server's token from the environment
        override(config, "inference", server=args.server, server_model=args.server_model, nireq=args.nireq)
        result = run_remote_bench(args.model, clip, config.inference, frames=args.frames,
                                  rounds=args.rounds, device=args.device, precision=args.precision)
    else:
        result = run_bench(args.model, clip, frames=args.frames, rounds=args.rounds, device=args.device,
                           precision=args.precision)
    print(result.format())
    if args.json:
        write_atomically(args.json, (result.to_json() + "\n").encode())
    return 0


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise StreamdetError(f"bench: --cameras {text!r}: give a number of cameras from 1 to 64, or max")
    return int(text)
