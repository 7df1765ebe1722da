"""Road-plane geometry: image pixels <-> road metres through a plane homography (pure numpy).

Convention (also what `roadeye calibrate road` writes into `road_plane.homography`):
``H`` maps image pixels (u, v) to road metres (X, Y) on the road surface, with X across the
road (lateral) and Y along the road. The edge uses the functions here for distance along the
road, expected plate size at an image position and vehicle speed; they take plain arrays so
they work on any camera YAML without importing the CLI or OpenCV.

Image positions passed to the size functions are *ground contact points* (e.g. the bottom
centre of a vehicle box): the road Jacobian is exact there, and a front plate sits at about
the depth of the front wheels' contact line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

#: Chinese standard plate (GA 36-2018) outline and character size, metres.
PLATE_WIDTH_M = 0.440
PLATE_HEIGHT_M = 0.140
PLATE_CHAR_HEIGHT_M = 0.090


class HomographyError(ValueError):
    """Bad correspondences or a degenerate fit; the message says which points and why."""


@dataclass(frozen=True)
class HomographyFit:
    """Result of `fit_homography`: the image->road matrix and how well it explains the points."""

    homography: Array  # 3x3 image pixels -> road metres, H[2,2] == 1
    residuals_m: Array  # (N,) road-space distance of each mapped image point from its road point
    residuals_px: Array  # (N,) image-space distance of each mapped road point from its image point
    inliers: npt.NDArray[np.bool_] = field(repr=False)

    @property
    def rms_m(self) -> float:
        """Reprojection RMS in metres over the inliers (what the YAML stores as rms_m)."""
        r = self.residuals_m[self.inliers]
        return float(np.sqrt(np.mean(r**2))) if len(r) else float("nan")

    @property
    def rms_px(self) -> float:
        r = self.residuals_px[self.inliers]
        return float(np.sqrt(np.mean(r**2))) if len(r) else float("nan")

    @property
    def max_m(self) -> float:
        return float(np.max(self.residuals_m[self.inliers]))


def _as_points(pts: Any, name: str) -> Array:
    arr = np.asarray(pts, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 2:
        arr = arr.reshape(1, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise HomographyError(f"{name} must be an (N, 2) array of points, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise HomographyError(f"{name} contains non-finite values")
    return arr


def apply_homography(h: Any, pts: Any) -> Array:
    """Map (N, 2) points through a 3x3 homography; points at/behind the horizon give inf/nan."""
    hm = np.asarray(h, dtype=np.float64)
    p = _as_points(pts, "points")
    q = np.c_[p, np.ones(len(p))] @ hm.T
    with np.errstate(divide="ignore", invalid="ignore"):
        return q[:, :2] / q[:, 2:3]


def _normaliser(p: Array) -> Array:
    """Hartley normalisation: centroid to origin, mean distance sqrt(2) (conditions the DLT)."""
    c = p.mean(axis=0)
    d = np.sqrt(((p - c) ** 2).sum(axis=1)).mean()
    s = np.sqrt(2.0) / d if d > 0 else 1.0
    return np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1.0]])


def _dlt(src: Array, dst: Array) -> Array:
    """Normalised direct linear transform, src -> dst, least squares for N > 4."""
    ts, td = _normaliser(src), _normaliser(dst)
    s = apply_homography(ts, src)
    d = apply_homography(td, dst)
    n = len(s)
    a = np.zeros((2 * n, 9))
    a[0::2, 0:2] = s
    a[0::2, 2] = 1
    a[0::2, 6:8] = -d[:, :1] * s
    a[0::2, 8] = -d[:, 0]
    a[1::2, 3:5] = s
    a[1::2, 5] = 1
    a[1::2, 6:8] = -d[:, 1:2] * s
    a[1::2, 8] = -d[:, 1]
    _, sv, vt = np.linalg.svd(a)
    # Rank check: with 4+ points in general position the null space is 1-D. A second tiny
    # singular value means collinear / repeated points and an arbitrary answer.
    if sv[-2] < 1e-8 * sv[0]:
        raise HomographyError("points are degenerate (three or more collinear, or repeated)")
    hn = vt[-1].reshape(3, 3)
    h = np.linalg.inv(td) @ hn @ ts
    if abs(h[2, 2]) < 1e-12:
        raise HomographyError("degenerate homography (H[2,2] ~ 0)")
    return h / h[2, 2]


def _refine(h: Array, src: Array, dst: Array, iters: int = 20) -> Array:
    """Gauss-Newton on the 8 free entries, minimising the road-space (dst) error in metres.

    Works in Hartley-normalised coordinates (a similarity on dst, so the same minimiser) to
    keep the normal equations well conditioned with 4K pixel coordinates.
    """
    ts, td = _normaliser(src), _normaliser(dst)
    src, dst = apply_homography(ts, src), apply_homography(td, dst)
    hn = td @ h @ np.linalg.inv(ts)
    p = (hn / hn[2, 2]).ravel()[:8].copy()
    for _ in range(iters):
        hm = np.append(p, 1.0).reshape(3, 3)
        q = np.c_[src, np.ones(len(src))] @ hm.T
        w = q[:, 2]
        pred = q[:, :2] / w[:, None]
        r = (pred - dst).ravel()
        jac = np.zeros((2 * len(src), 8))
        du, dv = src[:, 0] / w, src[:, 1] / w
        jac[0::2, 0], jac[0::2, 1], jac[0::2, 2] = du, dv, 1 / w
        jac[1::2, 3], jac[1::2, 4], jac[1::2, 5] = du, dv, 1 / w
        jac[0::2, 6], jac[0::2, 7] = -pred[:, 0] * du, -pred[:, 0] * dv
        jac[1::2, 6], jac[1::2, 7] = -pred[:, 1] * du, -pred[:, 1] * dv
        step, *_ = np.linalg.lstsq(jac, -r, rcond=None)
        p += step
        if np.max(np.abs(step)) < 1e-12 * max(1.0, np.max(np.abs(p))):
            break
    out = np.linalg.inv(td) @ np.append(p, 1.0).reshape(3, 3) @ ts
    return out / out[2, 2]


def _residuals(h: Array, img: Array, road: Array) -> tuple[Array, Array]:
    road_pred = apply_homography(h, img)
    res_m = np.linalg.norm(road_pred - road, axis=1)
    img_pred = apply_homography(np.linalg.inv(h), road)
    res_px = np.linalg.norm(img_pred - img, axis=1)
    return res_m, res_px


def fit_homography(
    image_points: Any,
    road_points_m: Any,
    *,
    ransac: bool = False,
    ransac_threshold_m: float = 0.25,
    ransac_iters: int = 2000,
    seed: int = 0,
) -> HomographyFit:
    """Fit image->road H from >= 4 correspondences (>= 5 for RANSAC, which drops mis-clicks).

    Raises HomographyError for too few, duplicate or collinear points, and for point sets that
    straddle the horizon (some points would map behind the camera).
    """
    img = _as_points(image_points, "image_points")
    road = _as_points(road_points_m, "road_points_m")
    if len(img) != len(road):
        raise HomographyError(f"{len(img)} image points but {len(road)} road points; they must pair up")
    if len(img) < 4:
        raise HomographyError(f"a homography needs at least 4 point pairs, got {len(img)}")
    for name, arr in (("image", img), ("road", road)):
        d = np.linalg.norm(arr[:, None] - arr[None], axis=2) + np.eye(len(arr)) * 1e9
        i, j = np.unravel_index(np.argmin(d), d.shape)
        if d[i, j] < 1e-6:
            raise HomographyError(f"{name} points #{i + 1} and #{j + 1} are identical")

    inliers = np.ones(len(img), dtype=bool)
    if ransac:
        if len(img) < 5:
            raise HomographyError("RANSAC needs at least 5 point pairs (4 always fit exactly)")
        inliers = _ransac(img, road, ransac_threshold_m, ransac_iters, seed)
        if inliers.sum() < 4:
            raise HomographyError(
                f"RANSAC found only {int(inliers.sum())} consistent points at {ransac_threshold_m} m; "
                "check the road coordinates or raise --ransac-threshold"
            )
    h = _dlt(img[inliers], road[inliers])
    if inliers.sum() > 4:
        h = _refine(h, img[inliers], road[inliers])
    w = np.c_[img, np.ones(len(img))] @ h[2]
    if not (np.all(w > 0) or np.all(w < 0)):
        bad = [int(i) + 1 for i in np.flatnonzero(np.sign(w) != np.sign(np.median(w)))]
        raise HomographyError(f"points {bad} fall on the other side of the horizon from the rest")
    res_m, res_px = _residuals(h, img, road)
    return HomographyFit(homography=h, residuals_m=res_m, residuals_px=res_px, inliers=inliers)


def _ransac(img: Array, road: Array, thr: float, iters: int, seed: int) -> npt.NDArray[np.bool_]:
    rng = np.random.default_rng(seed)
    n = len(img)
    best = np.zeros(n, dtype=bool)
    best_err = np.inf
    needed = iters
    it = 0
    while it < min(iters, needed):
        it += 1
        idx = rng.choice(n, 4, replace=False)
        try:
            h = _dlt(img[idx], road[idx])
        except (HomographyError, np.linalg.LinAlgError):
            continue
        err = np.linalg.norm(apply_homography(h, img) - road, axis=1)
        err = np.where(np.isfinite(err), err, np.inf)
        inl = err < thr
        score = np.sum(np.minimum(err, thr) ** 2)  # MSAC: prefer tight fits among equal counts
        if inl.sum() > best.sum() or (inl.sum() == best.sum() and score < best_err):
            best, best_err = inl, score
            if best.all():
                break
            # Adaptive stop: enough samples that an all-inlier one was drawn with p = 0.999.
            w4 = (best.sum() / n) ** 4
            needed = int(np.ceil(np.log(1e-3) / np.log(1 - w4))) if 0 < w4 < 1 else iters
    return best


# ---------------------------------------------------------------------------------------------
# What the edge asks of a road plane


def road_position(h: Any, image_pt: Sequence[float]) -> tuple[float, float]:
    """(X, Y) road metres of one image point."""
    q = apply_homography(h, [image_pt])[0]
    return float(q[0]), float(q[1])


def distance_along_road(
    h: Any, p1: Sequence[float], p2: Sequence[float], direction: Sequence[float] = (0.0, 1.0)
) -> float:
    """Signed distance in metres from p1 to p2 (image points) projected on a road direction.

    `direction` is a road-plane vector (default the Y axis, i.e. along the road); pass a lane's
    own direction for curved or skewed lanes.
    """
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    a, b = apply_homography(h, [p1, p2])
    return float(np.dot(b - a, d))


def speed_along_lane(
    h: Any,
    p1: Sequence[float],
    t1: float,
    p2: Sequence[float],
    t2: float,
    direction: Sequence[float] = (0.0, 1.0),
) -> float:
    """Signed speed in m/s along `direction` from two timed ground positions (image pixels).

    Use ground contact points of the same tracked vehicle (bottom centre of its box); negative
    means moving against `direction` (e.g. towards the camera when Y grows away from it).
    """
    dt = float(t2) - float(t1)
    if dt <= 0:
        raise ValueError(f"t2 must be later than t1 (got dt={dt:.6f} s)")
    return distance_along_road(h, p1, p2, direction) / dt


def road_to_image_jacobian(h: Any, image_pt: Sequence[float]) -> Array:
    """2x2 Jacobian d(u, v)/d(X, Y) of the inverse homography at the road point under image_pt.

    Column 0: image pixels per metre moved across the road; column 1: per metre along it.
    """
    g = np.linalg.inv(np.asarray(h, dtype=np.float64))
    x, y = road_position(h, image_pt)
    p = np.array([x, y, 1.0])
    q = g @ p
    w = q[2]
    u = q[:2] / w
    return (g[:2, :2] - np.outer(u, g[2, :2])) / w


def pixels_per_metre(h: Any, image_pt: Sequence[float]) -> tuple[float, float]:
    """(across, along) image scale in px/m at a ground point."""
    j = road_to_image_jacobian(h, image_pt)
    return float(np.linalg.norm(j[:, 0])), float(np.linalg.norm(j[:, 1]))


def expected_plate_size_px(
    h: Any,
    image_pt: Sequence[float],
    plate_w_m: float = PLATE_WIDTH_M,
    plate_h_m: float = PLATE_HEIGHT_M,
) -> tuple[float, float]:
    """Expected (width, height) in pixels of a front/rear plate whose vehicle stands at image_pt.

    Width uses the lateral column of the road-to-image Jacobian (the plate is parallel to the
    road's X axis). The height takes the same px/m, i.e. treats the plate as fronto-parallel at
    that depth; with a camera tilted down by t this overstates it by about 1/cos(t) (5 % at 18°).
    """
    across, _ = pixels_per_metre(h, image_pt)
    return across * plate_w_m, across * plate_h_m


def motion_blur_px(
    h: Any,
    image_pt: Sequence[float],
    speed_mps: float,
    exposure_s: float,
    direction: Sequence[float] = (0.0, 1.0),
) -> float:
    """Pixels travelled during one exposure by a vehicle moving along `direction` at image_pt."""
    j = road_to_image_jacobian(h, image_pt)
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    return float(np.linalg.norm(j @ d) * abs(speed_mps) * exposure_s)


def road_grid(
    h: Any,
    image_size: tuple[int, int],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    step_x: float = 1.75,
    step_y: float = 5.0,
    samples: int = 40,
    front: Sequence[float] | None = None,
) -> list[tuple[str, Array]]:
    """Metric grid lines on the road as image polylines [(label, (N, 2) px)], for overlays that
    let an operator see at a glance whether the road plane is right (lines must follow lane
    markings; 5 m steps must look evenly spaced on the road). `front` is a road point known to
    be in view (e.g. a calibration point): points on the other side of the horizon are cut."""
    g = np.linalg.inv(np.asarray(h, np.float64))
    w, hh = image_size
    ref = np.array([*(front if front is not None else ((x_range[0] + x_range[1]) / 2, y_range[0])), 1.0])
    side = np.sign(g[2] @ ref) or 1.0
    out: list[tuple[str, Array]] = []

    def poly(road: Array, label: str) -> None:
        q = np.c_[road, np.ones(len(road))] @ g.T
        ok = q[:, 2] * side > 1e-9
        if ok.sum() < 2:
            return
        p = q[ok, :2] / q[ok, 2:3]
        inside = (p[:, 0] >= -w) & (p[:, 0] <= 2 * w) & (p[:, 1] >= -hh) & (p[:, 1] <= 2 * hh)
        if inside.sum() >= 2:
            out.append((label, p[inside]))

    xs = np.arange(np.floor(x_range[0] / step_x) * step_x, x_range[1] + 1e-9, step_x)
    ys = np.arange(np.ceil(y_range[0] / step_y) * step_y, y_range[1] + 1e-9, step_y)
    for y in ys:
        poly(np.c_[np.linspace(x_range[0], x_range[1], samples), np.full(samples, y)], f"{y:g} m")
    for x in xs:
        poly(np.c_[np.full(samples, x), np.linspace(y_range[0], y_range[1], samples)], "")
    return out


def lane_direction(h: Any, lane_polygon: Any) -> tuple[float, float]:
    """Unit road-plane vector along a lane polygon (its long axis on the road, pointing away
    from the camera, i.e. +Y-ward), for `speed_along_lane` on skewed or curving roads."""
    road = apply_homography(h, lane_polygon)
    if not np.all(np.isfinite(road)):
        raise HomographyError("lane polygon reaches beyond the road horizon")
    c = road - road.mean(axis=0)
    _, sv, vt = np.linalg.svd(c, full_matrices=False)
    if sv[1] > sv[0] / 1.5:
        raise HomographyError("lane polygon is not elongated on the road: its direction is ambiguous")
    d = vt[0]
    if d[1] < 0:
        d = -d
    return float(d[0]), float(d[1])
