"""Fitness with the deployed ONNX models: detected plate and face heights are measured per
zone through the real onnxruntime path (vehicles on the frame, plates / occupants on
full-resolution crops). Fixed-output ONNX graphs stand in for trained weights, so the sizes
the report must find are known exactly."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from calibration import homography as hg
from calibration.camfile import write_camera
from calibration.cli import calibrate
from calibration.fitness import FitnessError, assess
from calibration.synthetic import RoadCamera
from edge.camera import CameraCalibration, RoadPlane, Zones
from edge.detectors.yolo import letterbox

IMGSZ = 64
CAM = RoadCamera(height_m=6.0, tilt_deg=18.0, focal_px=2600.0, size=(1920, 1080))


def _fixed_model(path: Path, boxes: list[list[float]], image_hw: tuple[int, int], names: dict[int, str]) -> Path:
    """A YOLO end-to-end ONNX model that always outputs `boxes` ([x1,y1,x2,y2,score,cls] in the
    pixels of an image of size image_hw), converted into its letterboxed input pixels."""
    _, lb = letterbox(np.zeros((*image_hw, 3), np.uint8), (IMGSZ, IMGSZ))
    table = np.zeros((1, 20, 6), np.float32)  # 20 rows: never mistaken for a raw [4+nc, N] head
    for i, (x1, y1, x2, y2, s, c) in enumerate(boxes):
        table[0, i] = [x1 * lb.ratio + lb.pad_x, y1 * lb.ratio + lb.pad_y, x2 * lb.ratio + lb.pad_x,
                       y2 * lb.ratio + lb.pad_y, s, c]
    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, IMGSZ, IMGSZ])
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 20, 6])
    nodes = [helper.make_node("ReduceMean", ["images"], ["m4"], axes=[1, 2, 3], keepdims=1),
             helper.make_node("Reshape", ["m4", "shape3"], ["m3"]),
             helper.make_node("Mul", ["m3", "zero"], ["z"]),
             helper.make_node("Add", ["z", "table"], ["output0"])]
    inits = [numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape3"),
             numpy_helper.from_array(np.zeros((1, 20, 6), np.float32), "zero"),
             numpy_helper.from_array(table, "table")]
    model = helper.make_model(helper.make_graph(nodes, path.stem, [inp], [out], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in {"names": json.dumps({str(k): v for k, v in names.items()}), "imgsz": json.dumps([IMGSZ, IMGSZ]),
                 "roadeye_model": path.stem, "version": "test", "task": "detect"}.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.save(model, path)
    return path


@pytest.fixture
def scene(tmp_path: Path) -> tuple[Path, Path, Path, float]:
    road = [[-3.75, 12.0], [3.75, 12.0], [-3.75, 40.0], [3.75, 40.0], [0.0, 25.0]]
    img = CAM.project(np.c_[np.asarray(road), np.zeros(5)]).tolist()
    h = hg.fit_homography(img, road).homography
    cap = CAM.project(np.array([[-5.6, 11.0, 0], [5.6, 11.0, 0], [5.6, 16.0, 0], [-5.6, 16.0, 0]])).tolist()
    cam = tmp_path / "cam05.camera.yaml"
    write_camera(CameraCalibration(camera_id="cam05", image_size=CAM.size, zones=Zones(capture=cap),
                                   road_plane=RoadPlane(image_points=img, road_points_m=road,
                                                        homography=h.tolist())), cam)
    u0, v0 = (round(float(c)) for c in CAM.project([[0.0, 12.5, 0.0]])[0])
    vbox = [u0 - 150, v0 - 260, u0 + 150, v0]
    shield = [u0 - 110, v0 - 230, u0 + 110, v0 - 150]
    models = tmp_path / "models"
    models.mkdir()
    veh_names = {0: "car", 1: "bus", 2: "truck", 3: "van", 4: "two_wheeler", 5: "windshield"}
    _fixed_model(models / "vehicles.onnx", [[*vbox, 0.9, 0], [*shield, 0.8, 5]], (1080, 1920), veh_names)
    _fixed_model(models / "plates.onnx", [[110, 200, 190, 216, 0.9, 0]], (260, 300), {0: "plate"})
    occ = {0: "driver", 1: "passenger", 2: "seatbelt", 3: "phone", 4: "face"}
    _fixed_model(models / "occupants.onnx", [[130, 10, 170, 60, 0.9, 4], [20, 5, 60, 70, 0.9, 0]], (80, 220), occ)
    vid = tmp_path / "clip.mp4"
    wr = cv2.VideoWriter(str(vid), cv2.VideoWriter.fourcc(*"mp4v"), 25, CAM.size)
    for _ in range(6):
        wr.write(np.full((1080, 1920, 3), 100, np.uint8))
    wr.release()
    predicted = hg.pixels_per_metre(h, ((vbox[0] + vbox[2]) / 2, vbox[3]))[0] * hg.PLATE_CHAR_HEIGHT_M
    return cam, vid, models, predicted


def test_detected_sizes_are_measured_per_zone(scene) -> None:
    cam, vid, models, predicted = scene
    from edge.camera import load_camera

    rep = assess(load_camera(cam), video=vid, models_dir=models, model_frames=6)
    m = rep.zones[0].measured
    assert m is not None
    assert m["plates_measured"] == 6 and m["faces_measured"] == 6  # one per frame; the driver box is not a face
    assert m["measured_plate_char_px_median"] == pytest.approx(16 * 90 / 140, abs=0.3)
    assert m["measured_face_px_median"] == pytest.approx(50, abs=0.6)
    assert m["measured_over_predicted"] == pytest.approx(16 * 90 / 140 / predicted, rel=0.03)
    # ~10 px characters detected where the road plane predicts ~17 px: flagged.
    assert m["measured_over_predicted"] < 0.75
    assert any("detected plates are 0.6" in r for r in rep.zones[0].reasons), rep.zones[0].reasons
    assert rep.video is not None and rep.video["models"] == ["vehicles.onnx", "plates.onnx", "occupants.onnx"]


def test_cli_models_flag(scene) -> None:
    cam, vid, models, _ = scene
    res = CliRunner().invoke(calibrate, ["fitness", "--camera", str(cam), "--video", str(vid),
                                         "--models", str(models), "--model-frames", "2"])
    assert res.exit_code in (0, 3), res.output
    assert "detected by the models: 2 plates" in res.output and "2 faces" in res.output
    with pytest.raises(FitnessError, match="needs a recording"):
        from edge.camera import load_camera

        assess(load_camera(cam), models_dir=models)
