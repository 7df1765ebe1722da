"""The whole calibration of one camera through the real `roadeye` console script: lens from
rendered board views, zones on a snapshot, road plane from marking corners (one mis-click
removed by RANSAC), fitness report and review thresholds, all merged into one camera YAML."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration import homography as hg
from calibration.lens import BoardSpec
from calibration.synthetic import RoadCamera, board_image, degrade, look_at_poses, render_road, render_view
from edge.camera import load_camera

ROADEYE = Path(sys.executable).parent / "roadeye"
SIZE = (1280, 720)
K = np.array([[1150.0, 0, 643.0], [0, 1150.0, 361.0], [0, 0, 1]])
DIST = np.array([-0.12, 0.05, 0.0, 0.0, 0.0])


def _run(*args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([str(ROADEYE), "calibrate", *args], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode in ok, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


@pytest.mark.skipif(not ROADEYE.exists(), reason="roadeye console script not installed in this venv")
def test_full_calibration_flow(tmp_path: Path) -> None:
    spec = BoardSpec("checkerboard", 10, 7, 40.0)
    tex = board_image(spec, 3.0)
    boards = tmp_path / "boards"
    boards.mkdir()
    for i, (rv, tv) in enumerate(look_at_poses(spec, 10, 1100.0, seed=11, spread=0.28)):
        cv2.imwrite(str(boards / f"b{i:02d}.png"), degrade(render_view(tex, K, DIST, rv, tv, SIZE), seed=i))
    cam_yaml = tmp_path / "gantry-12.camera.yaml"

    out = _run("lens", str(boards), "--pattern", "checkerboard", "--cols", "10", "--rows", "7",
               "--square-mm", "40", "--out", str(cam_yaml)).stdout
    assert "reprojection RMS" in out and "lens written" in out
    cal = load_camera(cam_yaml)
    assert cal.camera_id == "gantry-12" and tuple(cal.image_size) == SIZE
    assert cal.lens is not None and abs(cal.lens.camera_matrix[0][0] - 1150.0) < 11.5

    road_cam = RoadCamera(height_m=6.5, tilt_deg=17.0, focal_px=1150.0, size=SIZE)
    snap = tmp_path / "snap.png"
    cv2.imwrite(str(snap), render_road(road_cam))

    def px(x: float, y: float) -> str:
        u, v = road_cam.project([[x, y, 0.0]])[0]
        return f"{u:.1f},{v:.1f}"

    capture = " ".join(px(x, y) for x, y in [(-5.6, 10), (5.6, 10), (5.6, 30), (-5.6, 30)])
    _run("zones", "--camera", str(cam_yaml), "--snapshot", str(snap), "--capture", capture,
         "--lane", "L1=" + " ".join(px(x, y) for x, y in [(-5.6, 10), (-1.9, 10), (-1.9, 30), (-5.6, 30)]))

    pairs = [(-1.875, 20.0), (1.875, 20.0), (-1.875, 26.0), (1.875, 26.0), (-1.875, 35.0), (1.875, 35.0),
             (-5.625, 14.0), (5.625, 14.0)]
    pts = [f"{px(x, y)}:{x},{y}" for x, y in pairs]
    u, v = road_cam.project([[1.875, 41.0, 0.0]])[0]
    pts[5] = f"{u:.1f},{v:.1f}:1.875,35.0"  # operator clicked the next dash: 6 m off
    bad = _run("road", "--camera", str(cam_yaml), "--points", " ".join(pts), ok=(1,))
    assert "not written" in bad.stderr
    out = _run("road", "--camera", str(cam_yaml), "--points", " ".join(pts), "--ransac",
               "--snapshot", str(snap), "--preview", str(tmp_path / "road.png")).stdout
    assert "OUTLIER" in out and "road_plane written" in out and "lens distortion moves" in out
    assert (tmp_path / "road.png").stat().st_size > 10_000
    cal = load_camera(cam_yaml)
    assert cal.road_plane is not None and len(cal.road_plane.image_points) == 7 and (cal.road_plane.rms_m or 0.0) < 0.05
    grid = np.array([[x, y, 0.0] for x in np.linspace(-5.6, 5.6, 6) for y in np.linspace(10, 40, 7)])
    mapped = hg.apply_homography(cal.road_plane.homography, road_cam.project(grid))
    assert np.max(np.linalg.norm(mapped - grid[:, :2], axis=1)) < 0.1  # metres, over 3 lanes x 30 m

    fit = _run("fitness", "--camera", str(cam_yaml), "--format", "json", ok=(0, 3))
    rep = json.loads(fit.stdout)
    assert [z["zone"] for z in rep["zones"]] == ["capture", "lane L1"]
    assert all(z["plates"] in {"resolvable", "partial", "not resolvable"} for z in rep["zones"])

    reviews = tmp_path / "reviews.csv"
    rng = np.random.default_rng(0)
    with reviews.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["event_id", "camera_id", "site_id", "violation", "confidence", "decision", "reviewed_at"])
        for i in range(200):
            confirmed = rng.uniform() < 0.5
            c = rng.uniform(0.55, 1.0) if confirmed else rng.uniform(0.3, 0.75)
            w.writerow([f"ev{i}", "gantry-12", "s1", "no_seatbelt", f"{c:.3f}",
                        "confirmed" if confirmed else "rejected", "2026-11-01T00:00:00Z"])
    out = _run("thresholds", "--reviews", str(reviews), "--camera", str(cam_yaml), "--target-precision", "0.95",
               "--plot", str(tmp_path / "pr.png")).stdout
    assert "OK" in out
    cal = load_camera(cam_yaml)
    t = cal.thresholds["no_seatbelt"].min_confidence
    assert 0.70 <= t <= 0.76  # rejected events stop at 0.75
    # Every step kept the others' sections.
    assert cal.lens is not None and cal.zones.capture is not None and "L1" in cal.zones.lanes
    assert cal.road_plane is not None
    show = _run("show", "--camera", str(cam_yaml)).stdout
    assert "lens:" in show and "road plane: 7 points" in show and "threshold no_seatbelt" in show
