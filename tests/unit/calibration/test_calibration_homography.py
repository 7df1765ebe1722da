"""Road-plane homography: exact recovery, noise, RANSAC, degenerate input, and the derived
quantities (plate size, speed, blur) checked against a known pinhole camera."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration import homography as hg
from calibration.synthetic import RoadCamera, render_road

CAM = RoadCamera(height_m=6.0, tilt_deg=18.0, focal_px=5200.0, size=(4096, 2160))
ROAD = np.array([[x, y] for x in (-3.75, 0.0, 3.75) for y in (15.0, 25.0, 40.0)])


def _img(cam: RoadCamera, road: np.ndarray) -> np.ndarray:
    return cam.project(np.c_[road, np.zeros(len(road))])


def _map_err_m(h_est: np.ndarray, h_true: np.ndarray, cam: RoadCamera, ys: tuple[float, float] = (12, 45)) -> float:
    """Max road-space disagreement over the monitored stretch (3 lanes, ys metres)."""
    grid = np.array([[x, y] for x in np.linspace(-5.6, 5.6, 8) for y in np.linspace(ys[0], ys[1], 12)])
    px = _img(cam, grid)
    return float(np.max(np.linalg.norm(hg.apply_homography(h_est, px) - hg.apply_homography(h_true, px), axis=1)))


def test_exact_recovery_of_known_homography() -> None:
    fit = hg.fit_homography(_img(CAM, ROAD), ROAD)
    h_true = CAM.homography_image_to_road()
    assert np.allclose(fit.homography, h_true, rtol=1e-8, atol=1e-12)
    assert fit.rms_m < 1e-9 and fit.rms_px < 1e-6


def test_noisy_clicks_stay_within_5cm_and_report_rms() -> None:
    rng = np.random.default_rng(7)
    img = _img(CAM, ROAD) + rng.normal(0, 0.7, (len(ROAD), 2))  # sub-pixel click noise
    fit = hg.fit_homography(img, ROAD)
    assert _map_err_m(fit.homography, CAM.homography_image_to_road(), CAM) < 0.05
    assert 0.0 < fit.rms_m < 0.05
    assert 0.2 < fit.rms_px < 1.5


def test_ransac_rejects_a_misclick() -> None:
    img = _img(CAM, ROAD)
    img[4] += (60.0, -40.0)  # operator clicked the wrong dash corner
    plain = hg.fit_homography(img, ROAD)
    robust = hg.fit_homography(img, ROAD, ransac=True, ransac_threshold_m=0.2)
    assert plain.rms_m > 0.1
    assert robust.inliers.tolist() == [i != 4 for i in range(len(ROAD))]
    assert robust.residuals_m[4] > 0.5  # still reported, flagged as the outlier
    assert np.allclose(robust.homography, CAM.homography_image_to_road(), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize(
    ("img", "road", "msg"),
    [
        ([[0, 0], [1, 0], [0, 1]], [[0, 0], [1, 0], [0, 1]], "at least 4"),
        ([[0, 0], [100, 0], [200, 0], [300, 0]], [[0, 0], [1, 0], [2, 0], [3, 0]], "degenerate"),
        ([[0, 0], [100, 0], [0, 100], [0, 100]], [[0, 0], [1, 0], [0, 1], [1, 1]], "identical"),
        ([[0, 0], [100, 0], [0, 100]], [[0, 0], [1, 0], [0, 1], [1, 1]], "pair up"),
    ],
)
def test_bad_correspondences_are_named(img, road, msg) -> None:
    with pytest.raises(hg.HomographyError, match=msg):
        hg.fit_homography(img, road)


def test_points_across_the_horizon_are_rejected() -> None:
    cam = RoadCamera(6.0, 5.0, 5200.0, (4096, 2160))  # horizon inside the frame, at v ~ 625
    road = np.array([[-3.75, 20], [3.75, 20], [-3.75, 60], [3.75, 60], [0, 40]])
    img = _img(cam, road)
    img[4] = [2048, 300]  # a click in the sky
    with pytest.raises(hg.HomographyError, match="horizon"):
        hg.fit_homography(img, road)


@pytest.mark.parametrize("y", [15.0, 20.0, 30.0, 45.0])
def test_expected_plate_size_matches_projected_plate(y: float) -> None:
    """Jacobian estimate vs the true projection of a 440x140 mm plate, 0.45 m above the road."""
    h = hg.fit_homography(_img(CAM, ROAD), ROAD).homography
    foot = _img(CAM, np.array([[1.0, y]]))[0]
    w_est, h_est = hg.expected_plate_size_px(h, foot)
    z = 0.45
    c = CAM.project([[0.78, y, z], [1.22, y, z], [1.0, y, z - 0.07], [1.0, y, z + 0.07]])
    w_true, h_true = np.linalg.norm(c[1] - c[0]), np.linalg.norm(c[3] - c[2])
    assert w_est == pytest.approx(w_true, rel=0.03)
    assert h_est == pytest.approx(h_true, rel=0.08)  # fronto-parallel approximation (cos tilt)


def test_speed_and_distance_along_road() -> None:
    h = CAM.homography_image_to_road()
    p1, p2 = _img(CAM, np.array([[1.8, 32.0], [1.8, 30.0]]))
    # 2 m towards the camera in 0.12 s = 60 km/h, negative along +Y.
    assert hg.distance_along_road(h, p1, p2) == pytest.approx(-2.0, abs=1e-9)
    v = hg.speed_along_lane(h, p1, 0.0, p2, 0.12)
    assert v * 3.6 == pytest.approx(-60.0, abs=1e-6)
    with pytest.raises(ValueError, match="later"):
        hg.speed_along_lane(h, p1, 1.0, p2, 1.0)


def test_motion_blur_equals_projected_travel() -> None:
    h = CAM.homography_image_to_road()
    foot = _img(CAM, np.array([[0.0, 20.0]]))[0]
    v, t = 60 / 3.6, 0.001
    blur = hg.motion_blur_px(h, foot, v, t)
    a, b = _img(CAM, np.array([[0.0, 20.0], [0.0, 20.0 - v * t]]))
    assert blur == pytest.approx(float(np.linalg.norm(b - a)), rel=1e-3)


def _dash_corners(img: np.ndarray) -> list[np.ndarray]:
    """Sub-pixel corners of every white dash: sides fitted as lines, then intersected."""
    _, bw = cv2.threshold(img, 160, 255, cv2.THRESH_BINARY)
    contours, _ = cv2.findContours(bw, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    quads = []
    for c in contours:
        if cv2.contourArea(c) < 80:
            continue
        approx = cv2.approxPolyDP(c, 0.02 * cv2.arcLength(c, True), True).reshape(-1, 2).astype(float)
        if len(approx) != 4:
            continue
        pts = c.reshape(-1, 2).astype(float)
        lines = []
        for i in range(4):
            a, b = approx[i], approx[(i + 1) % 4]
            d = b - a
            t = np.clip(((pts - a) @ d) / (d @ d), 0, 1)
            dist = np.linalg.norm(pts - (a + t[:, None] * d), axis=1)
            sel = pts[(dist < 1.5) & (t > 0.15) & (t < 0.85)]
            if len(sel) < 3:
                break
            vx, vy, x0, y0 = cv2.fitLine(sel.astype(np.float32), cv2.DIST_L2, 0, 0.01, 0.01).ravel()
            # Contour pixels are the outermost white pixel centres; the 50 % edge lies half a
            # pixel further out.
            n = np.array([-vy, vx])
            if n @ (np.array([x0, y0]) - approx.mean(axis=0)) < 0:
                n = -n
            x0, y0 = x0 + 0.5 * n[0], y0 + 0.5 * n[1]
            lines.append(np.cross([x0, y0, 1.0], [x0 + vx, y0 + vy, 1.0]))
        if len(lines) != 4:
            continue
        corners = []
        for i in range(4):
            p = np.cross(lines[i - 1], lines[i])
            corners.append(p[:2] / p[2])
        quads.append(np.array(corners))
    return quads


def test_recover_road_homography_from_rendered_scene() -> None:
    """Render lane markings through a known camera, locate dash corners in the image like an
    operator would, give them their known road coordinates, and recover the camera's H."""
    cam = RoadCamera(height_m=6.0, tilt_deg=22.0, focal_px=2600.0, size=(1920, 1080), x_m=0.5, pan_deg=-2.0)
    img = render_road(cam)
    h_true = cam.homography_image_to_road()
    # Known layout: dividers at X = -1.875 and +1.875, dashes 6 m long from Y = 5 every 15 m.
    known = np.array([[x + sx * 0.075, y0 + dy] for x in (-1.875, 1.875) for y0 in (5.0, 20.0, 35.0)
                      for dy in (0.0, 6.0) for sx in (-1, 1)])
    known_px = cam.project(np.c_[known, np.zeros(len(known))])
    img_pts, road_pts = [], []
    for quad in _dash_corners(img):
        for corner in quad:
            d = np.linalg.norm(known_px - corner, axis=1)
            j = int(np.argmin(d))
            if d[j] < 6.0:  # the operator knows which dash corner they clicked
                img_pts.append(corner)
                road_pts.append(known[j])
    assert len(img_pts) >= 12, f"found only {len(img_pts)} dash corners"
    fit = hg.fit_homography(img_pts, road_pts)
    assert fit.rms_m < 0.06
    # Checked over the stretch the markings cover (11-32 m), three lanes wide.
    assert _map_err_m(fit.homography, h_true, cam, ys=(11, 32)) < 0.10


def test_lane_direction_for_a_skewed_lane() -> None:
    h = CAM.homography_image_to_road()
    ang = np.deg2rad(10.0)  # lane turning 10 degrees to the right of the road axis
    d = np.array([np.sin(ang), np.cos(ang)])
    n = np.array([d[1], -d[0]])
    corners = [s * 1.75 * n + t * d for s, t in ((-1, 12), (1, 12), (1, 40), (-1, 40))]
    lane_px = _img(CAM, np.array(corners))
    dx, dy = hg.lane_direction(h, lane_px)
    assert np.allclose((dx, dy), d, atol=1e-6)
    p1, p2 = _img(CAM, np.array([12 * d + 8 * d, 12 * d + 6 * d]))
    assert hg.speed_along_lane(h, p1, 0.0, p2, 0.1, (dx, dy)) == pytest.approx(-20.0, abs=1e-6)
    square = _img(CAM, np.array([[0, 20], [3, 20], [3, 23], [0, 23]], float))
    with pytest.raises(hg.HomographyError, match="ambiguous"):
        hg.lane_direction(h, square)
