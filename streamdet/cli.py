"""Command line: `streamdet run|model|devices|bench`."""

from __future__ import annotations

import argparse
import sys

from . import cli_model
from .errors import StreamdetError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamdet", description="Real-time object detection on video with OpenVINO.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_model.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except StreamdetError as exc:
        print(f"streamdet: error: {exc}", file=sys.stderr)
        return exc.exit_code
