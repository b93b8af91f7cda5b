"""The admin's camera API and POST /api/reload on the real web server (no model), with a real config file.

The reload given to the web view is a real one for the file alone: it loads the file with the real loader and
says which cameras were added, removed and changed, as the run's reload answers (the integrator's end-to-end
test connects the run's own); it records every call.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from helpers import call_json
from streamdet.assembly.changes import Reload
from streamdet.config.loader import load_config
from streamdet.config.sections import SourceEntry, WebConfig
from streamdet.errors import ConfigError
from streamdet.measures.figures import RunStatus
from streamdet.web import WebView, bind_listener

CONFIG = """\
# The cameras of the house (a comment at the top)
detect:
  threshold: 0.5   # a comment on a key of another section

sources:
  # the front door, main stream recorded
  - name: door
    url: rtsp://admin:hunter2@127.0.0.1:8554/door   # the camera's password stays here
    recording: {mode: annotated}
  - name: yard
    url: rtsp://127.0.0.1:8554/yard
    detect:
      threshold: 0.6   # the yard's own threshold

# after the cameras: the web view
web:
  fps: 5
"""


class FileReload:
    """A reload of the config file alone: the file loaded with the real loader, the cameras compared by name."""

    def __init__(self, path: Path):
        self.path = path
        self.calls: list[Reload] = []
        self.cameras = self._cameras()
        self.refuse: str | None = None  # a reason of the run's own to refuse what the file holds

    def _cameras(self) -> dict[str, SourceEntry]:
        config = load_config(self.path)
        config.check()
        return {entry.name or entry.url: dataclass_values(entry) for entry in config.sources}

    def __call__(self) -> Reload:
        if self.refuse is not None:
            self.calls.append(Reload(error=self.refuse))
            return self.calls[-1]
        try:
            now = self._cameras()
        except ConfigError as exc:
            done = Reload(error=str(exc))
        else:
            done = Reload(added=tuple(n for n in now if n not in self.cameras),
                          removed=tuple(n for n in self.cameras if n not in now),
                          changed=tuple(n for n in now if n in self.cameras and now[n] != self.cameras[n]))
            self.cameras = now
        self.calls.append(done)
        return done


def dataclass_values(entry: SourceEntry) -> tuple:
    return (entry.url, entry.detect_url, repr([entry.source, entry.detect, entry.track, entry.events, entry.output,
                                               entry.recording]))


def status() -> RunStatus:
    return RunStatus(uptime_s=1.0, frames=0, sources=[])


@pytest.fixture
def api(tmp_path):
    """A web view serving the camera API for a config file in tmp_path, with its FileReload."""
    views = []

    def start(text: str = CONFIG, reloadable: bool = True, folder: str = "etc"):
        (tmp_path / folder).mkdir()
        path = tmp_path / folder / "config.yaml"
        path.write_text(text)
        path.chmod(0o640)
        reload = FileReload(path) if reloadable else None
        web = WebConfig(listen="127.0.0.1:0")
        view = WebView(bind_listener(web), web, ["door", "yard"], status, None, config_file=path, reload=reload)
        views.append(view)
        return view.server.url.rstrip("/"), path, reload

    yield start
    for view in views:
        view.close()


def call(method: str, url: str, body=None) -> tuple[int, dict]:
    return call_json(method, url, body)


@pytest.mark.unit
def test_list_read_add_change_remove_write_the_file_back_with_its_comments(api):
    base, path, reload = api()
    status_, listed = call("GET", f"{base}/api/config/sources")
    assert status_ == 200 and [s["name"] for s in listed["sources"]] == ["door", "yard"]
    assert listed["sources"][0]["url"] == "rtsp://***:***@127.0.0.1:8554/door"
    assert "hunter2" not in json.dumps(listed)
    assert call("GET", f"{base}/api/config/sources/yard") == (200, {
        "name": "yard", "url": "rtsp://127.0.0.1:8554/yard", "detect": {"threshold": 0.6}})

    # Added: the file is written back, the backup holds what it was, the reload says what it did.
    before = path.read_text()
    status_, added = call("PUT", f"{base}/api/config/sources/gate",
                          {"url": "rtsp://127.0.0.1:8554/gate", "recording": {"mode": "annotated"},
                           "events": {"zones": [{"name": "drive", "points": [[0, 0], [1, 0], [1, 1]]}]}})
    assert status_ == 201, added
    assert added["reload"]["added"] == ["gate"] and added["line"] == "reload: added gate"
    assert added["camera"]["events"]["zones"][0]["name"] == "drive"
    assert (path.parent / "config.yaml.bak").read_text() == before
    assert [e.name for e in load_config(path).sources] == ["door", "yard", "gate"]
    assert path.stat().st_mode & 0o777 == 0o640  # it may hold passwords: its permissions stay

    # Changed, sending the masked URL back as the form does: the stored password stays in the file.
    status_, changed = call("PUT", f"{base}/api/config/sources/door",
                            {"url": "rtsp://***:***@127.0.0.1:8554/door", "recording": {"mode": "copy"},
                             "output": {"video": "door_{start}.mp4"}})
    assert status_ == 200 and changed["reload"]["changed"] == ["door"], changed
    door = load_config(path).sources[0]
    assert door.url == "rtsp://admin:hunter2@127.0.0.1:8554/door" and door.recording == {"mode": "copy"}
    assert "hunter2" not in json.dumps(changed)

    # Removed.
    status_, removed = call("DELETE", f"{base}/api/config/sources/yard")
    assert status_ == 200 and removed["reload"]["removed"] == ["yard"] and removed["camera"] is None
    assert [e.name for e in load_config(path).sources] == ["door", "gate"]

    text = path.read_text()
    yaml.safe_load(text)
    for comment in ("# The cameras of the house (a comment at the top)", "# a comment on a key of another section",
                    "# the front door, main stream recorded", "# the camera's password stays here",
                    "# after the cameras: the web view"):
        assert comment in text, f"{comment!r} is gone:\n{text}"
    assert text.index("# after the cameras") > text.index("name: gate")  # still after the cameras, before web:
    assert text.endswith("web:\n  fps: 5\n")
    assert len(reload.calls) == 3


@pytest.mark.unit
def test_the_last_camera_removed_and_one_added_again_keep_the_comments_after_the_list(api):
    base, path, reload = api()
    assert call("DELETE", f"{base}/api/config/sources/yard")[0] == 200
    assert call("DELETE", f"{base}/api/config/sources/door")[0] == 200
    assert load_config(path).sources == []
    assert "sources: []\n\n# after the cameras: the web view\nweb:\n  fps: 5\n" in path.read_text()
    status_, added = call("PUT", f"{base}/api/config/sources/porch", {"url": "yes"})  # a file named yes
    assert status_ == 201 and [c.removed for c in reload.calls] == [("yard",), ("door",), ()]
    assert load_config(path).sources[0].url == "yes"  # written quoted: YAML 1.1 would read a plain yes as true
    assert path.read_text().endswith('  - name: porch\n    url: "yes"\n\n# after the cameras: the web view\n'
                                     "web:\n  fps: 5\n")
    assert path.read_text().startswith("# The cameras of the house (a comment at the top)\n")


@pytest.mark.unit
def test_an_invalid_camera_is_refused_with_the_loaders_line_and_the_file_untouched(api):
    base, path, reload = api()
    before = path.read_text()
    status_, bad_key = call("PUT", f"{base}/api/config/sources/gate", {"url": "rtsp://127.0.0.1/gate", "colour": "red"})
    assert status_ == 400
    # The loader's own line, naming the line of the file as it would have been written.
    assert bad_key["error"] == (f"config '{path}' line 16: sources[2] (gate): unknown key 'colour'; allowed keys: "
                                "url, name, detect_url, source, detect, track, events, output, recording")
    status_, bad_url = call("PUT", f"{base}/api/config/sources/yard", {"url": "rtsp://127.0.0.1:99999/yard"})
    assert status_ == 400 and "the port must be a number from 1 to 65535" in bad_url["error"], bad_url
    assert "sources[1] (yard)" in bad_url["error"]
    status_, bad_value = call("PUT", f"{base}/api/config/sources/yard",
                              {"url": "rtsp://127.0.0.1/yard", "detect": {"threshold": 2}})
    assert status_ == 400 and "threshold must be between 0 and 1" in bad_value["error"]
    assert call("PUT", f"{base}/api/config/sources/a%20b", {"url": "rtsp://127.0.0.1/x"})[0] == 400
    assert call("PUT", f"{base}/api/config/sources/gate", b"{not json")[0] == 400
    assert call("PUT", f"{base}/api/config/sources/gate", ["rtsp://127.0.0.1/x"])[0] == 400
    assert call("PUT", f"{base}/api/config/sources/gate", {"name": "other", "url": "rtsp://127.0.0.1/x"})[0] == 400
    assert path.read_text() == before and not (path.parent / "config.yaml.bak").exists()
    assert reload.calls == []


@pytest.mark.unit
def test_a_name_not_in_the_file_is_404_and_the_body_is_bounded(api):
    base, path, _ = api()
    status_, answer = call("GET", f"{base}/api/config/sources/garage")
    assert status_ == 404 and answer["error"].startswith("no camera named 'garage'")
    assert call("DELETE", f"{base}/api/config/sources/garage")[0] == 404
    huge = {"url": "rtsp://127.0.0.1/x", "events": {"zones": [{"name": "z", "points": [[0.5, 0.5]] * 20_000}]}}
    request = urllib.request.Request(f"{base}/api/config/sources/gate", data=json.dumps(huge).encode(), method="PUT")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 413


@pytest.mark.unit
def test_reload_answers_its_outcome_and_409_for_a_file_made_invalid_by_hand(api):
    base, path, reload = api()
    assert call("POST", f"{base}/api/reload", b"") == (200, {
        "added": [], "removed": [], "changed": [], "kept": [], "error": None, "line": "reload: no camera changed"})
    path.write_text(CONFIG.replace("fps: 5", "fps: 500"))
    status_, refused = call("POST", f"{base}/api/reload", b"")
    assert status_ == 409 and "web: fps must be more than 0 and at most 60" in refused["error"], refused
    # A change then is refused with the same line: it is checked against the whole file as it is now.
    status_, change = call("PUT", f"{base}/api/config/sources/gate", {"url": "rtsp://127.0.0.1/gate"})
    assert status_ == 400 and "fps must be more than 0 and at most 60" in change["error"]


@pytest.mark.unit
def test_a_change_the_run_refuses_is_taken_back_and_a_run_without_reload_says_so(api, tmp_path):
    base, path, reload = api()
    reload.refuse = "source 'yard': recording.mode copy needs --output (a flag of this run)"
    before = path.read_text()
    status_, answer = call("DELETE", f"{base}/api/config/sources/yard")
    assert status_ == 409 and answer["error"].endswith("; the config file was put back as it was"), answer
    assert path.read_text() == before

    base2, path2, _ = api(reloadable=False, folder="other")
    assert call("POST", f"{base2}/api/reload", b"")[0] == 404
    status_, written = call("PUT", f"{base2}/api/config/sources/gate", {"url": "rtsp://127.0.0.1/gate"})
    assert status_ == 201 and written["reload"] is None and "takes effect when streamdet starts again" in written["line"]


@pytest.mark.unit
def test_a_run_without_a_config_file_has_no_camera_api(tmp_path):
    web = WebConfig(listen="127.0.0.1:0")
    view = WebView(bind_listener(web), web, ["door"], status, None)
    try:
        base = view.server.url.rstrip("/")
        status_, answer = call("GET", f"{base}/api/config/sources")
        assert status_ == 404 and "no config file" in answer["error"]
        assert call("POST", f"{base}/api/reload", b"")[0] == 404
    finally:
        view.close()


@pytest.mark.services
def test_the_form_on_the_page_adds_and_edits_a_camera_and_shows_the_apis_messages(api, chromium):
    base, path, reload = api()
    page = chromium.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The API's 404 (/api/me) and 400 answers are logged by Chromium as failed loads: expected, not script errors.
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource") else None)
    try:
        page.goto(base + "/")
        page.locator("#cameras summary").click()  # shown once /api/me (404 here: no users) says admin
        page.wait_for_function("() => document.getElementById('camera-list').textContent.includes('yard')")
        assert "hunter2" not in page.content()

        form = page.locator("#camera-form")
        form.locator("input[name=name]").fill("gate")
        form.locator("input[name=url]").fill("rtsp://127.0.0.1:8554/gate")
        form.locator("select[name=mode]").select_option("annotated")
        form.locator("button[type=submit]").click()
        message = page.locator("#camera-message")
        page.wait_for_function("() => document.getElementById('camera-message').textContent.startsWith('reload:')")
        assert message.text_content() == "reload: added gate"
        page.wait_for_function("() => document.getElementById('camera-list').textContent.includes('gate')")
        gate = load_config(path).sources[2]
        assert (gate.name, gate.url, gate.recording) == ("gate", "rtsp://127.0.0.1:8554/gate", {"mode": "annotated"})

        # Edited: the form shows the masked URL and sends it back; the camera's other keys stay.
        page.locator("#camera-list li", has_text="door").get_by_role("button", name="edit").click()
        assert form.locator("input[name=url]").input_value() == "rtsp://***:***@127.0.0.1:8554/door"
        form.locator("input[name=detect_url]").fill("rtsp://127.0.0.1:8554/door-sub")
        form.locator("select[name=mode]").select_option("copy")
        form.locator("button[type=submit]").click()
        page.wait_for_function("() => document.getElementById('camera-message').className === 'error'")
        # detect_url needs a copy recording into output.video, which door has not: the loader's rule, as a line.
        assert "detect_url needs a copy recording of url" in message.text_content()

        form.locator("input[name=name]").fill("bad")
        form.locator("input[name=url]").fill("rtsp://127.0.0.1:99999/bad")
        form.locator("input[name=detect_url]").fill("")
        form.locator("button[type=submit]").click()
        page.wait_for_function("() => document.getElementById('camera-message').textContent.includes('port')")
        assert "the port must be a number from 1 to 65535" in message.text_content()
        assert message.get_attribute("class") == "error"
    finally:
        page.close()
    door = load_config(path).sources[0]
    assert door.url == "rtsp://admin:hunter2@127.0.0.1:8554/door" and door.detect_url is None
    assert [c.added for c in reload.calls] == [("gate",)] and errors == [], errors
