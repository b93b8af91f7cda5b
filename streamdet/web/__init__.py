"""The web view: a page with every source's annotated picture and figures, MJPEG streams, JSON, /healthz."""

from .view import WebView, bind_listener

__all__ = ["WebView", "bind_listener"]
