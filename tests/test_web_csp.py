"""No inline code in what the web view serves, so that every Content-Security-Policy it sends can refuse inline
scripts, styles and handlers ('unsafe-inline' nowhere): an injected script has nowhere to run.

The files: every HTML file of the web view and every script it builds HTML with. The served pages: what the real
server answers on every page, error and file it has. Debian's Chromium: `/`, `/events` and a camera's recordings
page over a real run (a real RTSP camera recorded by copy, its clips and snapshots, the real model), played, with
every CSP violation Chromium reports collected (the page's `securitypolicyviolation` events and its console).
"""

from __future__ import annotations

import importlib.resources
import json
import re
import threading
import urllib.request

import pytest

from helpers import wait_for
from media import clip
from rtsp import RtspServer
from test_web_review import TOKEN, _door_with_history, _get, media, serve  # noqa: F401 (fixtures)

from streamdet.web import responses

WEB = importlib.resources.files("streamdet.web")

# What a CSP without 'unsafe-inline' refuses in HTML, each with why it is named.
INLINE_HTML = {
    "a <script> with code in it": re.compile(r"<script\b[^>]*>\s*[^<\s]", re.I),
    "a <script> without src": re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I),
    "a <style> element": re.compile(r"<style\b", re.I),
    "an on...= handler attribute": re.compile(r"<[^>]*\son[a-z]+\s*=", re.I),
    "a style= attribute": re.compile(r"<[^>]*\sstyle\s*=", re.I),
    "a javascript: address": re.compile(r"javascript:", re.I),
}
# What a script could do to bring inline code back: markup parsed as HTML (with its handlers and style
# attributes), attributes the CSP refuses, code from strings ('unsafe-eval' is not given either).
INLINE_JS = {
    "markup put into the page": re.compile(r"\.(?:innerHTML|outerHTML)\s*=(?!\s*[\"']{2}\s*;)|insertAdjacentHTML|"
                                           r"document\.write|DOMParser|createContextualFragment"),
    "a style or on... attribute set": re.compile(r"setAttribute\(\s*[\"'](?:style|on[a-z]+)[\"']", re.I),
    "code from a string": re.compile(r"\beval\(|new Function\(|set(?:Timeout|Interval)\(\s*[\"'`]"),
}


def _inline(text: str, kinds: dict[str, re.Pattern]) -> list[str]:
    return [f"{what}: {found.group(0)[:60]!r}" for what, pattern in kinds.items() for found in pattern.finditer(text)]


def _html_files() -> list:
    return sorted((entry for entry in WEB.iterdir() if entry.name.endswith(".html")), key=lambda e: e.name)


@pytest.mark.unit
def test_the_web_views_files_hold_no_inline_code():
    pages = _html_files()
    scripts = [entry for entry in WEB.joinpath("static").iterdir() if entry.name.endswith(".js")]
    assert {"page.html", "review-head.html", "events.html", "recordings.html"} <= {p.name for p in pages}
    assert {"page.js", "review.js", "events.js", "recordings.js"} <= {s.name for s in scripts}
    found = {p.name: _inline(p.read_text(), INLINE_HTML) for p in pages}
    found.update({s.name: _inline(s.read_text(), INLINE_JS) for s in scripts})
    assert not any(found.values()), {name: where for name, where in found.items() if where}
    # The checks see what they look for.
    assert len(_inline('<p style="x" onclick="y()"><style>p{}</style><script>go()</script>', INLINE_HTML)) == 5
    assert _inline('<a href="javascript:go()">', INLINE_HTML) == ["a javascript: address: 'javascript:'"]
    assert len(_inline('el.innerHTML = `<b>${x}</b>`; el.setAttribute("onclick", "y"); eval(s)', INLINE_JS)) == 3
    assert not _inline('<script src="/static/page.js"></script>', INLINE_HTML) and not _inline('x.innerHTML = "";',
                                                                                                INLINE_JS)


@pytest.mark.unit
def test_every_csp_the_server_has_refuses_inline_code_and_every_html_response_sends_one():
    policies = {name: value for name, value in vars(responses).items() if name.endswith("_CSP")}
    assert {"PAGE_CSP", "REVIEW_CSP"} <= set(policies)
    for name, policy in policies.items():
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, name
        assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'", name
        assert directives["default-src"] == "'none'", name
    # Every place the web view answers with HTML names a CSP in the same call.
    for module in WEB.iterdir():
        if module.name.endswith(".py"):
            for call in re.finditer(r"web\.Response\((?:[^()]|\([^()]*\))*\)", module.read_text()):
                if "text/html" in call.group(0):
                    assert re.search(r"Content-Security-Policy\"\s*:\s*[A-Z_]+_CSP\b", call.group(0)), \
                        (module.name, call.group(0))


@pytest.mark.unit
def test_no_served_html_holds_inline_code_and_no_csp_allows_it(serve, media, tmp_path):
    view, segments = _door_with_history(serve, media, tmp_path / "rec", token=TOKEN)
    segment = segments.ours()[0][0].name
    statics = [entry.name for entry in WEB.joinpath("static").iterdir()]
    pages, htmls = 0, 0
    for path in ("/", "/events", "/recordings/door", "/recordings/nobody", "/api/sources", "/api/stats",
                 "/api/events", "/api/recordings/door", f"/recordings/door/{segment}", "/clips/door_track1.mp4",
                 "/snapshots/door_track1.jpg", "/snapshot/door.jpg", "/healthz", "/metrics", "/no/such/route",
                 *(f"/static/{name}" for name in statics)):
        for query in ("", f"?token={TOKEN}"):
            status, body, headers = _get(view, path + query)
            csp = headers.get("content-security-policy")
            assert csp is None or "unsafe-inline" not in csp, (path, csp)
            if headers.get("content-type", "").startswith("text/html"):
                htmls += 1
                assert csp is not None and "script-src 'self'" in csp and "style-src 'self'" in csp, (path, csp)
                assert not _inline(body.decode(), INLINE_HTML), (path, _inline(body.decode(), INLINE_HTML))
                assert all((WEB / "static" / src).is_file() for src in re.findall(r'(?:src|href)="/static/([^"]+)"',
                                                                                  body.decode())), path
                pages += status == 200
    assert pages == 3 and htmls == 3, "the page, the events page and door's recordings page, each with the token"
    status, body, headers = _get(view, "/static/events.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript") and b"withToken" in body


# ---------------------------------------------------------------------------------------------------- Chromium

# Registered before any of the page's own code: every violation the page's document sees, as it happens.
COLLECT = ("window.__violations = []; document.addEventListener('securitypolicyviolation', (e) => "
           "window.__violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));")


def _violations(page) -> list[str]:
    return page.evaluate("() => window.__violations")


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.services
def test_the_pages_run_in_chromium_over_a_real_run_without_a_csp_violation(tmp_path, pedestrian_detector,
                                                                           chromium):
    from streamdet.config.sections import Config
    from streamdet.pipeline import Pipeline

    server = RtspServer(clip("bikes"), repeat=3).start()
    for folder in ("rec", "clips", "snaps"):
        (tmp_path / folder).mkdir()
    config = Config(sources=[server.url()])
    config.display.show = "no"
    config.logging.status_interval = 0
    config.web.listen, config.web.token = "127.0.0.1:0", TOKEN
    config.recording.mode, config.recording.segment_seconds = "copy", 2.0
    config.output.video = str(tmp_path / "rec" / "{name}_{start}.mp4")
    config.events.clips, config.events.snapshots = str(tmp_path / "clips"), str(tmp_path / "snaps")
    config.events.end_after, config.events.pre_capture, config.events.post_capture = 0.5, 0.5, 0.5
    console: list[str] = []
    seen: dict[str, list[str]] = {}
    try:
        with Pipeline(config, detector=pedestrian_detector) as pipeline:
            thread = threading.Thread(target=pipeline.run, name="test-run")
            thread.start()
            try:
                base = pipeline.web_url.rstrip("/")
                name = _get_json(f"{base}/api/sources?token={TOKEN}")[0]["name"]
                wait_for(lambda: [e for e in _get_json(f"{base}/api/events?token={TOKEN}")["events"]
                                  if e["clip"] and e["snapshot"]], 120, "an ended track with its clip and snapshot")
                wait_for(lambda: [s for s in _get_json(f"{base}/api/recordings/{name}?token={TOKEN}")["segments"][1:]
                                  if s["detections"]], 120, "a whole copied segment with its detections")
                page = chromium.new_page(viewport={"width": 800, "height": 700})
                page.on("console", lambda m: console.append(m.text))
                page.on("pageerror", lambda e: console.append(f"page error: {e}"))
                page.add_init_script(COLLECT)
                try:
                    page.goto(f"{base}/?token={TOKEN}")
                    # The live H.264 (a blob: URL of Media Source Extensions, fed over a WebSocket) plays.
                    page.wait_for_function("() => document.querySelectorAll('.tile video').length === 1 && "
                                           "document.querySelector('.tile video').readyState >= 2", timeout=20_000)
                    seen["/"] = _violations(page)
                    page.goto(f"{base}/events?token={TOKEN}")
                    page.wait_for_function("() => [...document.querySelectorAll('#events .event img')].some("
                                           "(i) => i.complete && i.naturalWidth > 0)", timeout=20_000)
                    page.locator("#events .event button").first.click()
                    page.wait_for_function("() => document.getElementById('video').readyState >= 2", timeout=20_000)
                    seen["/events"] = _violations(page)
                    page.goto(f"{base}/recordings/{name}?token={TOKEN}")
                    page.wait_for_function("() => document.querySelectorAll('#segments li').length >= 2",
                                           timeout=20_000)
                    page.locator("#segments li button").last.click()  # newest first: the oldest, a whole one
                    page.wait_for_function("() => document.getElementById('video').readyState >= 2 && "
                                           "document.getElementById('overlay').width > 0", timeout=20_000)
                    page.evaluate("() => { const v = document.getElementById('video'); v.muted = true; "
                                  "v.currentTime = 1.0; }")
                    page.wait_for_function("() => !document.getElementById('video').seeking", timeout=20_000)
                    seen["/recordings"] = _violations(page)
                    shown = page.evaluate("() => [getComputedStyle(document.getElementById('player')).display, "
                                          "getComputedStyle(document.querySelector('header')).display]")
                finally:
                    page.close()
            finally:
                pipeline.stop("test done")
                thread.join(timeout=60)
    finally:
        server.close()
    assert seen == {"/": [], "/events": [], "/recordings": []}, seen
    assert not [line for line in console if "Content Security Policy" in line or "page error" in line], console
    # The styles are applied (served from /static/, not refused): the header is the shared flex row, and
    # the player shown by the script (CSSOM, which the CSP allows).
    assert shown == ["block", "flex"], shown
