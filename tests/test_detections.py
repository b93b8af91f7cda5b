"""Detections, the one type boxes travel in (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from streamdet.detections import Detections


def _three() -> Detections:
    return Detections(np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 2, 3, 4]], np.float32),
                      np.array([0.9, 0.4, 0.7], np.float32), np.array([1, 3, 1], np.int32), ("person", "car", "person"))


@pytest.mark.unit
def test_selecting_rows_keeps_the_arrays_together():
    d = _three()
    confident = d[d.scores > 0.5]
    assert len(confident) == 2 and confident.labels == ("person", "person")
    assert confident.xyxy.tolist() == [[0, 0, 10, 10], [1, 2, 3, 4]]
    assert d[[1]].class_ids.tolist() == [3] and d[1:].labels == ("car", "person") and len(d[2]) == 1
    assert len(Detections.empty()) == 0 and Detections.empty().xyxy.shape == (0, 4)


@pytest.mark.unit
def test_arrays_that_disagree_are_refused():
    with pytest.raises(ValueError, match="disagree"):
        Detections(np.zeros((2, 4), np.float32), np.zeros(3, np.float32), np.zeros(2, np.int32), ("a", "b"))
