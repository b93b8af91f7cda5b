"""Drawing boxes, labels and the FPS line onto frames."""

from __future__ import annotations

import colorsys
from functools import lru_cache

import cv2
import numpy as np

from .config.sections import OverlayConfig
from .detections import Detections, OverlayStatus

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_SCENE = (0, 215, 255)  # zones and lines: amber, apart from the class colours' saturated hues


Rect = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels


@lru_cache(maxsize=512)
def class_color(class_id: int) -> tuple[int, int, int]:
    """A stable BGR colour per class: golden-ratio steps round the hue circle keep neighbours apart."""
    hue = (class_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def _text_color(bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    b, g, r = bgr
    luminance = 0.114 * b + 0.587 * g + 0.299 * r
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def label_text(label: str, track: int, score: float, scores: bool = True) -> str:
    """`person #17 0.91`: the class, the track id when it has one, the score."""
    text = f"{label} #{track}" if track > 0 else label
    return f"{text} {score:.2f}" if scores else text


class Annotator:
    def __init__(self, style: OverlayConfig = OverlayConfig()):
        self.style = style

    def _sizes(self, image: np.ndarray) -> tuple[int, float, int]:
        short = min(image.shape[:2])
        line = self.style.line_width or max(1, round(short / 300))
        scale = self.style.font_scale or max(0.35, short / 900)
        thickness = max(1, round(scale * 1.6))
        return line, scale, thickness

    def draw(self, image: np.ndarray, detections: Detections, status: OverlayStatus | None = None) -> np.ndarray:
        """Draw on `image` in place and return it.

        Boxes first, then the status plate, then the labels: a label is always
        on top and readable, and the plate goes where it hides the least.
        """
        line, scale, thickness = self._sizes(image)
        height, width = image.shape[:2]
        boxes: list[Rect] = []
        labels: list[tuple[Rect, str, tuple[int, int, int]]] = []
        tracks = detections.track_ids.tolist() if detections.track_ids is not None else [0] * len(detections)
        for (x1, y1, x2, y2), score, class_id, label, track in zip(
            detections.xyxy, detections.scores, detections.class_ids, detections.labels, tracks
        ):
            color = class_color(int(class_id))
            p1 = (int(x1), int(y1))
            p2 = (min(int(x2), width - 1), min(int(y2), height - 1))
            cv2.rectangle(image, p1, p2, color, line)
            boxes.append((p1[0], p1[1], p2[0], p2[1]))
            if self.style.labels:
                text = label_text(label, track, float(score), self.style.scores)
                labels.append((self._label_rect(image, text, p1, scale, thickness), text, color))
        if self.style.fps and status is not None:
            rate = f"{status.fps:.1f} FPS  " if status.fps is not None else ""
            self._status(image, f"{rate}{status.latency_ms:.0f} ms", scale, thickness,
                         [rect for rect, _, _ in labels], boxes)
        for rect, text, color in labels:
            x, y_top, x2, y2 = rect
            cv2.rectangle(image, (x, y_top), (x2, y2), color, cv2.FILLED)
            (_, th), _ = cv2.getTextSize(text, _FONT, scale, thickness)
            cv2.putText(image, text, (x + 1, y_top + th + 1), _FONT, scale, _text_color(color), thickness, cv2.LINE_AA)
        return image

    def draw_scene(self, image: np.ndarray, zones: dict[str, np.ndarray], lines: dict[str, np.ndarray],
                   counts) -> None:
        """Zones (outlined, with how many are inside) and lines (with in/out counts), under the boxes."""
        line, scale, thickness = self._sizes(image)
        for name, polygon in zones.items():
            points = polygon.astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(image, [points], True, _SCENE, line, cv2.LINE_AA)
            c = counts.zones[name]
            self._scene_label(image, f"{name}: {c['inside']} in", polygon[0], scale, thickness)
        for name, segment in lines.items():
            a, b = (tuple(int(v) for v in p) for p in segment)
            cv2.line(image, a, b, _SCENE, line + 1, cv2.LINE_AA)
            cv2.circle(image, a, line + 2, _SCENE, cv2.FILLED)  # marks the first point: `in` is left to right from it
            c = counts.lines[name]
            self._scene_label(image, f"{name}: in {c['in']} out {c['out']}", segment.mean(axis=0), scale, thickness)

    @staticmethod
    def _scene_label(image, text, at, scale, thickness) -> None:
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, thickness)
        height, width = image.shape[:2]
        x = int(min(max(at[0], 0), max(0, width - tw - 4)))
        y = int(min(max(at[1], th + 4), height - base - 2))
        cv2.rectangle(image, (x, y - th - 4), (x + tw + 4, y + base), _SCENE, cv2.FILLED)
        cv2.putText(image, text, (x + 2, y - 2), _FONT, scale, (0, 0, 0), thickness, cv2.LINE_AA)

    @staticmethod
    def _label_rect(image, text, p1, scale, thickness) -> Rect:
        height, width = image.shape[:2]
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, thickness)
        plate_h = th + base + 2
        x = min(max(p1[0], 0), max(0, width - tw - 2))
        # Above the box when there is room, else just inside its top edge.
        y_top = p1[1] - plate_h if p1[1] - plate_h >= 0 else min(p1[1], max(0, height - plate_h))
        return (x, y_top, x + tw + 2, y_top + plate_h)

    def _status(self, image, text, scale, thickness, labels: list[Rect], boxes: list[Rect]) -> None:
        """The FPS/latency plate in the corner that hides no label and the least of the boxes.

        When every corner has a label or a box under it, the plate is blended
        (only its own pixels, so the cost stays that of the small rectangle).
        """
        height, width = image.shape[:2]
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, thickness)
        w, h = min(tw + 8, width), min(th + base + 8, height)
        corners = [(0, 0), (width - w, 0), (0, height - h), (width - w, height - h)]

        def cost(corner: tuple[int, int]) -> tuple[int, int]:
            plate = (corner[0], corner[1], corner[0] + w, corner[1] + h)
            return (sum(_overlap(plate, r) for r in labels), sum(_overlap(plate, r) for r in boxes))

        costs = [cost(c) for c in corners]
        best = min(range(4), key=lambda i: costs[i])
        x, y = corners[best]
        roi = image[y:y + h, x:x + w]
        if costs[best] == (0, 0):
            roi[:] = 0
        else:
            roi //= 3  # a third of the scene still shows through the dark plate
        cv2.putText(image, text, (x + 4, y + th + 4), _FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def _overlap(a: Rect, b: Rect) -> int:
    """Pixels two rectangles (x1, y1, x2, y2) share, counting a box's outline as its whole area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0
