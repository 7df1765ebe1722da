"""Lens calibration recovers a KNOWN K + distortion from synthetic board views.

Views are rendered exactly (per-pixel inverse mapping through the known distortion), then
blurred and noised; tolerances: fx, fy within 1 %, principal point within 1 % of the width,
RMS < 0.5 px, board coverage > 60 % of the frame, and the recovered undistortion within
0.5 px (checkerboard) / 1 px (ChArUco) of the truth wherever the board was seen.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration.lens import (
    BoardSpec,
    LensCalibrationError,
    Undistorter,
    calibrate_lens,
    detect_board,
    distort_points,
    undistort_crop,
    undistort_points,
)
from calibration.synthetic import board_image, degrade, look_at_poses, render_view

K = np.array([[820.0, 0.0, 492.0], [0.0, 815.0, 357.0], [0.0, 0.0, 1.0]])
DIST = np.array([-0.28, 0.09, 0.0012, -0.0007, -0.01])
SIZE = (960, 720)


def _views(spec: BoardSpec, n: int = 12, seed: int = 3) -> list[tuple[str, np.ndarray]]:
    tex = board_image(spec, 4.0)
    poses = look_at_poses(spec, n, 650.0, seed=seed)
    return [(f"view{i}.png", degrade(render_view(tex, K, DIST, rv, tv, SIZE), blur_sigma=0.7, noise_sigma=2.0,
                                     seed=i)) for i, (rv, tv) in enumerate(poses)]


@pytest.fixture(scope="module")
def checker_views() -> list[tuple[str, np.ndarray]]:
    return _views(BoardSpec("checkerboard", 10, 7, 30.0))


@pytest.fixture(scope="module")
def charuco_views() -> list[tuple[str, np.ndarray]]:
    return _views(BoardSpec("charuco", 9, 6, 30.0), seed=5)


def _undistortion_error_px(res) -> float:  # type: ignore[no-untyped-def]
    """Max disagreement between true and estimated undistortion over the part of the image
    the board views covered (outside it the polynomial is extrapolated, as for any tool)."""
    u, v = np.meshgrid(np.linspace(0, SIZE[0], 25), np.linspace(0, SIZE[1], 19))
    raw = np.c_[u.ravel(), v.ravel()]
    raw = raw[res.covers(raw)]
    k_est, d_est = res.camera_matrix, res.dist_coeffs
    return float(np.max(np.linalg.norm(undistort_points(raw, k_est, d_est) - undistort_points(raw, K, DIST), axis=1)))


def _check(res, undist_tol_px: float = 0.5) -> None:  # type: ignore[no-untyped-def]
    k = res.camera_matrix
    assert k[0, 0] == pytest.approx(K[0, 0], rel=0.01)
    assert k[1, 1] == pytest.approx(K[1, 1], rel=0.01)
    assert abs(k[0, 2] - K[0, 2]) < 0.01 * SIZE[0]
    assert abs(k[1, 2] - K[1, 2]) < 0.01 * SIZE[0]
    assert res.rms_px < 0.5
    assert res.dist_coeffs[0] == pytest.approx(DIST[0], abs=0.03)
    assert res.coverage > 0.6
    assert _undistortion_error_px(res) < undist_tol_px


def test_checkerboard_recovers_known_lens(checker_views) -> None:
    res = calibrate_lens(checker_views, BoardSpec("checkerboard", 10, 7, 30.0))
    # A checkerboard must be fully visible: views cut by the frame edge are rejected, named.
    assert len(res.per_view_rms_px) >= 10
    assert all("inner-corner grid" in why for why in res.rejected.values())
    _check(res)


def test_charuco_recovers_known_lens(charuco_views) -> None:
    res = calibrate_lens(charuco_views, BoardSpec("charuco", 9, 6, 30.0))
    assert len(res.per_view_rms_px) >= 10
    # Partial views near the frame corners constrain the periphery less: 1 px there.
    _check(res, undist_tol_px=1.0)


def test_detected_corners_match_projection(charuco_views) -> None:
    """ChArUco ids pin the corner identity, so detections compare 1:1 with the truth."""
    spec = BoardSpec("charuco", 9, 6, 30.0)
    rv, tv = look_at_poses(spec, 12, 650.0, seed=5)[1]
    det = detect_board(charuco_views[1][1], spec)
    assert det is not None
    proj, _ = cv2.projectPoints(det.object_points, rv, tv, K, DIST)
    err = np.linalg.norm(proj.reshape(-1, 2) - det.image_points, axis=1)
    assert np.median(err) < 0.3 and err.max() < 1.0


def test_wrong_board_size_and_blank_views_are_explained(checker_views) -> None:
    blank = [("blank.png", np.full((SIZE[1], SIZE[0], 3), 128, np.uint8))]
    with pytest.raises(LensCalibrationError, match=r"found in 0 of .*count squares"):
        calibrate_lens(checker_views[:2], BoardSpec("checkerboard", 9, 6, 30.0))
    res = calibrate_lens(checker_views[:5] + blank, BoardSpec("checkerboard", 10, 7, 30.0))
    assert "blank.png" in res.rejected and "no 9x6 inner-corner grid" in res.rejected["blank.png"]
    with pytest.raises(LensCalibrationError, match="differs"):
        calibrate_lens([("small.png", np.zeros((100, 100), np.uint8)), *checker_views[:1]],
                       BoardSpec("checkerboard", 10, 7, 30.0))
    with pytest.raises(LensCalibrationError, match="square"):
        BoardSpec("checkerboard", 8, 8, 30.0)


def test_point_helpers_are_inverse_and_crop_matches_full_frame() -> None:
    rng = np.random.default_rng(0)
    ideal = rng.uniform([50, 50], [SIZE[0] - 50, SIZE[1] - 50], (200, 2))
    raw = distort_points(ideal, K, DIST)
    assert np.max(np.abs(undistort_points(raw, K, DIST) - ideal)) < 1e-3
    small = (rng.uniform(0, 255, (SIZE[1] // 8, SIZE[0] // 8, 3))).astype(np.uint8)
    frame = np.asarray(cv2.resize(small, SIZE, interpolation=cv2.INTER_CUBIC), np.uint8)
    full = Undistorter(K, DIST, SIZE)(frame)
    box = (600, 400, 760, 520)
    crop = undistort_crop(frame, K, DIST, box)
    ref = full[box[1]:box[3], box[0]:box[2]]
    assert crop.shape == ref.shape
    # Same sampling, different map precision (16-bit fixed point vs float): within 2 levels.
    assert np.mean(np.abs(crop.astype(int) - ref.astype(int))) < 2.0


def test_printable_board_is_detected_and_cli_reads_video(tmp_path, checker_views) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from calibration.cli import calibrate
    from edge.camera import load_camera

    r = CliRunner()
    png = tmp_path / "board.png"
    res = r.invoke(calibrate, ["board", "--pattern", "charuco", "--cols", "9", "--rows", "6", "--square-mm", "30",
                               "--px-per-mm", "4", "--out", str(png)])
    assert res.exit_code == 0, res.output
    det = detect_board(np.asarray(cv2.imread(str(png)), np.uint8), BoardSpec("charuco", 9, 6, 30.0))
    assert det is not None and len(det.image_points) == 8 * 5  # every inner corner of the print
    # Views as a video (MJPG keeps corners sharp), every frame used.
    vid = tmp_path / "boards.avi"
    wr = cv2.VideoWriter(str(vid), cv2.VideoWriter.fourcc(*"MJPG"), 5, SIZE)
    for _, im in checker_views:
        wr.write(cv2.cvtColor(im, cv2.COLOR_GRAY2BGR))
    wr.release()
    cam = tmp_path / "c1.camera.yaml"
    report = tmp_path / "lens.json"
    res = r.invoke(calibrate, ["lens", str(vid), "--pattern", "checkerboard", "--cols", "10", "--rows", "7",
                               "--square-mm", "30", "--video-step", "1", "--out", str(cam), "--json", str(report)])
    assert res.exit_code == 0, res.output
    lens = load_camera(cam).lens
    assert lens is not None and abs(lens.camera_matrix[0][0] - K[0, 0]) < 0.01 * K[0, 0]
    assert "boards.avi#0" in report.read_text()
    # A bar that cannot be met refuses to write, saying why.
    res = r.invoke(calibrate, ["lens", str(vid), "--pattern", "checkerboard", "--cols", "10", "--rows", "7",
                               "--square-mm", "30", "--video-step", "1", "--out", str(tmp_path / "x.yaml"),
                               "--max-rms", "0.001"])
    assert res.exit_code == 1 and "not written" in res.output and not (tmp_path / "x.yaml").exists()
