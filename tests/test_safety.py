"""Nothing lost, ever: bad invocations, full disks, closed pipes and damaged inputs, through the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from clirun import assert_one_line_error, cli_env, streamdet, streamdet_process
from helpers import decode, read_jsonl, video_props, wait_for, write_clip
from media import clip, pedestrian_pb


def _digests(root: Path, skip: Path) -> dict[str, str]:
    found = {}
    for path in sorted(root.rglob("*")):
        if skip in path.parents or path == skip or path.is_dir() or path.is_fifo():
            continue
        found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "link"
    return found


@pytest.fixture(scope="module")
def bad_invocations(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """Real media to be wrongly pointed at (a clip with a symlink and a hard link to it, photos, a text file,
    a pipe) in `in`, the settings files the cases name in `work` (their working folder), and the digests of
    both: every case must leave them as they were."""
    root = tmp_path_factory.mktemp("bad-invocations")
    box = root / "in"
    box.mkdir()
    shutil.copy(clip("bikes"), box / "clip.mp4")
    (box / "link.mp4").symlink_to(box / "clip.mp4")
    os.link(box / "clip.mp4", box / "hard.mp4")
    photos = box / "photos"
    photos.mkdir()
    for i, image in enumerate(decode(clip("carphone_pristine"), 3)):
        cv2.imwrite(str(photos / f"p{i}.png"), image)
    shutil.copy(photos / "p0.png", box / "photo.png")
    (box / "notes.mp4").write_text("this is not a video\n" * 20)
    (box / "empty.mp4").write_bytes(b"")
    (box / "existing.mp4").write_bytes(b"an earlier recording")
    os.mkfifo(box / "pipe.ts")
    work = root / "work"
    work.mkdir()
    (work / "unknown.yaml").write_text("detect:\n  treshold: 0.4\n")
    (work / "twice.yaml").write_text("detect:\n  threshold: 0.4\ndetect:\n  threshold: 0.5\n")
    (work / "nan.yaml").write_text("source:\n  open_timeout: .nan\n")
    (work / "twice.txt").write_text("background\nperson\ncar\nperson\n")
    (work / "names.yaml").write_text(f"sources:\n  - {box}/clip.mp4\n  - name: a\n    url: {box}/clip.mp4\n"
                                     f"  - name: a\n    url: {box}/photos\n  - name: a-1\n    url: {box}/photo.png\n")
    (work / "classes.yaml").write_text(f"sources:\n  - {box}/clip.mp4\n  - name: door\n    url: {box}/clip.mp4\n"
                                       "    detect: {classes: [persn]}\n")
    (work / "zone.yaml").write_text(f"sources:\n  - {box}/clip.mp4\n  - name: door\n    url: {box}/clip.mp4\n"
                                    "    events: {zones: [{name: porch, points: [[0, 0], [9999, 0], [0, 10]]}]}\n")
    (work / "camera.yaml").write_text(f"sources:\n  - {box}/clip.mp4\n  - name: door\n    url: {box}/clip.mp4\n"
                                      "    detect:\n      treshold: 0.7\n")
    return box, work, _digests(root, root / "none")


CASES = [
    # (arguments, fragments of the one error line); {in} is the inputs folder
    (["-s", "{in}/clip.mp4", "-o", "{in}/clip.mp4"], ["is the input"]),
    (["-s", "{in}/clip.mp4", "-o", "{in}/link.mp4"], ["is the input"]),
    (["-s", "{in}/clip.mp4", "-o", "{in}/hard.mp4"], ["is the input"]),
    (["-s", "{in}/clip.mp4", "-o", "{in}/photos/../clip.mp4"], ["is the input"]),
    (["-s", "{in}/link.mp4", "--json", "{in}/clip.mp4"], ["is the input"]),
    (["-s", "{in}/clip.mp4", "--summary-json", "{in}/hard.mp4"], ["is the input"]),
    (["-s", "{in}/photos", "-o", "{in}/photos"], ["is the input"]),
    (["-s", "{in}/photos", "-o", "{in}/photos/annotated"], ["lies inside the input"]),
    (["-s", "{in}/photos", "--json", "{in}/photos/d.jsonl"], ["lies inside the input"]),
    (["-s", "{in}/photo.png", "-o", "{in}/photo.png"], ["is the input"]),
    (["-s", "{in}/clip.mp4", "-o", "out.mp4", "--json", "out.mp4"], ["given twice"]),
    (["-s", "{in}/clip.mp4", "--json", "d.jsonl", "--summary-json", "d.jsonl"], ["given twice"]),
    (["-s", "{in}/clip.mp4", "-s", "{in}/photos", "-o", "out.mp4"], ["given twice", "{name}"]),
    (["-s", "{in}/clip.mp4", "-o", "out.jpg"], ["an image name for the video source", ".mp4"]),
    (["-s", "{in}/clip.mp4", "-o", "out.gif"], ["'.gif' is not a supported recording format", ".mp4, .mkv"]),
    (["-s", "{in}/clip.mp4", "-o", "out.webm"], ["'.webm'"]),
    (["-s", "{in}/clip.mp4", "-o", "recording"], ["without an extension"]),
    (["-s", "{in}/photo.png", "-o", "out.mp4"], ["'.mp4' is not a supported picture format", ".png"]),
    (["-s", "{in}/photos", "-o", "out.jpg"], ["folder of images", "give a folder"]),
    (["-s", "{in}/clip.mp4", "-o", "{in}/existing.mp4"], ["exists already", "--overwrite"]),
    (["-s", "{in}/clip.mp4", "-o", "nowhere/out.mp4"], ["folder 'nowhere' does not exist"]),
    (["-s", "{in}/clip.mp4", "-o", "{in}/existing.mp4/out.mp4"], ["is not a folder"]),
    (["-s", "ftp://127.0.0.1/x"], ["ftp:// is not supported", "rtsp://"]),
    (["-s", "file:///tmp/x.mp4"], ["file:// is not supported"]),
    (["-s", "rtmp://user:hunter2@cam/live"], ["rtmp:// is not supported", "***"]),
    (["-s", "{in}/missing.mp4"], ["missing.mp4", "no such file"]),
    (["-s", "{in}/empty.mp4"], ["empty"]),
    (["-s", "{in}/notes.mp4"], ["notes.mp4", "cannot be opened as video"]),
    (["-s", "/dev/video7"], ["no camera at /dev/video7"]),
    (["-s", "{in}/pipe.ts", "--open-timeout", "1"], ["nothing could be read within 1 s", "pipe"]),
    (["-s", "{in}/clip.mp4", "--classes", "999"], ["class id 999"]),
    (["-s", "{in}/clip.mp4", "--classes", "unicorn"], ["class 'unicorn'"]),
    (["-s", "{in}/clip.mp4", "--labels", "twice.txt", "--classes", "person"], ["twice.txt", "'person' is on lines 2 and 4"]),
    (["-s", "{in}/clip.mp4", "--nireq", "10000"], ["nireq", "up to 64"]),
    (["-s", "{in}/clip.mp4", "--threads", "100000"], ["threads", "up to 256"]),
    (["-s", "{in}/clip.mp4", "--threshold", "2"], ["threshold"]),
    (["-s", "{in}/clip.mp4", "--open-timeout", "-1"], ["open_timeout"]),
    (["-s", "{in}/clip.mp4", "--device", "HETERO:NOPE"], ["'NOPE' is not present"]),
    (["-s", "{in}/clip.mp4", "--model", "{in}/missing.xml"], ["missing.xml", "no such file"]),
    (["-s", "{in}/clip.mp4", "--config", "unknown.yaml"], ["line 2", "unknown key 'detect.treshold'"]),
    (["-s", "{in}/clip.mp4", "--config", "twice.yaml"], ["line 3", "'detect' is given twice"]),
    (["--config", "names.yaml"], ["line 5: source name 'a' is given twice", "line 3)", "own name"]),
    (["--config", "classes.yaml"], ["line 3", "source 'door'", "class 'persn'"]),
    (["--config", "zone.yaml"], ["line 3", "source 'door'", "zone 'porch'", "outside"]),
    (["-s", "{in}/clip.mp4", "--config", "nan.yaml"], ["line 2", "source.open_timeout", "finite"]),
    (["--config", "camera.yaml"], ["line 6", "(door)", "treshold"]),
    (["-s", ""], ["url must not be empty"]),
    (["-s", "{in}/clip.mp4", "--font-scale", "nan"], ["font_scale must be a finite number"]),
    (["-s", "{in}/clip.mp4", "--font-scale", "1e300"], ["font_scale", "up to 20"]),
    (["-s", "{in}/clip.mp4", "--line-width", "100000"], ["line_width", "up to 100"]),
    (["-s", "{in}/clip.mp4", "--threshold", "abc"], ["run: argument -t/--threshold: invalid float value", "--help"]),
    (["-s", "{in}/clip.mp4", "--no-such-flag"], ["unrecognized arguments: --no-such-flag"]),
    (["-s", "{in}/clip.mp4", "--zone", "porch:1,2;3,4"], ["zone 'porch' has 2 point(s)"]),
    (["-s", "{in}/clip.mp4", "--zone", "porch:0,0;9999,0;0,10"], ["zone 'porch': point [9999, 0] is outside"]),
    (["-s", "{in}/clip.mp4", "--mqtt", "mqtt://u:pw@127.0.0.1:99999"], ["mqtt: ", "the port must be a number from 1 to 65535"]),
    (["-s", "{in}/clip.mp4", "--serve", "0.0.0.0:8080"], ["reachable from other machines"]),
    # Cheap before slow: a missing model file or snapshots folder is found before a source opens, a broker is
    # dialled or the model loads; `{name}` in the snapshots folder is the source's name.
    (["-s", "{in}/notes.mp4", "--model", "{in}/missing.xml"], ["missing.xml", "no such file"]),
    (["-s", "{in}/notes.mp4", "--snapshots", "nowhere"], ["events.snapshots 'nowhere'", "create it first"]),
    (["-s", "{in}/clip.mp4", "--snapshots", "snaps/{name}", "--mqtt", "mqtt://127.0.0.1:1"],
     ["events.snapshots 'snaps/clip'", "create it first"]),
    (["-s", "{in}/clip.mp4", "--clips", ""], ["clips is empty", "give a folder"]),
    (["-s", "{in}/clip.mp4", "--snapshots", " "], ["snapshots is empty", "give a folder"]),
    (["-s", "{in}/clip.mp4", "--record", "copy"], ["recording.mode copy", "none is given", "--output"]),
]


def _case_id(args: list[str]) -> str:
    return " ".join(a.replace("{in}/", "") or "''" for a in args)


@pytest.mark.parametrize("args, fragments", [pytest.param(a, f, id=_case_id(a)) for a, f in CASES])
def test_a_bad_invocation_changes_nothing_and_says_one_line(args, fragments, bad_invocations, tmp_path):
    inputs, work, before = bad_invocations
    args = [a.replace("{in}", str(inputs)) for a in args]
    if "--model" not in args:
        args += ["--model", str(pedestrian_pb())]
    cache = tmp_path / "empty-cache"
    # A pipe nobody writes to blocks its reader thread in open() for good: only a process's end frees it.
    run = streamdet_process if "pipe.ts" in " ".join(args) else streamdet
    proc = run("run", *args, env=cli_env(cache), cwd=work, timeout=60)
    line = assert_one_line_error(proc, *fragments)
    assert "hunter2" not in proc.stderr, line
    assert _digests(inputs.parent, inputs.parent / "none") == before, f"files changed by {args}: {line}"
    # Everything here is found by the cheap checks: the model was never converted.
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*")), f"model converted for {args}"


def _in_full_disk(tmp_path: Path, cache: Path, size: str, args: list[str],
                  fill: bool | int = False) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run streamdet (its model cache `cache`) with `disk` (a tmpfs of `size`, filled first by another program:
    completely, or with `fill` bytes) as its output folder, in a private mount namespace; returns the run and what
    the disk held after it (the mount goes with it; copies of what streamdet left are in tmp_path/"left")."""
    disk, listing, left = tmp_path / "disk", tmp_path / "listing.json", tmp_path / "left"
    disk.mkdir(exist_ok=True)
    wrapper = """
import json, os, shutil, subprocess, sys
disk, listing, size, fill, left = sys.argv[1:6]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", disk], check=True)
if fill != "0":
    fd = os.open(os.path.join(disk, "filler"), os.O_WRONLY | os.O_CREAT)
    try:
        while fill == "all" or os.fstat(fd).st_size < int(fill):
            os.write(fd, b"x" * 4096)
    except OSError:
        pass
    os.close(fd)
proc = subprocess.run([sys.executable, "-m", "streamdet", "run", *sys.argv[6:]])
shutil.copytree(disk, left, ignore=shutil.ignore_patterns("filler"))
import cv2
found = {}
for name in os.listdir(disk):
    # Frames another reader decodes from what is left: the recording's crash-safe form must play.
    cap = cv2.VideoCapture(os.path.join(disk, name))
    frames = 0
    while cap.isOpened() and cap.read()[0]:
        frames += 1
    found[name] = frames
json.dump(found, open(listing, "w"))
sys.exit(proc.returncode)
"""
    resolved = [a.replace("{disk}", str(disk)) for a in args]
    filled = "all" if fill is True else str(int(fill))
    proc = subprocess.run(["unshare", "-rm", sys.executable, "-c", wrapper, str(disk), str(listing), size,
                           filled, str(left), *resolved], env=cli_env(cache),
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    return proc, json.loads(listing.read_text())


@pytest.fixture
def shared_cache(model_cache, tmp_path) -> Path:
    """The session's model cache, through a link (`shared-cache`) beside tmp_path: `_in_full_disk`'s cache."""
    link = tmp_path.parent / "shared-cache"
    link.unlink(missing_ok=True)
    link.symlink_to(model_cache)
    return link


def _mp4_boxes(path: Path) -> list[tuple[bytes, int]]:
    """The top-level boxes of an MP4 (type, size); raises if the file ends inside one."""
    data, boxes, at = path.read_bytes(), [], 0
    while at < len(data):
        size, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8]
        if size == 1:
            size = int.from_bytes(data[at + 8:at + 16], "big")
        assert size >= 8 and at + size <= len(data), f"{path.name} ends inside a {kind!r} box at byte {at}"
        boxes.append((kind, size))
        at += size
    return boxes


def _assert_whole_fragments(path: Path) -> None:
    kinds = [kind for kind, _ in _mp4_boxes(path)]
    if kinds[-1] == b"mfra":
        kinds.pop()  # the fragments' index, written on a clean close
    assert kinds[:2] == [b"ftyp", b"moov"] and kinds[-2:] == [b"moof", b"mdat"], kinds


@pytest.mark.parametrize("what, size, fill, args, fragment", [
    # The recording needs about 0.9 MB: the write itself fails, whether or not the writer's once-a-second
    # free-space check came first (a fast run ends before it).
    ("recording", "400k", 0, ["-o", "{disk}/out.mp4"], "out.mp4"),
    ("JSONL", "16k", 0, ["--json", "{disk}/d.jsonl"], "d.jsonl"),
    # Issue #21: a 300 KB disk another program filled to 250 KB.
    ("JSONL", "300k", 250_000, ["--json", "{disk}/d.jsonl", "--loop"], "d.jsonl"),
])
def test_a_full_disk_is_an_error_naming_the_output(what, size, fill, args, fragment, tmp_path, shared_cache):
    proc, left = _in_full_disk(tmp_path, shared_cache, size,
                               ["-s", str(clip("bikes")), "--model", str(pedestrian_pb()), *args], fill=fill)
    line = assert_one_line_error(proc, fragment, "No space left on device")
    assert "end of stream" not in proc.stderr, line
    left.pop("filler", None)
    if what == "recording":
        # Fragmented MP4: what was written before the disk filled up plays, and no other file is left;
        # it ends with a whole fragment (a moof and its mdat, perhaps the closing index), not inside one.
        assert list(left) == ["out.mp4"] and 0 < left["out.mp4"] < 250, left
        _assert_whole_fragments(tmp_path / "left" / "out.mp4")
    else:
        assert list(left) == ["d.jsonl"]  # JSONL is written in place, whole lines only (see docs/usage.md)
        assert len(read_jsonl(tmp_path / "left" / "d.jsonl")) > 0


def test_a_recording_that_could_not_be_stored_whole_is_an_error_not_a_broken_file(tmp_path, model_cache):
    """Every write past 400 KB fails (the file size limit) while the disk has room: the run stops with that
    error, and the part written before plays, ending with a whole fragment."""
    import resource
    import signal

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, as on a full disk, instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))

    out = tmp_path / "out.mp4"
    proc = subprocess.run([sys.executable, "-m", "streamdet", "run", "-s", str(clip("bikes")), "--model",
                           str(pedestrian_pb()), "-o", str(out)], env=cli_env(model_cache), capture_output=True,
                          text=True, timeout=120, preexec_fn=limit_file_size, stdin=subprocess.DEVNULL)
    assert_one_line_error(proc, "out.mp4", "File too large")
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
    assert 0 < video_props(out)[0] < 250
    _assert_whole_fragments(out)  # cut back to its last whole fragment


def test_a_summary_that_cannot_be_written_is_an_error(tmp_path, shared_cache):
    args = ["-s", str(clip("carphone_pristine")), "--model", str(pedestrian_pb()), "--summary-json", "{disk}/summary.json"]
    proc, left = _in_full_disk(tmp_path, shared_cache, "16k", args, fill=True)
    assert_one_line_error(proc, "summary.json", "No space left on device")
    assert list(left) == ["filler"]


def test_json_to_dev_full_is_an_error(model_cache):
    proc = streamdet("run", "-s", str(clip("carphone_pristine")), "--model", str(pedestrian_pb()), "--json", "/dev/full",
                     env=cli_env(model_cache))
    assert_one_line_error(proc, "/dev/full", "No space left on device")


def test_json_to_a_pipe_whose_reader_left_ends_quietly(model_cache):
    proc = subprocess.Popen([sys.executable, "-m", "streamdet", "run", "-s", str(clip("bikes")), "--loop",
                             "--model", str(pedestrian_pb()), "--json", "-"], env=cli_env(model_cache),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    first = proc.stdout.readline()  # as `head -n 1` does
    proc.stdout.close()
    _, stderr = proc.communicate(timeout=60)
    assert json.loads(first)["frame"] == 0
    assert proc.returncode == 141, stderr
    assert b"Traceback" not in stderr and b"error" not in stderr.lower(), stderr


def test_a_file_damaged_part_way_is_an_error_unless_ignored(tmp_path, model_cache):
    whole = write_clip(decode(clip("bikes")), tmp_path / "whole.mkv")
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 4 // 10])
    env = cli_env(model_cache)
    proc = streamdet("run", "-s", str(cut), "--model", str(pedestrian_pb()), "-o", str(tmp_path / "a.mp4"),
                     "--json", str(tmp_path / "a.jsonl"), env=env)
    line = assert_one_line_error(proc, "cut.mkv", "decoding stopped at frame", "of 250", "--ignore-errors")
    got = int(line.split("at frame ")[1].split()[0])
    assert 50 < got < 200
    # The frames before the damage are kept, finalised and playable.
    assert (tmp_path / "a.jsonl").read_text().count("\n") == got
    assert len(decode(tmp_path / "a.mp4")) == got
    proc = streamdet("run", "-s", str(cut), "--model", str(pedestrian_pb()), "--json", str(tmp_path / "b.jsonl"),
                     "--ignore-errors", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"decoding stopped at frame {got} of 250" in proc.stderr and "going on" in proc.stderr
    assert (tmp_path / "b.jsonl").read_text().count("\n") == got


def test_one_bad_image_in_a_folder_is_skipped_and_counted(tmp_path, model_cache):
    folder, out = tmp_path / "photos", tmp_path / "annotated"
    folder.mkdir()
    for i, image in enumerate(decode(clip("carphone_pristine"), 4)):
        cv2.imwrite(str(folder / f"p{i}.jpg"), image)
    (folder / "p2.jpg").write_bytes(b"\xff\xd8 not really a jpeg" * 10)
    summary = tmp_path / "summary.json"
    proc = streamdet("run", "-s", str(folder), "--model", str(pedestrian_pb()), "-o", str(out),
                     "--json", str(tmp_path / "d.jsonl"), "--summary-json", str(summary), env=cli_env(model_cache))
    assert proc.returncode == 0, proc.stderr
    assert "p2.jpg: cannot be decoded as an image; skipped" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["p0.jpg", "p1.jpg", "p3.jpg"]
    records = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [r["file"] for r in records] == ["p0.jpg", "p1.jpg", "p3.jpg"]
    assert json.loads(summary.read_text())["sources"][0]["frames_skipped"] == 1
    assert "1 unreadable images skipped" in proc.stderr


def test_one_image_in_gives_a_real_jpeg_out_without_a_status_plate(tmp_path, model_cache):
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), decode(clip("carphone_pristine"), 1)[0])
    env = cli_env(model_cache)
    for name, extra in (("a.jpg", []), ("b.jpg", ["--no-fps"])):
        proc = streamdet("run", "-s", str(photo), "--model", str(pedestrian_pb()), "-o", str(tmp_path / name), *extra,
                         env=env)
        assert proc.returncode == 0, proc.stderr
    data = (tmp_path / "a.jpg").read_bytes()
    assert data[:2] == b"\xff\xd8"
    a, b = cv2.imread(str(tmp_path / "a.jpg")), cv2.imread(str(tmp_path / "b.jpg"))
    original = cv2.imread(str(photo))
    assert np.array_equal(a, b), "a status plate was drawn on a single image"
    assert not np.array_equal(a, cv2.imdecode(cv2.imencode(".jpg", original)[1], cv2.IMREAD_COLOR)), "no boxes drawn"


def test_a_pipe_with_a_writer_is_read_to_the_end(tmp_path, model_cache):
    """The open timeout is for pipes nobody writes to; a program feeding one (ffmpeg ... -f matroska pipe) works."""
    frames = decode(clip("carphone_pristine"))
    stream = write_clip(frames, tmp_path / "stream.mkv")
    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    feeder = subprocess.Popen(["cp", str(stream), str(fifo)])  # blocks until streamdet opens the pipe
    proc = streamdet("run", "-s", str(fifo), "--model", str(pedestrian_pb()), "--json", str(tmp_path / "d.jsonl"),
                     "--open-timeout", "20", env=cli_env(model_cache))
    assert feeder.wait(timeout=30) == 0
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "d.jsonl").read_text().count("\n") == len(frames) == 120


def test_the_output_folder_removed_mid_run_is_an_error_naming_the_recording(tmp_path, model_cache):
    out_dir = tmp_path / "recordings"
    out_dir.mkdir()
    js = tmp_path / "d.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "streamdet", "run", "-s", str(clip("bikes")), "--loop",
                             "--model", str(pedestrian_pb()), "-o", str(out_dir / "out.mp4"), "--json", str(js)],
                            env=cli_env(model_cache), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    wait_for(lambda: js.exists() and js.read_text().count("\n") >= 50, 60, "a recording under way")
    shutil.rmtree(out_dir)
    _, stderr = proc.communicate(timeout=60)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
    assert_one_line_error(done, "out.mp4", "No such file or directory")
    # The other output was finalised: whole lines only.
    assert js.read_text().endswith("\n")


def test_sources_named_after_the_same_file_name_keep_their_own_files(tmp_path, model_cache):
    """Two clip.mp4 from different folders and a source named 'clip': three names, three files, each frame once."""
    for folder, name in (("a", "carphone_pristine"), ("b", "carphone_pristine"), ("c", "bikes")):
        (tmp_path / folder).mkdir()
        shutil.copy(clip(name), tmp_path / folder / ("clip.mp4" if folder != "c" else "other.mp4"))
    config = tmp_path / "site.yaml"
    config.write_text(f"output:\n  json: {tmp_path}/{{name}}.jsonl\nsources:\n  - {tmp_path}/a/clip.mp4\n"
                      f"  - name: clip\n    url: {tmp_path}/c/other.mp4\n  - {tmp_path}/b/clip.mp4\n")
    proc = streamdet("run", "--config", str(config), "--model", str(pedestrian_pb()), env=cli_env(model_cache))
    assert proc.returncode == 0, proc.stderr
    expected = {"clip~1.jsonl": ("clip~1", 120), "clip.jsonl": ("clip", 250), "clip~2.jsonl": ("clip~2", 120)}
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == sorted(expected)
    for file, (name, frames) in expected.items():
        records = [json.loads(line) for line in (tmp_path / file).read_text().splitlines()]
        assert {r["source"] for r in records} == {name}, file
        assert [r["frame"] for r in records] == list(range(frames)), file


def test_a_one_pixel_clip_is_recorded_at_two_by_two(tmp_path, model_cache):
    """H.264 in 4:2:0 needs even sides of at least 2: a 1x1 clip is scaled up, not a failed recording."""
    import av

    clip_1x1 = tmp_path / "dot.mkv"
    with av.open(str(clip_1x1), "w") as container:
        stream = container.add_stream("ffv1", rate=25)  # lossless, and takes a 1x1 picture
        stream.width, stream.height, stream.pix_fmt = 1, 1, "bgr0"
        for i in range(10):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((1, 1, 3), 20 * i, np.uint8), "bgr24")))
        container.mux(stream.encode(None))
    proc = streamdet("run", "-s", str(clip_1x1), "--model", str(pedestrian_pb()), "-o", str(tmp_path / "out.mp4"),
                     env=cli_env(model_cache))
    assert proc.returncode == 0, proc.stderr
    assert video_props(tmp_path / "out.mp4")[:3] == (10, 2, 2)


@pytest.mark.unit
def test_start_in_a_folder_of_the_recording_path_is_refused_in_one_line(tmp_path):
    """Segments live in one folder (where expiry finds them); even a folder literally named {start} is refused."""
    (tmp_path / "d" / "{start}").mkdir(parents=True)
    cache = tmp_path / "cache"
    proc = streamdet("run", "-s", str(clip("carphone_pristine")), "--model", str(pedestrian_pb()),
                     "-o", "d/{start}/cam.mp4", env=cli_env(cache), cwd=tmp_path)
    assert_one_line_error(proc, "d/{start}/cam.mp4", "{start} may only be in the file name")
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))  # refused before the model load
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["{start}"] and not any((tmp_path / "d" / "{start}").iterdir())
