"""Drawing on real frames: labels stay readable, the status plate goes where it hides nothing (no model)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from helpers import decode
from media import clip

from streamdet import drawing
from streamdet.detections import Detections
from streamdet.drawing import Annotator, OverlayStatus


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return cv2.resize(decode(clip("carphone_pristine"), 1)[0], (640, 480))


def _detections(*boxes) -> Detections:
    n = len(boxes)
    return Detections(np.array(boxes, np.float32).reshape(n, 4), np.full(n, 0.87, np.float32),
                      np.ones(n, np.int32), ("person",) * n)


def _label_rects(image, detections) -> list[tuple[int, int, int, int]]:
    scale, thickness = Annotator()._sizes(image)[1:]
    return [Annotator._label_rect(image, f"person {s:.2f}", (int(b[0]), int(b[1])), scale, thickness)
            for b, s in zip(detections.xyxy, detections.scores)]


def _region(image, rect):
    x1, y1, x2, y2 = rect
    return image[y1:y2 + 1, x1:x2 + 1]


@pytest.mark.unit
def test_a_label_in_the_top_left_corner_is_not_covered(frame):
    # As on the 176x144 carphone clip: the man's box starts at the top-left, his label inside it.
    detections = _detections((0, 0, 300, 400))
    with_plate = Annotator().draw(frame.copy(), detections, OverlayStatus(fps=29.7, latency_ms=21))
    without = Annotator().draw(frame.copy(), detections, None)
    for rect in _label_rects(frame, detections):
        assert np.array_equal(_region(with_plate, rect), _region(without, rect))
    # The plate went to a free corner: the top right is dark now.
    assert with_plate[2:10, -40:-10].mean() < without[2:10, -40:-10].mean() - 20


@pytest.mark.unit
def test_with_a_label_in_every_corner_every_label_stays_whole_and_the_plate_is_blended(frame):
    h, w = frame.shape[:2]
    detections = _detections((0, 0, 200, 150), (w - 200, 0, w - 1, 150), (0, h - 150, 200, h - 1),
                             (w - 200, h - 150, w - 1, h - 1))
    with_plate = Annotator().draw(frame.copy(), detections, OverlayStatus(fps=29.7, latency_ms=21))
    without = Annotator().draw(frame.copy(), detections, None)
    for rect in _label_rects(frame, detections):
        assert np.array_equal(_region(with_plate, rect), _region(without, rect))
    changed = np.any(with_plate != without, axis=2)
    ys, xs = np.nonzero(changed)
    plate = with_plate[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    under = without[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    # Blended: away from the text, every pixel is the scene darkened, not flat black.
    darkened = np.all(plate == under // 3, axis=2)
    assert darkened.mean() > 0.5 and plate[darkened].std() > 3


@pytest.mark.unit
def test_no_rate_yet_shows_no_fake_zero_fps(frame, monkeypatch):
    drawn: list[str] = []
    real = cv2.putText
    monkeypatch.setattr(drawing.cv2, "putText", lambda img, text, *a, **k: (drawn.append(text), real(img, text, *a, **k))[1])
    Annotator().draw(frame.copy(), _detections(), OverlayStatus(fps=None, latency_ms=18.4))
    Annotator().draw(frame.copy(), _detections(), OverlayStatus(fps=12.34, latency_ms=18.4))
    assert drawn == ["18 ms", "12.3 FPS  18 ms"]


@pytest.mark.unit
def test_no_status_draws_nothing_outside_the_boxes_and_labels(frame):
    detections = _detections((100, 120, 300, 400))
    image = Annotator().draw(frame.copy(), detections, None)
    changed = np.any(image != frame, axis=2)
    allowed = np.zeros_like(changed)
    allowed[118:403, 98:303] = True
    for x1, y1, x2, y2 in _label_rects(frame, detections):
        allowed[y1:y2 + 1, x1:x2 + 1] = True
    assert changed.any() and not (changed & ~allowed).any()
