"""Cascade association rules: windshield -> vehicle, plate -> vehicle, driver choice."""

from __future__ import annotations

import numpy as np
import pytest

from edge.cascade import Cascade, plate_fit, windshield_fit
from edge.types import Detections
from tests.unit.edge.edge_doubles import GrayPlateDetector, GrayPlateReader, occupants_detector, vehicles_detector

A = np.array


@pytest.mark.parametrize(("ws", "veh", "ok"), [
    ((120, 110, 280, 180), (100, 100, 300, 300), True),    # upper centre: fits
    ((120, 240, 280, 290), (100, 100, 300, 300), True),    # low: fits, but less
    ((320, 110, 480, 180), (100, 100, 300, 300), False),   # outside
    ((250, 110, 410, 180), (100, 100, 300, 300), False),   # mostly outside
])
def test_windshield_fit(ws: tuple, veh: tuple, ok: bool) -> None:
    assert (windshield_fit(A(ws, np.float32), A(veh, np.float32)) > 0) is ok


def test_windshield_fit_prefers_upper_centre() -> None:
    veh = A((100, 100, 300, 300), np.float32)
    assert windshield_fit(A((120, 110, 280, 180), np.float32), veh) > windshield_fit(A((120, 240, 280, 290),
                                                                                      np.float32), veh)


@pytest.mark.parametrize(("plate", "fit"), [((180, 260, 220, 275), 1.0), ((180, 120, 220, 135), 0.5),
                                            ((320, 260, 360, 275), 0.0)])
def test_plate_fit(plate: tuple, fit: float) -> None:
    assert plate_fit(A(plate, np.float32), A((100, 100, 300, 300), np.float32)) == fit


def cascade() -> Cascade:
    return Cascade(vehicles_detector(), occupants_detector(), GrayPlateDetector(), GrayPlateReader())


def occ(rows: list[tuple[int, tuple[float, float, float, float], float]]) -> Detections:
    return Detections(A([r[1] for r in rows], np.float32), A([r[2] for r in rows], np.float32),
                      A([r[0] for r in rows], np.int64))


WS = A((0, 0, 200, 100), np.float32)  # windshield; image-right half is x >= 100


def test_driver_is_on_image_right_half() -> None:
    o = cascade().assign_occupants(occ([(0, (110, 10, 190, 95), 0.8), (0, (10, 10, 90, 95), 0.95)]), WS)
    assert o.driver_box is not None and o.driver_box[0] == 110
    assert len(o.passenger_boxes) == 1  # the left "driver" is treated as a passenger and blurred


def test_no_driver_on_the_right_means_no_driver() -> None:
    o = cascade().assign_occupants(occ([(0, (10, 10, 90, 95), 0.95), (1, (110, 10, 190, 95), 0.9)]), WS)
    assert o.driver_box is None and len(o.passenger_boxes) == 2


def test_left_hand_drive_deployment() -> None:
    c = cascade()
    c.driver_side = "left"
    o = c.assign_occupants(occ([(0, (10, 10, 90, 95), 0.9)]), WS)
    assert o.driver_box is not None and o.driver_box[0] == 10


def test_strap_and_phone_belong_to_the_driver_only() -> None:
    o = cascade().assign_occupants(occ([
        (0, (110, 10, 190, 95), 0.9), (1, (10, 10, 90, 95), 0.9),
        (2, (60, 30, 80, 90), 0.8),     # passenger's strap
        (3, (20, 20, 35, 40), 0.9),     # passenger's phone
        (4, (30, 12, 60, 40), 0.9),     # passenger's face (blurred)
        (4, (130, 12, 160, 40), 0.9),   # driver's face (kept)
    ]), WS)
    assert o.seatbelt_conf == 0.0 and o.phone_conf == 0.0
    assert len(o.face_boxes) == 1 and o.face_boxes[0][0] == 30
    o = cascade().assign_occupants(occ([(0, (110, 10, 190, 95), 0.9), (2, (140, 30, 160, 90), 0.7),
                                        (3, (115, 60, 130, 80), 0.6)]), WS)
    assert o.seatbelt_conf == pytest.approx(0.7) and o.phone_conf == pytest.approx(0.6)


@pytest.mark.parametrize(("dynamic", "size", "box"), [
    (True, (32, 64), [120, 180, 520, 320]),   # rectangular input: no padding rows
    (False, (64, 64), [120, 20, 520, 320]),   # square input: 16 rows of padding above
])
def test_vehicle_model_runs_rectangular_when_it_can(tmp_path, dynamic: bool, size: tuple, box: list) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from edge.detectors.yolo import OnnxYoloDetector
    from edge.types import Frame
    from tests.unit.edge.edge_onnx_fixtures import vehicles_model

    det = OnnxYoloDetector(vehicles_model(tmp_path / "v.onnx", dynamic_hw=dynamic), conf=0.1)
    c = Cascade(det)
    assert c._input_for(320, 640) == size
    f = Frame("c", 0, 0.0, datetime.now(UTC), np.zeros((320, 640, 3), np.uint8))
    (d,) = c.detect_vehicles([f])
    car = d.with_class(0)
    assert car.xyxy[0].tolist() == pytest.approx(box, abs=1.0)
    assert det.input_size == (64, 64)  # restored after the call


def test_vehicles_run_on_the_sources_preview_when_there_is_one() -> None:
    from datetime import UTC, datetime

    from edge.types import Frame
    from tests.unit.edge.edge_doubles import CarSpec, draw_scene

    c = cascade()
    img = draw_scene((1920, 1080), [CarSpec(100, 80)], 0)
    made = c.preview(img)
    assert made.shape[1] * 1080 == made.shape[0] * 1920 and made.shape[1] <= 1920 // 2  # integer factor
    now = datetime(2026, 1, 1, tzinfo=UTC)
    found = c.detect_vehicles([Frame("c", 0, 0.0, now, img, made)])[0]
    assert len(found)
    blank = np.zeros_like(made)  # a preview showing nothing: the cascade must not re-downscale
    assert len(c.detect_vehicles([Frame("c", 0, 0.0, now, img, blank)])[0]) == 0
