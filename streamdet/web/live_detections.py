"""Each source's detections in step with its live stream: a WebSocket (`/live/{name}.detections`) carrying, for
each processed frame, one JSON line (several lines in one message are separated by newlines):

    t        the frame's time on the live stream's timeline, seconds (what the player's currentTime says
             when that frame is shown)
    session  which stream the time is on (a new one begins when the camera comes back, see /live/{name}.mp4)
    size, detections, plate, scene, and the JSONL output's keys: as a copy recording's detections file
             (streamdet.outputs.sidecar): boxes with labels, scores and track ids in `size`'s pixels, the zones
             and lines with their counts, the plate's figures

Nothing in it names a URL, a file or a credential: only what is drawn. A slow client skips to the newest lines
(the feed keeps 64); one that takes nothing for web.client_timeout is dropped.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..config.web import WebConfig
from .live_video import LiveVideo, unanswered, until_closed, wait_either
from .access import named_camera
from .connections import drop_stalled
from .route import Route


class LiveDetections:
    """The detections channel's route, over LiveVideo's feeds."""

    def __init__(self, web_config: WebConfig, video: LiveVideo):
        self._web = web_config
        self._video = video
        self.dropped_stalled = 0
        self._stop: asyncio.Event | None = None

    def routes(self) -> list[Route]:
        return [Route("/live/{name}.detections", self._channel, long=True, camera=named_camera)]

    def start(self, stop: asyncio.Event) -> None:
        self._stop = stop

    async def _channel(self, request: web.Request) -> web.StreamResponse:
        feed = self._video.feed(request)
        ws = web.WebSocketResponse(max_msg_size=4096, heartbeat=self._web.client_timeout)
        await ws.prepare(request)
        gone = asyncio.ensure_future(until_closed(ws))
        feed.watch(+1, lines=True)
        cursor = None
        try:
            while not self._stop.is_set() and not gone.done():
                changed = feed.changed()
                lines, cursor = feed.lines_after(cursor)
                if lines:
                    await asyncio.wait_for(ws.send_str("\n".join(lines)), self._web.client_timeout)
                else:
                    await wait_either(changed, gone)
        except asyncio.TimeoutError:
            self._stalled(request)
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        finally:
            feed.watch(-1, lines=True)
            gone.cancel()
            if not ws.closed and not (request.transport is None or request.transport.is_closing()):
                await ws.close()
        if unanswered(ws):
            self._stalled(request)
        return ws

    def _stalled(self, request: web.Request) -> None:
        self.dropped_stalled += 1
        drop_stalled(request, "a detections viewer", request.match_info["name"], self._web.client_timeout)
