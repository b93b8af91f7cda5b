"""Fragmented MP4 for Media Source Extensions, written here box by box: an init segment cut from an MP4 header
(the camera's own, or the live encoder's) and one fragment per sample, so each frame leaves the moment it is
known instead of when a muxer decides to flush its fragment.

An init segment keeps the video track (H.264) and, when asked, an AAC sound track: what every browser with MSE
plays. It drops the edit lists (MSE places samples by their decode times alone) and anything after the moov.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_CONTAINERS = (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex")
# Sample flags (ISO 14496-12 8.8.3.1): a keyframe depends on nothing; any other frame on others and is no sync.
KEY_FLAGS = 0x02000000
DELTA_FLAGS = 0x01010000
AUDIO_FLAGS = 0x02000000


@dataclass(frozen=True)
class Track:
    id: int
    kind: str          # "video" or "audio"
    timescale: int     # ticks per second of its samples' times
    codec: str         # as a MIME type's codecs parameter names it: avc1.64001f, mp4a.40.2


@dataclass(frozen=True)
class InitSegment:
    data: bytes
    video: Track
    audio: Track | None

    @property
    def mime(self) -> str:
        codecs = ",".join(t.codec for t in (self.video, self.audio) if t is not None)
        return f'video/mp4; codecs="{codecs}"'


@dataclass(frozen=True, slots=True)
class Sample:
    duration: int      # ticks
    size: int
    flags: int
    offset: int = 0    # composition time offset (pts - dts), ticks


def _boxes(data: bytes, start: int = 0, end: int | None = None):
    """(type, payload start, box end) of each box in data[start:end]."""
    end = len(data) if end is None else end
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        head = 8
        if size == 1:
            size, head = struct.unpack_from(">Q", data, at + 8)[0], 16
        elif size == 0:
            size = end - at
        if size < head or at + size > end:
            raise ValueError(f"a damaged {kind!r} box")
        yield kind, at + head, at + size
        at += size


def box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    return next(((s, e) for k, s, e in _boxes(data, start, end) if k == kind), None)


def _path(data: bytes, start: int, end: int, *kinds: bytes) -> tuple[int, int] | None:
    for kind in kinds:
        found = _child(data, start, end, kind)
        if found is None:
            return None
        start, end = found
    return start, end


def _track(data: bytes, start: int, end: int) -> Track | None:
    """A trak's id, kind, timescale and codec; None for a track MSE here does not take."""
    tkhd, mdhd, hdlr = (_path(data, start, end, *p) for p in ((b"tkhd",), (b"mdia", b"mdhd"), (b"mdia", b"hdlr")))
    stsd = _path(data, start, end, b"mdia", b"minf", b"stbl", b"stsd")
    if None in (tkhd, mdhd, hdlr, stsd):
        return None
    v1 = data[tkhd[0]] == 1
    track_id = struct.unpack_from(">I", data, tkhd[0] + (20 if v1 else 12))[0]
    v1 = data[mdhd[0]] == 1
    timescale = struct.unpack_from(">I", data, mdhd[0] + (20 if v1 else 12))[0]
    handler = data[hdlr[0] + 8:hdlr[0] + 12]
    entry = data[stsd[0] + 8:stsd[1]]
    kind = entry[4:8]
    if handler == b"vide" and kind in (b"avc1", b"avc3"):
        at = entry.find(b"avcC")
        if at < 0:
            return None
        return Track(track_id, "video", timescale, f"{kind.decode()}.{entry[at + 5:at + 8].hex()}")
    if handler == b"soun" and kind == b"mp4a":
        aot = _aac_object_type(entry)
        return Track(track_id, "audio", timescale, f"mp4a.40.{aot}") if aot else None
    return None


def _aac_object_type(entry: bytes) -> int | None:
    """The AAC object type in an mp4a entry's esds (its DecoderSpecificInfo's first five bits)."""
    at = entry.find(b"esds")
    if at < 0:
        return None
    data, i = entry[at + 8:], 0
    while i < len(data):
        tag, i = data[i], i + 1
        length = 0
        for _ in range(4):
            length, i = (length << 7) | (data[i] & 0x7F), i + 1
            if not data[i - 1] & 0x80:
                break
        if tag == 0x03:
            i += 3 + (2 if data[i + 2] & 0x80 else 0)  # ES_ID, flags (a stream dependence has no place here)
        elif tag == 0x04:
            i += 13
        elif tag == 0x05:
            aot = data[i] >> 3
            return aot if aot != 31 else 32 + (((data[i] & 7) << 3) | (data[i + 1] >> 5))
        else:
            i += length
    return None


def _without(data: bytes, start: int, end: int, drop: tuple[bytes, ...], keep_ids: set[int]) -> bytes:
    """The box's children from start to end, rebuilt without `drop` and without other tracks' trak and trex."""
    out = []
    for kind, s, e in _boxes(data, start, end):
        if kind in drop:
            continue
        if kind == b"trak":
            track = _track(data, s, e)
            if track is None or track.id not in keep_ids:
                continue
            out.append(box(kind, _without(data, s, e, drop, keep_ids)))
        elif kind == b"trex":
            if struct.unpack_from(">I", data, s + 4)[0] in keep_ids:
                out.append(data[s - 8:e])
        elif kind in _CONTAINERS:
            out.append(box(kind, _without(data, s, e, drop, keep_ids)))
        else:
            out.append(data[s - 8:e])
    return b"".join(out)


def init_segment(header: bytes, sound: bool) -> InitSegment | None:
    """The init segment for an MP4 header's H.264 (and its AAC when `sound`); None when it has no H.264 track."""
    ftyp = _child(header, 0, len(header), b"ftyp")
    moov = _child(header, 0, len(header), b"moov")
    if ftyp is None or moov is None:
        return None
    tracks = [t for kind, s, e in _boxes(header, *moov) if kind == b"trak" and (t := _track(header, s, e))]
    video = next((t for t in tracks if t.kind == "video"), None)
    audio = next((t for t in tracks if t.kind == "audio"), None) if sound else None
    if video is None:
        return None
    keep = {video.id} | ({audio.id} if audio else set())
    moov_box = box(b"moov", _without(header, *moov, (b"edts", b"udta"), keep))
    return InitSegment(header[ftyp[0] - 8:ftyp[1]] + moov_box, video, audio)


def fragment(sequence: int, track: int, decode_time: int, samples: list[Sample], data: bytes) -> bytes:
    """One moof and its mdat: `samples` of `track` back to back in `data`, the first decoded at `decode_time`."""
    flags = 0x000001 | 0x000100 | 0x000200 | 0x000400 | 0x000800  # offset; each sample's duration, size, flags, cto
    rows = b"".join(struct.pack(">IIIi", s.duration, s.size, s.flags, s.offset) for s in samples)
    trun_size = 8 + 4 + 8 + len(rows)
    traf_size = 8 + (8 + 8) + (8 + 12) + trun_size
    moof_size = 8 + (8 + 8) + traf_size
    moof = box(b"moof",
               box(b"mfhd", struct.pack(">II", 0, sequence)),
               box(b"traf",
                   box(b"tfhd", struct.pack(">II", 0x020000, track)),  # default-base-is-moof
                   box(b"tfdt", struct.pack(">IQ", 1 << 24, decode_time)),
                   box(b"trun", struct.pack(">IIi", (1 << 24) | flags, len(samples), moof_size + 8), rows)))
    assert len(moof) == moof_size
    return moof + struct.pack(">I4s", 8 + len(data), b"mdat") + data
