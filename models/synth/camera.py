"""Pinhole model of a pole/gantry enforcement camera looking down at approaching traffic.

World frame (metres): road plane z = 0; x across the road (positive to the image right),
y along the road away from the camera (the pole foot at y = 0), z up. The camera sits at
(x_m, 0, height_m), pitched down by tilt_deg and panned by yaw_deg. Cropping (datasets
rendered in a window of the full frame) is a shift of the principal point, so crops keep
exactly the geometry of the full 4096x2160 view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Camera:
    width: int
    height: int
    focal_px: float
    height_m: float = 6.0
    tilt_deg: float = 13.5
    yaw_deg: float = 0.0
    x_m: float = 0.0
    cx: float | None = None  # principal point; None = image centre
    cy: float | None = None

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera image size must be positive, got {self.width}x{self.height}")
        if self.focal_px <= 0:
            raise ValueError(f"focal_px must be positive, got {self.focal_px}")
        if not 0 < self.tilt_deg < 89:
            raise ValueError(f"tilt_deg must be in (0, 89), got {self.tilt_deg}")
        if self.height_m <= 0:
            raise ValueError(f"height_m must be positive, got {self.height_m}")

    @property
    def principal(self) -> tuple[float, float]:
        return (self.width / 2 if self.cx is None else self.cx, self.height / 2 if self.cy is None else self.cy)

    @property
    def K(self) -> np.ndarray:
        cx, cy = self.principal
        return np.array([[self.focal_px, 0, cx], [0, self.focal_px, cy], [0, 0, 1]], np.float64)

    @property
    def R(self) -> np.ndarray:
        """World -> camera rotation (camera axes: x right, y down, z forward)."""
        t, y = math.radians(self.tilt_deg), math.radians(self.yaw_deg)
        fwd = np.array([math.sin(y) * math.cos(t), math.cos(y) * math.cos(t), -math.sin(t)])
        right = np.array([math.cos(y), -math.sin(y), 0.0])
        down = np.cross(fwd, right)
        return np.stack([right, down, fwd])

    @property
    def center(self) -> np.ndarray:
        return np.array([self.x_m, 0.0, self.height_m])

    def to_camera(self, pts: np.ndarray) -> np.ndarray:
        return (np.asarray(pts, np.float64).reshape(-1, 3) - self.center) @ self.R.T

    def project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N,3) -> image points (N,2) and depth along the optical axis (N,)."""
        pc = self.to_camera(pts)
        z = pc[:, 2]
        zs = np.where(z > 1e-3, z, 1e-3)
        cx, cy = self.principal
        return np.stack([self.focal_px * pc[:, 0] / zs + cx, self.focal_px * pc[:, 1] / zs + cy], 1), z

    def homography_road_to_image(self) -> np.ndarray:
        """3x3 mapping road (x, y) metres on z=0 to image pixels."""
        P = self.K @ np.c_[self.R, -self.R @ self.center]
        H = P[:, [0, 1, 3]]
        return H / H[2, 2]

    def homography_image_to_road(self) -> np.ndarray:
        H = np.linalg.inv(self.homography_road_to_image())
        return H / H[2, 2]

    def image_to_road(self, uv: np.ndarray) -> np.ndarray:
        p = np.asarray(uv, np.float64).reshape(-1, 2)
        q = np.c_[p, np.ones(len(p))] @ self.homography_image_to_road().T
        return q[:, :2] / q[:, 2:3]

    def ground_distance_at_row(self, v: float, horizon_m: float = 1000.0) -> float:
        """Road distance y (m) seen at image row v on the optical-centre column;
        `horizon_m` when that row looks at or above the horizon."""
        d = self.R.T @ np.array([0.0, (v - self.principal[1]) / self.focal_px, 1.0])
        if d[2] > -1e-6:
            return horizon_m
        t = -self.height_m / d[2]
        return float(min(t * d[1], horizon_m))

    def crop(self, x0: int, y0: int, w: int, h: int) -> Camera:
        cx, cy = self.principal
        return replace(self, width=w, height=h, cx=cx - x0, cy=cy - y0)

    def scaled(self, s: float) -> Camera:
        cx, cy = self.principal
        return replace(self, width=round(self.width * s), height=round(self.height * s),
                       focal_px=self.focal_px * s, cx=cx * s, cy=cy * s)


def enforcement_camera(width: int = 4096, height: int = 2160, *, height_m: float = 6.0,
                       aim_distance_m: float = 25.0, x_m: float = 0.0, yaw_deg: float = 0.0) -> Camera:
    """A camera framed like a 9 MP enforcement unit: the optical axis meets the road
    `aim_distance_m` ahead, and the focal length gives ~14.6 m of road width there at 4096 px
    (1-3 lanes, a driver's face ~45 px wide at 25 m). Focal scales with image width."""
    focal = 7000.0 * width / 4096
    # Keep the horizon out of the frame (enforcement cameras look at the road, not the sky).
    half_v = math.degrees(math.atan2(height / 2, focal))
    tilt = max(math.degrees(math.atan2(height_m, aim_distance_m)), half_v + 1.5)
    return Camera(width, height, focal, height_m=height_m, tilt_deg=tilt, yaw_deg=yaw_deg, x_m=x_m)
