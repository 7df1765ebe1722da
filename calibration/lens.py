"""Lens calibration (intrinsics + distortion) from checkerboard or ChArUco views, and the
undistortion helpers the edge uses on points and crops.

Board sizes are given in *squares* for both patterns (what you count on the print): a
checkerboard of 10 x 7 squares has 9 x 6 inner corners, which is what OpenCV searches for.
ChArUco boards also tolerate partial views (corners are identified by their markers), so
they are the better choice when the board cannot fill the frame corners.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
PatternKind = Literal["checkerboard", "charuco"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".ts", ".m4v", ".webm"}


class LensCalibrationError(ValueError):
    """Unusable input (no board found, too few views, inconsistent sizes); names the culprit."""


@dataclass(frozen=True)
class BoardSpec:
    """A calibration target. cols/rows count squares; lengths are millimetres."""

    kind: PatternKind
    cols: int
    rows: int
    square_mm: float
    marker_mm: float | None = None  # ChArUco only; default 0.7 * square
    dictionary: str = "DICT_5X5_100"  # ChArUco only
    legacy: bool = False  # ChArUco boards printed with OpenCV < 4.6 (even row count differs)

    def __post_init__(self) -> None:
        if self.cols < 3 or self.rows < 3:
            raise LensCalibrationError(f"board must be at least 3x3 squares, got {self.cols}x{self.rows}")
        if self.cols == self.rows and self.kind == "checkerboard":
            # A square grid has a 90 degree ambiguity: corner order can flip between views.
            raise LensCalibrationError(
                f"checkerboard {self.cols}x{self.rows} is square; use one with unequal sides "
                "(e.g. 10x7) so the corner order is unambiguous"
            )
        if self.square_mm <= 0:
            raise LensCalibrationError(f"square size must be > 0 mm, got {self.square_mm}")
        if self.kind == "charuco":
            m = self.marker_length_mm
            if not 0 < m < self.square_mm:
                raise LensCalibrationError(f"marker size {m} mm must be between 0 and the square size")
            if not hasattr(cv2.aruco, self.dictionary) or not self.dictionary.startswith("DICT_"):
                raise LensCalibrationError(f"unknown ArUco dictionary {self.dictionary!r}")

    @property
    def inner(self) -> tuple[int, int]:
        return self.cols - 1, self.rows - 1

    @property
    def marker_length_mm(self) -> float:
        return self.marker_mm if self.marker_mm is not None else 0.7 * self.square_mm

    def checkerboard_object_points(self) -> npt.NDArray[np.float32]:
        """Inner-corner coordinates (mm, z=0) in OpenCV's row-major detection order."""
        c, r = self.inner
        g = np.zeros((c * r, 3), np.float32)
        g[:, :2] = np.mgrid[0:c, 0:r].T.reshape(-1, 2) * self.square_mm
        return g

    def charuco_board(self) -> Any:
        d = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        board = cv2.aruco.CharucoBoard((self.cols, self.rows), self.square_mm, self.marker_length_mm, d)
        board.setLegacyPattern(self.legacy)
        return board


@dataclass(frozen=True)
class Detection:
    name: str
    object_points: npt.NDArray[np.float32]  # (N, 3) board mm
    image_points: npt.NDArray[np.float32]  # (N, 2) pixels


def _gray(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image, np.uint8)


def _min_corner_spacing(corners: Any) -> float:
    c = np.asarray(corners, np.float64).reshape(-1, 2)
    return float(np.min(np.linalg.norm(np.diff(c, axis=0), axis=1)))


_DETECT_MAX_SIDE = 1600


def _find_checkerboard(gray: npt.NDArray[np.uint8], inner: tuple[int, int], robust: bool = False) -> Any:
    """Inner corners at full-resolution sub-pixel accuracy, or None.

    The grid is searched on a copy downscaled to <= 1600 px (a 9 MP frame takes seconds
    otherwise), then refined on the full image. The classic detector runs first
    (milliseconds). With `robust`, the sector-based detector (copes with blur and uneven light,
    but takes seconds per view that lacks a full board) is tried when the classic one fails.
    """
    h, w = gray.shape
    s = min(1.0, _DETECT_MAX_SIDE / max(h, w))
    small = cv2.resize(gray, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA) if s < 1 else gray
    # NORMALIZE_IMAGE is left out: it makes a failed search (partial board, wrong size) ~3x
    # slower and the adaptive threshold already copes with uneven light.
    ok, corners = cv2.findChessboardCorners(small, inner, flags=cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_FAST_CHECK)
    if not ok:
        if not robust or not cv2.checkChessboard(small, inner):
            return None
        ok, corners = cv2.findChessboardCornersSB(small, inner, flags=cv2.CALIB_CB_NORMALIZE_IMAGE)
        if not ok:
            return None
    corners = (corners.astype(np.float32) + 0.5) / s - 0.5 if s < 1 else corners.astype(np.float32)
    win = max(3, min(15, int(_min_corner_spacing(corners) / 4)))
    return cv2.cornerSubPix(
        gray, corners, (win, win), (-1, -1), (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 60, 1e-4)
    )


def detect_board(
    image: npt.NDArray[np.uint8], spec: BoardSpec, name: str = "image", robust: bool = False
) -> Detection | None:
    """Find the board's corners to sub-pixel accuracy; None when it is not (fully) visible."""
    gray = _gray(image)
    if spec.kind == "checkerboard":
        corners = _find_checkerboard(gray, spec.inner, robust)
        if corners is None:
            return None
        return Detection(name, spec.checkerboard_object_points(), corners.reshape(-1, 2).astype(np.float32))
    board = spec.charuco_board()
    detector = cv2.aruco.CharucoDetector(board)
    ch_corners, ch_ids, _, _ = detector.detectBoard(gray)
    if ch_ids is None or len(ch_ids) < 6:
        return None
    if board.checkCharucoCornersCollinear(ch_ids):
        return None
    obj, img = board.matchImagePoints(ch_corners, ch_ids)
    return Detection(name, obj.reshape(-1, 3).astype(np.float32), img.reshape(-1, 2).astype(np.float32))


@dataclass
class LensResult:
    camera_matrix: Array
    dist_coeffs: Array
    rms_px: float
    image_size: tuple[int, int]  # (width, height)
    per_view_rms_px: dict[str, float]
    rejected: dict[str, str] = field(default_factory=dict)  # name -> why
    std_fx_px: float | None = None
    coverage: float = 0.0  # share of the image inside the hull of all corners used
    hull: Array = field(default_factory=lambda: np.zeros((0, 2)), repr=False)

    def covers(self, points: Any) -> npt.NDArray[np.bool_]:
        """Which points lie where the board was seen (distortion elsewhere is extrapolated)."""
        c = self.hull.astype(np.float32).reshape(-1, 1, 2)
        return np.array([cv2.pointPolygonTest(c, (float(x), float(y)), False) >= 0
                         for x, y in np.asarray(points, np.float64).reshape(-1, 2)], bool)

    def summary(self) -> str:
        k = self.camera_matrix
        d = ", ".join(f"{v:+.5f}" for v in self.dist_coeffs)
        lines = [
            f"views used: {len(self.per_view_rms_px)}, rejected: {len(self.rejected)}",
            f"image size: {self.image_size[0]}x{self.image_size[1]}",
            f"fx={k[0, 0]:.2f} fy={k[1, 1]:.2f} cx={k[0, 2]:.2f} cy={k[1, 2]:.2f} px"
            + (f" (fx std {self.std_fx_px:.2f} px)" if self.std_fx_px is not None else ""),
            f"dist (k1 k2 p1 p2 k3): {d}",
            f"reprojection RMS: {self.rms_px:.3f} px",
            f"board coverage: {self.coverage:.0%} of the image"
            + ("  (LOW: show the board near the corners too, distortion there is extrapolated)"
               if self.coverage < 0.5 else ""),
        ]
        worst = sorted(self.per_view_rms_px.items(), key=lambda kv: -kv[1])[:3]
        lines.append("worst views: " + ", ".join(f"{n} {e:.3f} px" for n, e in worst))
        lines += [f"rejected {n}: {why}" for n, why in self.rejected.items()]
        return "\n".join(lines)


def iter_frames(paths: Iterable[str | Path], video_step: int = 15) -> Iterable[tuple[str, npt.NDArray[np.uint8]]]:
    """Yield (name, BGR image) for image files, directories of images and videos (every Nth frame)."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise LensCalibrationError(f"{p}: directory has no images")
            yield from iter_frames(files, video_step)
            continue
        if not p.exists():
            raise LensCalibrationError(f"{p}: no such file")
        if p.suffix.lower() in VIDEO_SUFFIXES:
            cap = cv2.VideoCapture(str(p))
            if not cap.isOpened():
                raise LensCalibrationError(f"{p}: cannot open video")
            i = 0
            try:
                while True:
                    ok, frame = cap.read()
                    if not ok:
                        break
                    if i % video_step == 0:
                        yield f"{p.name}#{i}", np.asarray(frame, np.uint8)
                    i += 1
            finally:
                cap.release()
            continue
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise LensCalibrationError(f"{p}: not a readable image")
        yield p.name, np.asarray(img, np.uint8)


def calibrate_lens(
    frames: Iterable[tuple[str, npt.NDArray[np.uint8]]],
    spec: BoardSpec,
    *,
    fit_k3: bool = True,
    min_views: int = 5,
    robust: bool = False,
) -> LensResult:
    """Detect the board in every frame and run OpenCV's calibration on the views that have it.

    Views whose reprojection RMS is more than 3x the median (bad detections, motion blur) are
    dropped once and the calibration is re-run, so one poor frame cannot skew K.
    """
    dets: list[Detection] = []
    rejected: dict[str, str] = {}
    size: tuple[int, int] | None = None
    for name, img in frames:
        h, w = img.shape[:2]
        if size is None:
            size = (w, h)
        elif size != (w, h):
            raise LensCalibrationError(f"{name}: size {w}x{h} differs from the first view's {size[0]}x{size[1]}")
        det = detect_board(img, spec, name, robust)
        if det is None:
            what = f"{spec.inner[0]}x{spec.inner[1]} inner-corner grid" if spec.kind == "checkerboard" else (
                f"ChArUco board ({spec.dictionary}, >= 6 corners)")
            rejected[name] = f"no {what} found"
        else:
            dets.append(det)
    if size is None:
        raise LensCalibrationError("no images given")
    if len(dets) < min_views:
        hint = " (check --cols/--rows: they count squares, not inner corners)" if spec.kind == "checkerboard" else ""
        raise LensCalibrationError(
            f"the board was found in {len(dets)} of {len(dets) + len(rejected)} views; need >= {min_views}{hint}"
        )
    flags = 0 if fit_k3 else cv2.CALIB_FIX_K3
    result = _run(dets, size, flags)
    med = float(np.median(list(result.per_view_rms_px.values())))
    bad = [n for n, e in result.per_view_rms_px.items() if e > 3 * med and e > 0.5]
    if bad and len(dets) - len(bad) >= min_views:
        for n in bad:
            rejected[n] = f"outlier view (RMS {result.per_view_rms_px[n]:.2f} px vs median {med:.2f})"
        result = _run([d for d in dets if d.name not in bad], size, flags)
    result.rejected = rejected
    return result


def _run(dets: Sequence[Detection], size: tuple[int, int], flags: int) -> LensResult:
    obj = [d.object_points for d in dets]
    img = [d.image_points.reshape(-1, 1, 2) for d in dets]
    k0, d0 = np.eye(3), np.zeros(5)
    rms, k, dist, _rvecs, _tvecs, std_in, _, per_view = cv2.calibrateCameraExtended(
        obj, img, size, k0, d0, flags=flags,
        criteria=(cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 100, 1e-10),
    )
    allpts = np.concatenate([d.image_points for d in dets]).astype(np.float32)
    hull = cv2.convexHull(allpts).reshape(-1, 2)
    return LensResult(
        coverage=float(cv2.contourArea(hull) / (size[0] * size[1])),
        hull=hull.astype(np.float64),
        camera_matrix=np.asarray(k, np.float64),
        dist_coeffs=np.asarray(dist, np.float64).ravel(),
        rms_px=float(rms),
        image_size=size,
        per_view_rms_px={d.name: float(e) for d, e in zip(dets, np.ravel(per_view), strict=True)},
        std_fx_px=float(np.ravel(std_in)[0]) if std_in is not None else None,
    )


# ---------------------------------------------------------------------------------------------
# Helpers for the edge: undistort the points it measures, or the crops it classifies.

_ITER = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-10)


def undistort_points(points: Any, camera_matrix: Any, dist_coeffs: Any) -> Array:
    """Raw image pixels (N, 2) -> ideal pinhole pixels with the same K (what homographies want)."""
    p = np.asarray(points, np.float64).reshape(-1, 1, 2)
    k = np.asarray(camera_matrix, np.float64)
    out = cv2.undistortPoints(p, k, np.asarray(dist_coeffs, np.float64), R=None, P=k, criteria=_ITER)
    return np.asarray(out, np.float64).reshape(-1, 2)


def distort_points(points: Any, camera_matrix: Any, dist_coeffs: Any) -> Array:
    """Ideal pinhole pixels (N, 2) -> raw image pixels: the exact inverse of undistort_points."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    k = np.asarray(camera_matrix, np.float64)
    norm = np.c_[(p - k[:2, 2]) @ np.linalg.inv(k[:2, :2]).T, np.ones(len(p))]
    out, _ = cv2.projectPoints(norm.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), k, np.asarray(dist_coeffs, np.float64))
    return np.asarray(out, np.float64).reshape(-1, 2)


def undistort_crop(
    image: npt.NDArray[np.uint8], camera_matrix: Any, dist_coeffs: Any, box: Sequence[float]
) -> npt.NDArray[np.uint8]:
    """The undistorted view of `box` (x1, y1, x2, y2 in ideal pixels), computed for that box only.

    Remapping a whole 9 MP frame per detection would cost ~100 ms; mapping just the crop's
    pixels costs in proportion to the crop, so the edge can straighten plate/windshield crops.
    """
    x1, y1, x2, y2 = (round(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"empty box {tuple(box)}")
    xs, ys = np.meshgrid(np.arange(x1, x2, dtype=np.float64), np.arange(y1, y2, dtype=np.float64))
    src = distort_points(np.c_[xs.ravel(), ys.ravel()], camera_matrix, dist_coeffs)
    mx = src[:, 0].reshape(xs.shape).astype(np.float32)
    my = src[:, 1].reshape(xs.shape).astype(np.float32)
    return np.asarray(cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), np.uint8)


class Undistorter:
    """Whole-frame undistortion with maps computed once per camera (same K in and out)."""

    def __init__(self, camera_matrix: Any, dist_coeffs: Any, image_size: tuple[int, int]):
        self.k = np.asarray(camera_matrix, np.float64)
        self.dist = np.asarray(dist_coeffs, np.float64)
        self.size = image_size
        self._maps = cv2.initUndistortRectifyMap(self.k, self.dist, None, self.k, image_size, cv2.CV_16SC2)

    def __call__(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        h, w = image.shape[:2]
        if (w, h) != self.size:
            raise ValueError(f"frame is {w}x{h}, calibration is for {self.size[0]}x{self.size[1]}")
        return np.asarray(cv2.remap(image, self._maps[0], self._maps[1], cv2.INTER_LINEAR), np.uint8)
