"""Downloading the published model archive: mirrors, checksum, safe extraction, atomic cache.

Nothing reaches the cache until its size and SHA-384 match the published
values, so an interrupted or tampered download is never trusted later.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError

log = logging.getLogger("streamdet.fetch")

BASE_URL_ENV = "STREAMDET_MODEL_BASE_URL"
CACHE_ENV = "STREAMDET_CACHE_DIR"
# Seconds a server may stay silent (connecting, or between two reads) before the download counts as failed.
TIMEOUT_S = 10
_CHUNK = 1 << 20
# Temporary folders this old were left by a killed process, not by one still working.
_STALE_S = 24 * 3600


@dataclass(frozen=True)
class Archive:
    """A published model archive and where to find it."""

    name: str
    file: str
    size: int
    sha384: str
    graph: str  # the frozen graph's path inside the archive
    base_urls: tuple[str, ...]


SSDLITE_MOBILENET_V2 = Archive(
    name="ssdlite_mobilenet_v2",
    file="ssdlite_mobilenet_v2_coco_2018_05_09.tar.gz",
    size=51025348,
    sha384="8e205630237f1913ac0ed623d48798f1fa03a9e95c467bd149eb5f6107e704a8131cdb0a72fcf6517dafa0ff47d32a4e",
    graph="ssdlite_mobilenet_v2_coco_2018_05_09/frozen_inference_graph.pb",
    base_urls=(
        "https://storage.openvinotoolkit.org/repositories/open_model_zoo/public/2022.1/ssdlite_mobilenet_v2/",
        "http://download.tensorflow.org/models/object_detection/",
    ),
)

KNOWN = {SSDLITE_MOBILENET_V2.name: SSDLITE_MOBILENET_V2}


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir:
        return Path(cache_dir)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "streamdet"


def sweep_stale(folder: Path, prefix: str) -> None:
    """Remove temporary folders a killed download or conversion left behind (they are never trusted, only wasted space)."""
    cutoff = time.time() - _STALE_S
    for entry in folder.glob(prefix + "*"):
        try:
            if entry.is_dir() and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def _urls(archive: Archive, base_url: str | None) -> list[str]:
    base = base_url or os.environ.get(BASE_URL_ENV)
    bases = [base] if base else list(archive.base_urls)
    # Air-gapped sites often have the archive in a plain folder: take its path as a file: URL.
    bases = [Path(b).resolve().as_uri() if "://" not in b and Path(b).is_dir() else b for b in bases]
    return [b.rstrip("/") + "/" + archive.file for b in bases]


def _download(url: str, dest: Path, archive: Archive) -> None:
    """Stream `url` into `dest`, checking size and hash; raises OSError/ValueError on any fault."""
    digest = hashlib.sha384()
    done = 0
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or archive.size)
        bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc=archive.file, leave=False)
        try:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                done += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
                if done > archive.size:
                    raise ValueError(f"more than the expected {archive.size} bytes")
        finally:
            if bar is not None:
                bar.close()
    if done != archive.size:
        raise ValueError(f"got {done} bytes, expected {archive.size} (connection cut?)")
    if digest.hexdigest() != archive.sha384:
        raise ValueError("SHA-384 checksum mismatch: the file is not the published one")


def safe_extract(tar_path: Path, member: str, dest: Path) -> None:
    """Extract one regular file from the archive, refusing any unsafe entry in it."""
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            found = None
            for info in tar.getmembers():
                name = info.name
                parts = Path(name).parts
                if name.startswith("/") or ".." in parts:
                    raise ModelError(f"archive '{tar_path.name}': unsafe path '{name}' (absolute or '..'); refusing it")
                if info.issym() or info.islnk():
                    raise ModelError(f"archive '{tar_path.name}': link entry '{name}'; refusing it")
                if info.isdev() or info.isfifo():
                    raise ModelError(f"archive '{tar_path.name}': device entry '{name}'; refusing it")
                if name == member:
                    found = info
            if found is None or not found.isfile():
                raise ModelError(f"archive '{tar_path.name}': '{member}' is missing")
            source = tar.extractfile(found)
            assert source is not None
            with source, open(dest, "wb") as out:
                shutil.copyfileobj(source, out)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ModelError(f"archive '{tar_path.name}': cannot be read ({exc})") from None


def fetch_graph(name: str, cache_dir: str | os.PathLike | None = None, base_url: str | None = None,
                *, archive: Archive | None = None) -> Path:
    """The verified frozen graph of a known model, downloading it when not cached."""
    archive = archive or KNOWN.get(name)
    if archive is None:
        raise ModelError(f"model '{name}' is not known; known names: {', '.join(KNOWN)}, or give an .xml or .pb path")
    folder = cache_root(cache_dir) / "downloads" / archive.name
    graph = folder / "frozen_inference_graph.pb"
    if graph.is_file():
        return graph
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cache '{folder}': cannot be created ({exc.strerror}); set STREAMDET_CACHE_DIR") from None
    sweep_stale(folder, ".download-")
    failures = []
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        tar_path = Path(tmp) / archive.file
        for url in _urls(archive, base_url):
            log.info("downloading %s (waiting at most %d s for each answer)", url, TIMEOUT_S)
            try:
                _download(url, tar_path, archive)
                break
            # URLError and timeouts are OSErrors; a cut connection can also surface as IncompleteRead.
            except (OSError, ValueError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", None) or exc
                if isinstance(reason, TimeoutError) or "timed out" in str(reason):
                    reason = f"no answer within {TIMEOUT_S} s"
                failures.append(f"{url}: {reason}")
                tar_path.unlink(missing_ok=True)
        else:
            mirror = base_url or os.environ.get(BASE_URL_ENV)
            if mirror:
                advice = (f"check that the mirror ({'model.base_url' if base_url else BASE_URL_ENV} = {mirror}) "
                          f"is reachable and serves {archive.file}")
            else:
                advice = (f"to work offline, convert a local frozen graph with `streamdet model convert FILE.pb` "
                          f"or set {BASE_URL_ENV} to a mirror")
            raise ModelError(f"model '{archive.name}' could not be downloaded ({'; '.join(failures)}); {advice}")
        staged = Path(tmp) / "frozen_inference_graph.pb"
        safe_extract(tar_path, archive.graph, staged)
        os.replace(staged, graph)
    return graph
