"""ByteTrack: ids persist across frames, new objects get new ids, lost tracks expire."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edge.tracking import ByteTrack, TrackState
from edge.types import Detections


def dets(boxes: list[list[float]], conf: list[float] | None = None) -> Detections:
    n = len(boxes)
    return Detections(np.array(boxes, np.float32).reshape(-1, 4),
                      np.array(conf or [0.9] * n, np.float32), np.zeros(n, np.int64))


def test_two_frames_keep_ids_and_order_does_not_matter() -> None:
    t = ByteTrack(id_counter=itertools.count(100).__next__)
    a = t.update(dets([[0, 0, 100, 100], [500, 500, 600, 600]]))
    assert a.tracker_id.tolist() == [100, 101]
    # next frame: both moved a little, listed in the other order
    b = t.update(dets([[505, 505, 605, 605], [10, 5, 110, 105]]))
    assert b.tracker_id.tolist() == [101, 100]


def test_new_object_gets_new_id_and_ids_are_per_tracker() -> None:
    t1 = ByteTrack(id_counter=itertools.count(1).__next__)
    t2 = ByteTrack(id_counter=itertools.count(1).__next__)
    t1.update(dets([[0, 0, 100, 100]]))
    out = t1.update(dets([[0, 0, 100, 100], [300, 300, 400, 400]]))
    assert out.tracker_id.tolist() == [1, 2]
    assert t2.update(dets([[0, 0, 50, 50]])).tracker_id.tolist() == [1]


def test_low_confidence_detection_keeps_the_track_alive() -> None:
    t = ByteTrack(track_activation_threshold=0.5)
    t.update(dets([[0, 0, 100, 100]], [0.9]))
    out = t.update(dets([[4, 0, 104, 100]], [0.2]))  # second-stage association
    assert out.tracker_id.tolist() == [1]
    # a low-confidence detection never starts a track on its own
    out = t.update(dets([[4, 0, 104, 100], [800, 800, 900, 900]], [0.9, 0.2]))
    assert out.tracker_id.tolist() == [1, -1]


def test_lost_track_recovers_within_buffer_then_expires() -> None:
    t = ByteTrack(lost_track_buffer=3)
    t.update(dets([[0, 0, 100, 100]]))
    t.update(dets([[0, 0, 100, 100]]))
    t.update(Detections.empty())
    assert [s.state for s in t.tracks] == [TrackState.LOST]
    assert t.update(dets([[0, 0, 100, 100]])).tracker_id.tolist() == [1]
    for _ in range(5):
        t.update(Detections.empty())
    assert t.tracks == []
    assert [r.track_id for r in t.pop_removed()] == [1]


def test_moving_object_followed_by_kalman_prediction() -> None:
    t = ByteTrack()
    ids = set()
    for i in range(10):  # 30 px per frame on a 100 px box: IoU ~0.5 frame to frame
        ids.update(t.update(dets([[30 * i, 0, 30 * i + 100, 100]])).tracker_id.tolist())
    assert ids == {1}


def test_flush_ends_every_track() -> None:
    t = ByteTrack()
    t.update(dets([[0, 0, 100, 100], [200, 200, 300, 300]]))
    assert sorted(x.track_id for x in t.flush()) == [1, 2]
    assert t.tracks == []


@pytest.mark.parametrize(("buffer", "expected_ids"), [(0.0, None), (0.3, 1)])
def test_fast_vehicle_keeps_one_id_with_buffered_iou(buffer: float, expected_ids: int | None) -> None:
    """Moving 90 % of its width per frame: plain IoU loses it at once, buffered IoU keeps it."""
    t = ByteTrack(box_buffer=buffer)
    ids = set()
    for i in range(8):
        ids.update(t.update(dets([[90 * i, 0, 90 * i + 100, 100]])).tracker_id.tolist())
    if expected_ids is None:
        assert len(ids) > 1
    else:
        assert len(ids) == expected_ids
