"""Command line: `streamdet run|render|model|devices|bench|user`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

from . import bench, render, run, user
from . import model as model_commands
from ..errors import PipeClosed, StreamdetError
from .logs import setup_logging


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line, like every other user error (argparse would print the usage block too)."""

    def error(self, message: str):
        command = self.prog.removeprefix("streamdet").strip()
        self.exit(2, f"streamdet: error: {command + ': ' if command else ''}{message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="streamdet", description="Real-time object detection on video with OpenVINO.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run.register(sub)
    render.register(sub)
    bench.register(sub)
    model_commands.register(sub)
    user.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging("info")  # `run` and `bench` set their own level; the model commands report downloads
    try:
        return args.func(args)
    except PipeClosed as exc:
        # Like other Unix tools at the end of a pipe: no message, and no
        # second complaint from Python flushing stdout on the way out.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return exc.exit_code
    except StreamdetError as exc:
        print(f"streamdet: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    """The process's way in (`streamdet`, `python -m streamdet`): `main`, then the exit.

    A thread still inside FFmpeg when the run is over (a camera that never answered, its open not yet
    timed out) calls back into Python when FFmpeg returns; in an interpreter being torn down that
    crashes the process. With every output closed by then, such a process leaves without the teardown.
    """
    code = main() or 0
    if any(t.is_alive() for t in threading.enumerate() if t is not threading.main_thread()):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
