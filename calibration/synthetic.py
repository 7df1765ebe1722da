"""Printable calibration targets and exact synthetic views of them through a known lens.

`board_image` is what an installer prints (`roadeye calibrate board`). `render_view` images a
board through K + distortion by inverse mapping every output pixel (undistort -> ray -> board
plane -> texture), supersampled, so the geometry is exact to the texture resolution. The
acceptance tests use it to check that `calibrate_lens` recovers a known lens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from calibration.lens import BoardSpec

U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class BoardTexture:
    image: U8  # grayscale
    px_per_mm: float
    origin_px: tuple[float, float]  # texture pixel of board coordinate (0, 0) mm


def board_image(spec: BoardSpec, px_per_mm: float = 4.0, margin_squares: float = 1.0) -> BoardTexture:
    """Board as a grayscale image with a white quiet zone, and where its coordinate origin lies.

    Checkerboard object points start at the first *inner* corner; ChArUco object points at
    the board's outer top-left corner (OpenCV's conventions for each).
    """
    sq = spec.square_mm * px_per_mm
    margin = round(margin_squares * sq)
    bw, bh = round(spec.cols * sq), round(spec.rows * sq)
    if spec.kind == "checkerboard":
        yy, xx = np.mgrid[0:bh, 0:bw]
        cells = (np.floor((xx + 0.5) / sq) + np.floor((yy + 0.5) / sq)).astype(np.int64) % 2
        board = np.where(cells == 0, 0, 255).astype(np.uint8)
        origin = (margin + sq, margin + sq)
    else:
        board = spec.charuco_board().generateImage((bw, bh), marginSize=0, borderBits=1)
        origin = (float(margin), float(margin))
    img = np.full((bh + 2 * margin, bw + 2 * margin), 255, np.uint8)
    img[margin : margin + bh, margin : margin + bw] = board
    return BoardTexture(img, px_per_mm, origin)


def render_view(
    tex: BoardTexture,
    camera_matrix: Any,
    dist_coeffs: Any,
    rvec: Any,
    tvec: Any,
    size: tuple[int, int],
    *,
    supersample: int = 2,
    background: int = 110,
) -> U8:
    """Image of the board (pose rvec/tvec in mm, board plane z=0) seen through K and dist."""
    w, h = size
    k = np.asarray(camera_matrix, np.float64)
    dist = np.asarray(dist_coeffs, np.float64)
    r, _ = cv2.Rodrigues(np.asarray(rvec, np.float64))
    hn = np.c_[r[:, 0], r[:, 1], np.asarray(tvec, np.float64).ravel()]  # board mm -> normalised
    hinv = np.linalg.inv(hn)
    s = supersample
    norm = _ray_grid(k, dist, size, s)
    q = np.c_[norm, np.ones(len(norm))] @ hinv.T
    with np.errstate(divide="ignore", invalid="ignore"):
        bx = q[:, 0] / q[:, 2]
        by = q[:, 1] / q[:, 2]
    # A ray hits the board in front of the camera only when the depth along it is positive.
    behind = q[:, 2] <= 0
    mx = (bx * tex.px_per_mm + tex.origin_px[0]).astype(np.float32)
    my = (by * tex.px_per_mm + tex.origin_px[1]).astype(np.float32)
    mx[behind | ~np.isfinite(mx)] = -1e6
    my[behind | ~np.isfinite(my)] = -1e6
    big = cv2.remap(
        tex.image, mx.reshape(h * s, w * s), my.reshape(h * s, w * s), cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=background,
    )
    out = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA) if s > 1 else big
    return np.asarray(out, np.uint8)


_RAYS: dict[bytes, npt.NDArray[np.float64]] = {}


def _ray_grid(k: npt.NDArray[np.float64], dist: npt.NDArray[np.float64], size: tuple[int, int], s: int
              ) -> npt.NDArray[np.float64]:
    """Normalised ray (x, y) of every supersampled pixel; pose-independent, so cached per lens.

    Undistortion is iterative and costly per point, but smooth: it is solved exactly on a grid
    every 4 output pixels and bilinearly interpolated (error << 0.01 px) in between.
    """
    key = k.tobytes() + dist.tobytes() + np.array([*size, s]).tobytes()
    if key not in _RAYS:
        w, h = size
        step = 4.0
        gx = np.arange(-1.0, w + step + 1, step)
        gy = np.arange(-1.0, h + step + 1, step)
        gu, gv = np.meshgrid(gx, gy)
        coarse = cv2.undistortPoints(
            np.c_[gu.ravel(), gv.ravel()].reshape(-1, 1, 2), k, dist,
            criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 60, 1e-14),
        ).reshape(len(gy), len(gx), 2).astype(np.float32)
        us = (np.arange(w * s) + 0.5) / s - 0.5
        vs = (np.arange(h * s) + 0.5) / s - 0.5
        mu, mv = np.meshgrid(((us - gx[0]) / step).astype(np.float32), ((vs - gy[0]) / step).astype(np.float32))
        fine = cv2.remap(coarse, mu, mv, cv2.INTER_LINEAR)
        _RAYS[key] = fine.reshape(-1, 2).astype(np.float64)
    return _RAYS[key]


def degrade(img: U8, blur_sigma: float = 0.7, noise_sigma: float = 2.0, seed: int = 0) -> U8:
    """Optical blur and sensor noise, so detection is tested on imperfect images."""
    out = cv2.GaussianBlur(img.astype(np.float32), (0, 0), blur_sigma) if blur_sigma > 0 else img.astype(np.float32)
    out += np.random.default_rng(seed).normal(0, noise_sigma, img.shape).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def look_at_poses(
    spec: BoardSpec, n: int, distance_mm: float, seed: int = 0, max_tilt_deg: float = 35.0,
    spread: float = 0.38,
) -> list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
    """n varied board poses (rvec, tvec), tilted up to max_tilt_deg.

    Board centres cycle over a 3x3 grid of view directions (normalised image coordinates up
    to +-spread), as a careful operator does, so the corners of the image are covered.
    """
    rng = np.random.default_rng(seed)
    cx = spec.cols * spec.square_mm / 2
    cy = spec.rows * spec.square_mm / 2
    if spec.kind == "checkerboard":  # object origin is the first inner corner
        cx -= spec.square_mm
        cy -= spec.square_mm
    grid = [(0.0, 0.0)] + [(gx, gy) for gy in (-1, 0, 1) for gx in (-1, 0, 1) if (gx, gy) != (0, 0)]
    poses = []
    for i in range(n):
        ang = np.deg2rad(rng.uniform(-max_tilt_deg, max_tilt_deg, 3)) * np.array([1, 1, 0.4])
        if i == 0:
            ang[:] = 0
        r, _ = cv2.Rodrigues(ang)
        gx, gy = grid[i % len(grid)]
        z = distance_mm * rng.uniform(0.85, 1.2)
        jitter = rng.uniform(-0.04, 0.04, 2)
        centre_cam = np.array([(gx * spread + jitter[0]) * z, (gy * spread * 0.75 + jitter[1]) * z, z])
        t = centre_cam - r @ np.array([cx, cy, 0.0])
        poses.append((ang.astype(np.float64), t))
    return poses


@dataclass(frozen=True)
class RoadCamera:
    """Pinhole camera above a flat road: the geometry the renderer and the tests share.

    World: X across the road (right), Y along it (away from the camera), Z up; the camera is
    at (x_m, 0, height_m), looks along +Y, pitched down by tilt_deg (and panned by pan_deg).
    """

    height_m: float
    tilt_deg: float
    focal_px: float
    size: tuple[int, int]
    x_m: float = 0.0
    pan_deg: float = 0.0

    @property
    def k(self) -> npt.NDArray[np.float64]:
        w, h = self.size
        return np.array([[self.focal_px, 0, w / 2], [0, self.focal_px, h / 2], [0, 0, 1.0]])

    @property
    def r(self) -> npt.NDArray[np.float64]:
        t, p = np.deg2rad(self.tilt_deg), np.deg2rad(self.pan_deg)
        base = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], np.float64)  # world -> camera, level
        pan = np.array([[np.cos(p), -np.sin(p), 0], [np.sin(p), np.cos(p), 0], [0, 0, 1]])
        tilt = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
        return tilt @ base @ pan

    @property
    def t(self) -> npt.NDArray[np.float64]:
        return -self.r @ np.array([self.x_m, 0.0, self.height_m])

    def project(self, world: Any) -> npt.NDArray[np.float64]:
        """(N, 3) world metres -> (N, 2) pixels."""
        p = np.atleast_2d(np.asarray(world, np.float64))
        c = p @ self.r.T + self.t
        x = c @ self.k.T
        return x[:, :2] / x[:, 2:3]

    def homography_image_to_road(self) -> npt.NDArray[np.float64]:
        g = self.k @ np.c_[self.r[:, 0], self.r[:, 1], self.t]
        h = np.linalg.inv(g)
        return h / h[2, 2]


def render_road(cam: RoadCamera, lane_width_m: float = 3.75, lanes: int = 3, dash_m: float = 6.0,
                gap_m: float = 9.0, line_w_m: float = 0.15, supersample: int = 2) -> U8:
    """Grey road with solid edge lines and dashed lane dividers (China: 6 m dashes, 9 m gaps)."""
    w, h = cam.size
    s = supersample
    us = (np.arange(w * s) + 0.5) / s - 0.5
    vs = (np.arange(h * s) + 0.5) / s - 0.5
    uu, vv = np.meshgrid(us, vs)
    hm = cam.homography_image_to_road()
    q = np.stack([uu, vv, np.ones_like(uu)], -1) @ hm.T
    with np.errstate(divide="ignore", invalid="ignore"):
        x, y = q[..., 0] / q[..., 2], q[..., 1] / q[..., 2]
    # The road side of the horizon is where a point known to be on the road maps (H is only
    # defined up to sign).
    ref = cam.project([[cam.x_m, 20.0, 0.0]])[0]
    side = np.sign(hm[2] @ np.array([ref[0], ref[1], 1.0]))
    ground = (q[..., 2] * side > 0) & (y > 0)
    half = lanes * lane_width_m / 2
    img = np.full(uu.shape, 200.0)  # sky / far
    img[ground] = 90.0
    edge = ground & ((np.abs(x + half) < line_w_m / 2) | (np.abs(x - half) < line_w_m / 2))
    dash = np.zeros_like(ground)
    for i in range(1, lanes):
        xc = -half + i * lane_width_m
        dash |= ground & (np.abs(x - xc) < line_w_m / 2) & (np.mod(y - 5.0, dash_m + gap_m) < dash_m) & (y >= 5.0)
    img[edge | dash] = 235.0
    img[ground & (np.abs(x) > half + 1.0)] = 120.0  # verge
    return np.asarray(cv2.resize(img.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA).round(), np.uint8)
