"""Fitness report against a known camera: sizes equal the pinhole projection, verdicts follow
the criteria, blur advice is actionable, and a recording is checked and measured."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from calibration import homography as hg
from calibration.camfile import write_camera
from calibration.cli import calibrate
from calibration.fitness import FitnessError, assess
from calibration.synthetic import RoadCamera, render_road
from edge.camera import CameraCalibration, RoadPlane, Zones

CAM = RoadCamera(height_m=6.0, tilt_deg=18.0, focal_px=2600.0, size=(1920, 1080))


def _px(road: list[list[float]]) -> list[list[float]]:
    return CAM.project(np.c_[np.asarray(road, float), np.zeros(len(road))]).round(1).tolist()


def _cal() -> CameraCalibration:
    road = [[-3.75, 12.0], [3.75, 12.0], [-3.75, 40.0], [3.75, 40.0], [0.0, 25.0]]
    img = _px(road)
    fit = hg.fit_homography(img, road)
    return CameraCalibration(
        camera_id="cam03", image_size=CAM.size,
        zones=Zones(capture=_px([[-5.6, 11.0], [5.6, 11.0], [5.6, 13.0], [-5.6, 13.0]]),
                    lanes={"far": _px([[-1.8, 35.0], [1.8, 35.0], [1.8, 50.0], [-1.8, 50.0]])}),
        road_plane=RoadPlane(image_points=img, road_points_m=road, homography=fit.homography.tolist(),
                             rms_m=fit.rms_m),
    )


def test_sizes_match_projection_and_verdicts() -> None:
    rep = assess(_cal(), speed_kmh=60, shutter_ms=0.5)
    near, far = rep.zones
    assert near.zone == "capture" and far.zone == "lane far"
    # Character height at the near edge (Y=11 m): 90 mm at the plate's depth.
    depth = np.hypot(11.0, 6.0 - 0.45)
    assert near.plate_char_px.max == pytest.approx(2600 * 0.09 / depth, rel=0.12)
    assert near.plates == "resolvable" and near.plate_char_px.min >= 16
    assert far.plates == "not resolvable" and far.plate_char_px.max < 16
    assert any("far part: plate characters" in r for r in far.reasons)
    # Faces are 1.8 m further back than plates, hence smaller than the plate scale predicts.
    assert near.face_px.median < near.plate_char_px.median * 0.2 / 0.09
    assert near.occupants == "not resolvable"  # ~35 px faces at 1080p: below 40 px


def test_long_shutter_fails_on_blur_with_advice() -> None:
    rep = assess(_cal(), speed_kmh=80, shutter_ms=4.0)
    near = rep.zones[0]
    assert near.blur_px.min > 2.0 and near.plates == "not resolvable"
    msg = next(r for r in near.reasons if "motion blur" in r)
    need = float(msg.split("shutter <= ")[1].split(" ms")[0])
    assert 0.3 < need < 4.0
    ok = assess(_cal(), speed_kmh=80, shutter_ms=need * 0.95).zones[0]
    assert ok.blur_px.max <= 2.0


def test_requires_road_plane_and_matching_video(tmp_path: Path) -> None:
    cal = _cal()
    with pytest.raises(FitnessError, match="no road_plane"):
        assess(cal.model_copy(update={"road_plane": None}))
    vid = tmp_path / "small.mp4"
    wr = cv2.VideoWriter(str(vid), cv2.VideoWriter.fourcc(*"mp4v"), 25, (640, 360))
    wr.write(np.zeros((360, 640, 3), np.uint8))
    wr.release()
    with pytest.raises(FitnessError, match="640x360 but cam03"):
        assess(cal, video=vid)


def test_cli_with_recording_text_and_json(tmp_path: Path) -> None:
    cam = tmp_path / "cam03.camera.yaml"
    write_camera(_cal(), cam)
    vid = tmp_path / "clip.mp4"
    frame = cv2.cvtColor(render_road(CAM, supersample=1), cv2.COLOR_GRAY2BGR)
    wr = cv2.VideoWriter(str(vid), cv2.VideoWriter.fourcc(*"mp4v"), 25, CAM.size)
    for _ in range(4):
        wr.write(frame)
    wr.release()
    out = tmp_path / "fit.json"
    res = CliRunner().invoke(calibrate, ["fitness", "--camera", str(cam), "--video", str(vid), "--speed-kmh", "60",
                                         "--shutter-ms", "1", "--json", str(out)])
    assert res.exit_code == 3, res.output  # the far lane is not fit for enforcement
    assert "PLATES: RESOLVABLE" in res.output and "PLATES: NOT RESOLVABLE" in res.output
    data = json.loads(out.read_text())
    assert data["video"]["frames_sampled"] == 4 and data["video"]["width"] == 1920
    m = data["zones"][0]["measured"]
    assert 60 < m["mean_luma"] < 130 and m["clipped_frac"] < 0.05  # grey asphalt, some paint
    assert {z["zone"] for z in data["zones"]} == {"capture", "lane far"}
