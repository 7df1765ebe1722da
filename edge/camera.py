"""One camera's calibration file (`<name>.camera.yaml`): written by `roadeye calibrate`,
by the renderer beside each sample clip, and included by the edge box config.

Zones are lists of [x, y] points in full-resolution image pixels. Every model forbids
unknown keys so a typo in a hand-edited file fails loudly, naming the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Point = Annotated[list[float], Field(min_length=2, max_length=2)]
Polygon = Annotated[list[Point], Field(min_length=3, description="[[x, y], ...] image pixels")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Lens(_Strict):
    camera_matrix: list[list[float]] = Field(description="3x3 intrinsic matrix K.")
    dist_coeffs: list[float] = Field(description="OpenCV distortion coefficients (k1 k2 p1 p2 [k3...]).")
    rms_px: float | None = Field(default=None, description="Reprojection RMS of the calibration.")

    @field_validator("camera_matrix")
    @classmethod
    def _3x3(cls, v: list[list[float]]) -> list[list[float]]:
        if len(v) != 3 or any(len(r) != 3 for r in v):
            raise ValueError("camera_matrix must be 3x3")
        return v

    @field_validator("dist_coeffs")
    @classmethod
    def _ncoef(cls, v: list[float]) -> list[float]:
        if len(v) not in (4, 5, 8, 12, 14):
            raise ValueError(f"dist_coeffs must have 4, 5, 8, 12 or 14 values, got {len(v)}")
        return v


class Zones(_Strict):
    capture: Polygon | None = Field(
        default=None, description="Violations are decided only for vehicles inside it (None: whole frame)."
    )
    lanes: dict[str, Polygon] = Field(default_factory=dict, description="Named lane polygons.")
    exclusion: list[Polygon] = Field(default_factory=list, description="Regions ignored entirely.")


class RoadPlane(_Strict):
    image_points: list[Point] = Field(min_length=4)
    road_points_m: list[Point] = Field(min_length=4, description="Road coordinates in metres.")
    homography: list[list[float]] = Field(description="3x3, image pixels -> road metres.")
    rms_m: float | None = None
    undistorted: bool = Field(
        False, description="image_points/homography are in undistorted pixels (apply the lens first)."
    )

    @model_validator(mode="after")
    def _pairs(self) -> RoadPlane:
        if len(self.image_points) != len(self.road_points_m):
            raise ValueError("image_points and road_points_m must pair up one to one")
        if len(self.homography) != 3 or any(len(r) != 3 for r in self.homography):
            raise ValueError("homography must be 3x3")
        return self

    def to_road(self, pts: Any) -> np.ndarray:
        """Image pixels (N,2) -> road metres (N,2)."""
        p = np.asarray(pts, np.float64).reshape(-1, 2)
        h = np.asarray(self.homography, np.float64)
        q = np.c_[p, np.ones(len(p))] @ h.T
        return q[:, :2] / q[:, 2:3]


class ViolationThreshold(_Strict):
    min_confidence: float = Field(0.5, ge=0, le=1, description="Per-frame detector confidence to count.")
    k: int = Field(3, ge=1, description="Frames that must agree ...")
    n: int = Field(8, ge=1, description="... within the last n frames the driver was observed.")
    min_driver_px: int = Field(48, ge=0, description="Smallest driver-crop height (px) that counts.")

    @model_validator(mode="after")
    def _k_le_n(self) -> ViolationThreshold:
        if self.k > self.n:
            raise ValueError(f"k ({self.k}) must not exceed n ({self.n})")
        return self


class CameraCalibration(_Strict):
    camera_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    image_size: tuple[int, int] = Field(description="[width, height] of full-resolution frames.")
    lens: Lens | None = None
    zones: Zones = Field(default_factory=Zones)
    road_plane: RoadPlane | None = None
    thresholds: dict[str, ViolationThreshold] = Field(
        default_factory=dict, description="Per violation type (no_seatbelt, phone_use)."
    )


class CalibrationFileError(ValueError):
    pass


def load_camera(path: str | Path) -> CameraCalibration:
    """Load and validate a camera YAML; errors name the file and the bad key path."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CalibrationFileError(f"{path}: {exc}") from exc
    try:
        return CameraCalibration.model_validate(raw)
    except ValidationError as exc:
        msgs = "; ".join(".".join(map(str, e["loc"])) + ": " + e["msg"] for e in exc.errors())
        raise CalibrationFileError(f"{path}: {msgs}") from exc


def save_camera(cal: CameraCalibration, path: str | Path) -> None:
    """Write atomically (temp file + rename) so a crash never leaves a half-written camera file."""
    path = Path(path)
    data = cal.model_dump(mode="json", exclude_none=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    os.replace(tmp, path)
