"""Calibration geometry agrees with the scene renderer (models/synth) that makes the sample
clips: same road frame (x across, y along away from the pole, z up), same homography, and
the plate sizes predicted from a clip's camera YAML match the plates in its ground truth."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from calibration import homography as hg
from calibration.fitness import assess
from calibration.synthetic import RoadCamera
from edge.camera import load_camera

REPO = Path(__file__).resolve().parents[3]
synth_camera = pytest.importorskip("models.synth.camera", reason="renderer (models/synth) not available")


@pytest.mark.parametrize(("w", "h", "height_m", "aim"), [(4096, 2160, 6.0, 25.0), (1920, 1080, 7.5, 30.0)])
def test_same_camera_model_and_homography(w: int, h: int, height_m: float, aim: float) -> None:
    cam = synth_camera.enforcement_camera(w, h, height_m=height_m, aim_distance_m=aim)
    mine = RoadCamera(height_m=cam.height_m, tilt_deg=cam.tilt_deg, focal_px=cam.focal_px, size=(w, h))
    h_theirs = cam.homography_image_to_road()
    assert np.allclose(mine.homography_image_to_road(), h_theirs, rtol=1e-9, atol=1e-12)
    # `calibrate road` on marking points of the renderer's view recovers the renderer's H.
    road = np.array([[x, y] for x in (-3.5, 0.0, 3.5) for y in (15.0, 22.0, 30.0)])
    img = hg.apply_homography(np.linalg.inv(h_theirs), road)
    fit = hg.fit_homography(img, road)
    assert np.allclose(fit.homography, h_theirs, rtol=1e-7, atol=1e-12)


def test_plate_size_against_renderer_projection() -> None:
    cam = synth_camera.enforcement_camera(4096, 2160)
    h = cam.homography_image_to_road()
    for y in (15.0, 25.0, 35.0):
        foot = hg.apply_homography(np.linalg.inv(h), [[0.5, y]])[0]
        est_w, _ = hg.expected_plate_size_px(h, foot)
        (a, b), _ = cam.project(np.array([[0.28, y, 0.45], [0.72, y, 0.45]]))
        assert est_w == pytest.approx(float(np.linalg.norm(b - a)), rel=0.03)


def _clips() -> list[Path]:
    root = Path(os.environ.get("ROADEYE_SAMPLE_VIDEOS", REPO / "sample_videos"))
    return sorted(root.glob("*.groundtruth.json"))


@pytest.mark.skipif(not _clips(), reason="no sample_videos/*.groundtruth.json yet")
@pytest.mark.parametrize("gt_path", _clips(), ids=lambda p: p.name)
def test_sample_clip_camera_yaml_matches_groundtruth(gt_path: Path) -> None:
    gt = json.loads(gt_path.read_text())
    cam_yaml = gt_path.with_name(gt_path.name.replace(".groundtruth.json", ".camera.yaml"))
    cal = load_camera(cam_yaml)
    assert cal.road_plane is not None and tuple(cal.image_size) == (gt["width"], gt["height"])
    h = np.asarray(cal.road_plane.homography)
    h_gt = np.asarray(gt["camera"]["homography_image_to_road"])
    assert np.allclose(h / h[2, 2], h_gt / h_gt[2, 2], rtol=1e-6, atol=1e-12)
    # Predicted plate width at each fully visible vehicle's ground contact vs the rendered plate.
    ratios = []
    for v in gt["vehicles"]:
        if v["type"] == "two_wheeler":
            continue  # rear/side plates of riders are not front plates
        for t in v["track"]:
            if t["plate_box"] and t["visible_fraction"] >= 0.99:
                x1, _, x2, y2 = t["box"]
                est_w, _ = hg.expected_plate_size_px(h, ((x1 + x2) / 2, y2))
                px1, _, px2, _ = t["plate_box"]
                ratios.append(est_w / max(1.0, px2 - px1))
    if len(ratios) < 10:
        pytest.skip(f"{gt_path.name}: only {len(ratios)} fully visible plates")
    assert 0.8 < float(np.median(ratios)) < 1.25, f"median predicted/rendered plate width {np.median(ratios):.2f}"
    rep = assess(cal)  # the fitness report runs on every shipped camera
    assert rep.zones and rep.zones[0].zone == "capture"
