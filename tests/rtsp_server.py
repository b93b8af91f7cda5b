"""A real RTSP server on 127.0.0.1 for the tests: gst-rtsp-server streaming a real clip.

Runs under Debian's python3 (python3-gi, gir1.2-gst-rtsp-server-1.0), not the
project's venv, so it is started as a separate process; `tests/rtsp.py` does
that. The clip's H.264 is sent as it is (no re-encoding, so it costs almost no
CPU), at its own frame rate, repeated `--repeat` times by splitmuxsrc over
links to the one file; with `--audio`, its AAC track too, as a camera with a microphone. Prints `ready PORT` once it listens.

`--stagger` (for the capacity bench): each new client starts one group of pictures later in the clip than
the one before, as independent cameras are at different moments of their day, not all seeing the same
thing at once. The clip is cut at its keyframes once (still without re-encoding) for that.
"""

import argparse
import glob
import itertools
import os
import sys
import tempfile

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


class Staggered(GstRtspServer.RTSPMediaFactory):
    """Gives each new media (a client, when unshared) the next of `launches`, in turn."""

    def __init__(self, launches: list[str]):
        super().__init__()
        self._launches = itertools.cycle(launches)

    def do_create_element(self, url):
        return Gst.parse_launch(next(self._launches))


def _cut_at_keyframes(clip: str) -> list[str]:
    """The clip's video cut into pieces of about a second, each starting at a keyframe (no re-encoding)."""
    folder = tempfile.mkdtemp(prefix="rtsp-pieces-")
    pipeline = Gst.parse_launch(
        f'filesrc location="{os.path.abspath(clip)}" ! qtdemux ! h264parse '
        f'! splitmuxsink max-size-time=1000000000 location="{folder}/piece%05d.mp4"')
    pipeline.set_state(Gst.State.PLAYING)
    message = pipeline.get_bus().timed_pop_filtered(Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if message.type == Gst.MessageType.ERROR:
        sys.exit(f"rtsp_server: cannot cut {clip} at its keyframes: {message.parse_error()[0].message}")
    return sorted(glob.glob(f"{folder}/piece*.mp4"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clip", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mount", default="/live")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--audio", action="store_true", help="also send the clip's AAC audio track")
    parser.add_argument("--unshared", action="store_true",
                        help="a pipeline per client (gst-rtsp-server's shared media asserts with many clients "
                             "joining and leaving, as the capacity bench's trials do)")
    parser.add_argument("--stagger", action="store_true",
                        help="each client starts one group of pictures later than the one before (implies --unshared)")
    args = parser.parse_args()
    if args.stagger and args.audio:
        sys.exit("rtsp_server: --stagger sends video only; leave out --audio")
    Gst.init(None)

    audio = " s.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97" if args.audio else ""
    pieces = _cut_at_keyframes(args.clip) if args.stagger else [os.path.abspath(args.clip)]
    launches = []
    for start in range(len(pieces)):
        parts = tempfile.mkdtemp(prefix="rtsp-parts-")
        order = itertools.islice(itertools.cycle(pieces), start, start + len(pieces) * args.repeat)
        for i, piece in enumerate(order):
            os.symlink(piece, os.path.join(parts, f"part{i:05d}.mp4"))
        launches.append(f'( splitmuxsrc name=s location="{parts}/part*.mp4" s.video_0 ! queue ! h264parse '
                        f'! rtph264pay name=pay0 pt=96 config-interval=1{audio} )')
    factory = Staggered(launches)
    factory.set_shared(not (args.unshared or args.stagger))

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("viewer", "media.factory.access", True)
        permissions.add_permission_for_role("viewer", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        sys.exit(f"rtsp_server: cannot listen on 127.0.0.1:{args.port}")
    print(f"ready {server.get_bound_port()}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
