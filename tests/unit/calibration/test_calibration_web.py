"""Zones editor API without a browser: state, validated save that keeps other sections,
named errors, and refusal of cross-site (non-JSON) posts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from calibration.camfile import write_camera
from calibration.web.app import create_app
from edge.camera import CalibrationFileError, CameraCalibration, load_camera


@pytest.fixture
def client(tmp_path: Path) -> tuple[TestClient, Path]:
    cam = tmp_path / "c.camera.yaml"
    write_camera(CameraCalibration.model_validate(
        {"camera_id": "c", "image_size": (320, 240), "thresholds": {"phone_use": {"min_confidence": 0.7}}}), cam)
    return TestClient(create_app(cam, np.zeros((240, 320, 3), np.uint8))), cam


def test_state_snapshot_and_save(client) -> None:  # type: ignore[no-untyped-def]
    c, cam = client
    st = c.get("/api/state").json()
    assert st["image_size"] == [320, 240] and st["zones"]["capture"] is None and st["road_grid"] == []
    assert c.get("/snapshot.jpg").content[:2] == b"\xff\xd8"
    assert "zones.js" in c.get("/").text
    r = c.post("/api/zones", json={"capture": [[0, 0], [300, 0], [300, 200]],
                                   "lanes": {"L1": [[0, 0], [50, 0], [0, 50]]}, "exclusion": []})
    assert r.status_code == 200 and r.json()["ok"]
    cal = load_camera(cam)
    assert cal.zones.lanes["L1"] == [[0, 0], [50, 0], [0, 50]] and cal.thresholds["phone_use"].min_confidence == 0.7


def test_errors_are_named_and_nothing_written(client) -> None:  # type: ignore[no-untyped-def]
    c, cam = client
    before = cam.read_text()
    r = c.post("/api/zones", json={"capture": [[0, 0], [400, 0], [300, 200]]})
    assert r.status_code == 422 and "capture: point(s) [2] lie outside the 320x240" in r.json()["error"]
    r = c.post("/api/zones", content=b'{"capture": [[0,0],[10,0],[0,10]]}', headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert cam.read_text() == before


def test_snapshot_size_must_match_camera(tmp_path: Path) -> None:
    cam = tmp_path / "c.camera.yaml"
    write_camera(CameraCalibration(camera_id="c", image_size=(320, 240)), cam)
    with pytest.raises(CalibrationFileError, match="320x240"):
        create_app(cam, np.zeros((480, 640, 3), np.uint8))


def test_road_endpoint_fits_and_explains_failures(client) -> None:  # type: ignore[no-untyped-def]
    c, cam = client
    h_true = np.array([[0.02, 0.0, -3.2], [0.0, -0.05, 12.0], [0.0, 0.004, 1.0]])  # any plausible image->road map
    img = [[40.0, 200.0], [280.0, 200.0], [100.0, 120.0], [220.0, 120.0], [160.0, 160.0]]
    from calibration.homography import apply_homography

    road = apply_homography(h_true, img).tolist()
    pts = [{"image": p, "road": q} for p, q in zip(img, road, strict=True)]
    r = c.post("/api/road", json={"points": pts, "ransac": False})
    assert r.status_code == 200 and r.json()["ok"] and r.json()["rms_m"] < 1e-6
    rp = load_camera(cam).road_plane
    assert rp is not None and np.allclose(rp.homography, h_true, atol=1e-9)
    assert c.get("/api/state").json()["road_points"][0]["image"] == img[0]
    bad = [dict(p) for p in pts]
    bad[4] = {"image": img[4], "road": [road[4][0] + 2.0, road[4][1]]}
    r = c.post("/api/road", json={"points": bad, "ransac": False})
    assert r.status_code == 422 and "largest error (#" in r.json()["error"] and len(r.json()["residuals_m"]) == 5
    r = c.post("/api/road", json={"points": pts[:3]})
    assert r.status_code == 422 and "at least 4" in r.json()["error"]
    r = c.post("/api/road", json={"points": [{"image": [1, 2]}]})
    assert r.status_code == 422 and "expected {points" in r.json()["error"]
    r = c.post("/api/road", json={"points": [{"image": [999, 2], "road": [0, 0]}, *pts[1:]]})
    assert r.status_code == 422 and "outside the image" in r.json()["error"]
    after = load_camera(cam).road_plane
    assert after is not None and np.allclose(after.homography, h_true, atol=1e-9)  # failures change nothing
