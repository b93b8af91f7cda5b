"""Running the `streamdet` command as a user would: in this process through the CLI's entry function
(`streamdet`), or as a real process of the installed entry point (`streamdet_process`).

In-process saves a Python and OpenVINO start per call (about 2 s each on 2 cores). The run sees what a
process would: its own environment and working folder, its output on file descriptors 1 and 2 (FFmpeg's
and OpenVINO's own lines included), the exit code argparse or the command gives, a traceback as text on
stderr. What a process has for itself is checked after each call: the logging set-up, the SIGINT and SIGTERM
handlers and the working folder are put back, and no thread the call started may be left running. Tests
about signals, the entry point itself, closed pipes, resource limits or several processes at once use
`streamdet_process`, and so does `model quantize`: importing NNCF changes the process for good (it sets
logging's logger class and keeps a handler on the stdout it found), which left later tests' log records
uncaptured.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import streamdet.sources  # noqa: F401  sets its environment default in this process, outside any call's environment

# The installed console script (pyproject's [project.scripts]), beside this interpreter in the venv.
ENTRY_POINT = Path(sys.executable).with_name("streamdet")


def cli_env(cache_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["STREAMDET_CACHE_DIR"] = str(cache_dir)
    # No window unless a test asks for one on its own Xvfb display.
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    env.update(extra)
    return env


def streamdet_process(*args: str, env: dict[str, str], timeout: float = 120,
                      cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`streamdet ARGS` as its own process, through the installed entry point."""
    return subprocess.run([str(ENTRY_POINT), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          errors="replace", timeout=timeout, stdin=subprocess.DEVNULL)


def streamdet(*args: str, env: dict[str, str], timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`streamdet ARGS` run here through `streamdet.cli.main`, returned as `subprocess.run` would return it."""
    from streamdet.cli import main

    before = set(threading.enumerate())
    with _deadline(timeout, args) as expired:
        with _captured() as output, _environment(env), _folder(cwd), _own_logging(), _own_signals():
            code = _exit_code(main, list(args))
    if expired.is_set():
        raise subprocess.TimeoutExpired(["streamdet", *args], timeout, output["stdout"], output["stderr"])
    _assert_no_thread_left(before, args)
    return subprocess.CompletedProcess(["streamdet", *args], code, output["stdout"], output["stderr"])


def _exit_code(main, argv: list[str]) -> int:
    """What the process would exit with: main's code, SystemExit's (argparse), 1 and a traceback otherwise."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # noqa: BLE001  as the interpreter would: the traceback on stderr, exit code 1
        traceback.print_exc(file=sys.stderr)
        return 1
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit("text"): the text on stderr, exit code 1
    return 1


@contextlib.contextmanager
def _captured():
    """File descriptors 1 and 2 (and sys.stdout/sys.stderr over them) into files, read back as text."""
    output: dict[str, str] = {}
    files = {fd: tempfile.TemporaryFile() for fd in (1, 2)}
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = {fd: os.dup(fd) for fd in files}
    saved_streams = sys.stdout, sys.stderr
    for fd, file in files.items():
        os.dup2(file.fileno(), fd)
    sys.stdout, sys.stderr = (io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), write_through=True,
                                               errors="backslashreplace") for fd in (1, 2))
    try:
        yield output
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        sys.stdout, sys.stderr = saved_streams
        for fd, saved in saved_fds.items():
            os.dup2(saved, fd)
            os.close(saved)
        for fd, name in ((1, "stdout"), (2, "stderr")):
            files[fd].seek(0)
            text = files[fd].read().decode(errors="replace")
            files[fd].close()
            output[name] = text.replace("\r\n", "\n").replace("\r", "\n")  # as text=True's universal newlines


@contextlib.contextmanager
def _environment(env: dict[str, str]):
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _folder(cwd: Path | None):
    saved = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved)


@contextlib.contextmanager
def _own_logging():
    """The root logger as the command leaves it (setup_logging's handler on the captured stderr) undone after."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers = []  # basicConfig(force=True) would close pytest's own handlers
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in saved_handlers:
                handler.close()
        root.handlers = saved_handlers
        root.setLevel(saved_level)


@contextlib.contextmanager
def _own_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def _deadline(timeout: float, args: tuple[str, ...]):
    """SIGINT to this process when the call outlives `timeout`, as Ctrl-C would: `run` stops and finalises."""
    expired, lock, done = threading.Event(), threading.Lock(), [False]

    def interrupt() -> None:
        with lock:
            if not done[0]:
                expired.set()
                os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(timeout, interrupt)
    timer.daemon = True
    timer.start()
    try:
        yield expired
    except KeyboardInterrupt:
        if not expired.is_set():
            raise
    finally:
        with lock:
            done[0] = True
        timer.cancel()
        timer.join()


def _assert_no_thread_left(before: set[threading.Thread], args: tuple[str, ...], grace: float = 10) -> None:
    """Threads the call started must have ended with it (a daemon left behind would outlive its run)."""
    deadline = time.monotonic() + grace
    while True:
        left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not left or time.monotonic() > deadline:
            break
        left[0].join(0.05)
    assert not left, f"streamdet {' '.join(args)} left threads running: {[t.name for t in left]}"


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """A user error: non-zero exit, one `streamdet: error:` line naming the problem, no traceback."""
    assert proc.returncode not in (0, None), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("streamdet: error:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]
