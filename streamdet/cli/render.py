"""`streamdet render`: a copied recording segment with its detections drawn in, as a live run draws them."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config.loader import load_config
from ..config.sections import OverlayConfig
from ..outputs.video import RECORDING_SUFFIXES

DESCRIPTION = """\
Draw a copy recording's detections into its segment: SEGMENT.mp4 is decoded, each frame gets the boxes,
labels, zones, lines and counts of its line in the detections file (SEGMENT.jsonl beside it, written by
recording.mode: copy), drawn as a live run draws them, and OUT is encoded as an annotated recording
(H.264, fragmented MP4). Frames the run skipped show the boxes before them for up to 1 s.
"""


def register(sub) -> None:
    p = sub.add_parser("render", help="draw a copied segment's detections into a new video",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("segment", metavar="SEGMENT.mp4", help="a recorded segment")
    p.add_argument("--detections", metavar="FILE.jsonl", help="its detections (default: SEGMENT.jsonl beside it)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help=f"the annotated video ({', '.join(RECORDING_SUFFIXES)})")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--config", metavar="FILE", help="settings file whose overlay: section styles the drawing "
                                                   "(default: the built-in style)")
    p.set_defaults(func=cmd_render)


def cmd_render(args: argparse.Namespace) -> int:
    from .burn import check_job, render_segment

    style = load_config(args.config).overlay if args.config else OverlayConfig()
    job = check_job(Path(args.segment), Path(args.detections) if args.detections else None, Path(args.output),
                    args.overwrite)
    done = render_segment(job, style)
    print(f"rendered {done.frames} frames of {job.segment} into {job.output}; "
          f"{done.lines_used} of {done.lines} detection lines used")
    return 0
