"""An SSD's output arrays as Detections: the one readout of the local and the remote path.

Both paths hand over the same arrays (an OpenVINO request's tensors, or a
server's response), so their results are the same by construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..detections import Detections
from .labels import label_for, resolve_classes

# The output roles of each form, by the names the TF Object Detection API gives them.
TF_OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores")
TF_COUNT = "num_detections"
LEGACY_OUTPUT = "detection_output"


@dataclass(frozen=True)
class DetectFilter:
    """Which detections to keep: a minimum score and, when not empty, only these class ids."""

    threshold: float
    class_ids: np.ndarray

    @classmethod
    def of(cls, threshold: float, labels: tuple[str, ...], classes) -> DetectFilter:
        """The filter for `classes` given by name or id (detect.classes), checked against `labels`."""
        return cls(threshold, np.array(sorted(resolve_classes(labels, classes)), np.int32))


def to_detections(form: str, outputs: Mapping[str, np.ndarray], width: int, height: int, filter: DetectFilter,
                  labels: tuple[str, ...]) -> Detections:
    """Batch-1 outputs by role ("tf": boxes [y_min,x_min,y_max,x_max], classes, scores and maybe a count;
    "legacy": [image_id,label,conf,x_min,y_min,x_max,y_max] rows ended by image_id -1) as pixel boxes of a
    width x height frame, filtered by `filter` and labelled."""
    if form == "tf":
        boxes = outputs["detection_boxes"].reshape(-1, 4)
        classes = outputs["detection_classes"].reshape(-1)
        scores = outputs["detection_scores"].reshape(-1)
        if TF_COUNT in outputs:
            count = int(outputs[TF_COUNT].reshape(-1)[0])
            boxes, classes, scores = boxes[:count], classes[:count], scores[:count]
        xyxy = boxes[:, [1, 0, 3, 2]]
    else:
        rows = outputs[LEGACY_OUTPUT].reshape(-1, 7)
        ends = np.flatnonzero(rows[:, 0] == -1)
        if len(ends):
            rows = rows[: ends[0]]
        classes, scores, xyxy = rows[:, 1], rows[:, 2], rows[:, 3:7]
    chosen = scores >= filter.threshold
    class_ids = np.rint(classes).astype(np.int32)
    if len(filter.class_ids):
        chosen &= np.isin(class_ids, filter.class_ids)
    xyxy = xyxy[chosen] * np.array([width, height, width, height], np.float32)
    np.clip(xyxy, 0, [width, height, width, height], out=xyxy)
    class_ids = class_ids[chosen]
    return Detections(
        xyxy=xyxy.astype(np.float32, copy=False),
        scores=scores[chosen].astype(np.float32),
        class_ids=class_ids,
        labels=tuple(label_for(labels, int(c)) for c in class_ids),
    )
