"""Fitness for enforcement: can this camera, as mounted, resolve plates and occupants per zone?

Geometry comes from the road-plane homography: at each ground point of a zone the local
Jacobian gives px per metre, hence plate character height, driver face height and the motion
blur of a vehicle at the typical speed during one exposure. A short recording adds what the
geometry cannot know: the real frame size and rate, and per zone the exposure (clipped /
dark pixels) and sharpness actually delivered.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from calibration import homography as hg
from edge.camera import CameraCalibration

#: Standard sizes the verdict is computed from (metres).
FACE_HEIGHT_M = 0.20  # chin to hairline of an adult face, the box a face detector draws
DRIVER_SETBACK_M = 1.8  # front bumper to driver's head for a car, along the road


class FitnessError(ValueError):
    pass


@dataclass(frozen=True)
class Criteria:
    min_char_px: float = 16.0
    min_face_px: float = 40.0
    max_blur_px: float = 2.0
    min_coverage: float = 0.9  # fraction of a zone that must pass for a "resolvable" verdict


@dataclass
class Stat:
    min: float
    p10: float
    median: float
    max: float

    @classmethod
    def of(cls, v: npt.NDArray[np.float64]) -> Stat:
        return cls(*(round(float(x), 2) for x in (v.min(), np.percentile(v, 10), np.median(v), v.max())))


@dataclass
class ZoneFitness:
    zone: str
    samples: int
    plate_char_px: Stat
    plate_width_px: Stat
    face_px: Stat
    blur_px: Stat
    plate_coverage: float
    occupant_coverage: float
    plates: str
    occupants: str
    reasons: list[str] = field(default_factory=list)
    measured: dict[str, float] | None = None


@dataclass
class FitnessReport:
    camera_id: str
    image_size: tuple[int, int]
    assumptions: dict[str, float]
    criteria: Criteria
    zones: list[ZoneFitness]
    video: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def to_text(self) -> str:
        a = self.assumptions
        lines = [
            f"camera {self.camera_id} ({self.image_size[0]}x{self.image_size[1]}), "
            f"speed {a['speed_kmh']:g} km/h, shutter {a['shutter_ms']:g} ms",
            f"criteria: plate character >= {self.criteria.min_char_px:g} px, face >= "
            f"{self.criteria.min_face_px:g} px, blur <= {self.criteria.max_blur_px:g} px "
            f"over >= {self.criteria.min_coverage:.0%} of a zone",
        ]
        if self.video:
            v = self.video
            lines.append(f"recording: {v['path']} {v['width']}x{v['height']} @ {v['fps']:.2f} fps, "
                         f"{v['frames_sampled']} frames sampled")
        for z in self.zones:
            lines.append("")
            lines.append(f"zone {z.zone} ({z.samples} ground samples)")
            lines.append(f"  plate char height px  min {z.plate_char_px.min:7.1f}  median "
                         f"{z.plate_char_px.median:7.1f}  max {z.plate_char_px.max:7.1f}")
            lines.append(f"  driver face px        min {z.face_px.min:7.1f}  median "
                         f"{z.face_px.median:7.1f}  max {z.face_px.max:7.1f}")
            lines.append(f"  motion blur px        min {z.blur_px.min:7.2f}  median "
                         f"{z.blur_px.median:7.2f}  max {z.blur_px.max:7.2f}")
            if z.measured:
                m = z.measured
                lines.append(f"  measured: mean luma {m['mean_luma']:.0f}, clipped {m['clipped_frac']:.1%}, "
                             f"dark {m['dark_frac']:.1%}, sharpness (Laplacian var) {m['sharpness']:.0f}")
                if "plates_measured" in m:
                    pc = m.get("measured_plate_char_px_median")
                    fc = m.get("measured_face_px_median")
                    lines.append(
                        f"  detected by the models: {int(m['plates_measured'])} plates"
                        + (f" (char height median {pc:.1f} px, {m['measured_over_predicted']:.2f}x predicted)"
                           if pc is not None else "")
                        + f", {int(m['faces_measured'])} faces"
                        + (f" (median {fc:.1f} px)" if fc is not None else ""))
            lines.append(f"  PLATES: {z.plates.upper()} ({z.plate_coverage:.0%} of zone)   "
                         f"OCCUPANTS: {z.occupants.upper()} ({z.occupant_coverage:.0%} of zone)")
            lines += [f"  - {r}" for r in z.reasons]
        return "\n".join(lines)


def _verdict(coverage: float, c: Criteria) -> str:
    if coverage >= c.min_coverage:
        return "resolvable"
    return "partial" if coverage > 0 else "not resolvable"


def zone_polygons(cal: CameraCalibration) -> list[tuple[str, list[list[float]]]]:
    """Zones to assess: capture and each lane; the whole frame when none is defined."""
    out: list[tuple[str, list[list[float]]]] = []
    if cal.zones.capture:
        out.append(("capture", cal.zones.capture))
    out += [(f"lane {n}", p) for n, p in cal.zones.lanes.items()]
    if not out:
        w, h = cal.image_size
        out.append(("frame", [[0, 0], [w, 0], [w, h], [0, h]]))
    return out


def sample_polygon(poly: list[list[float]], exclusions: list[list[list[float]]], n: int = 400
                   ) -> npt.NDArray[np.float64]:
    """About n grid points inside the polygon and outside every exclusion."""
    p = np.asarray(poly, np.float64)
    x0, y0 = p.min(axis=0)
    x1, y1 = p.max(axis=0)
    area = max(1.0, cv2.contourArea(p.astype(np.float32)))
    step = max(1.0, math.sqrt(area / n))
    xs, ys = np.meshgrid(np.arange(x0 + step / 2, x1, step), np.arange(y0 + step / 2, y1, step))
    pts = np.c_[xs.ravel(), ys.ravel()]

    def inside(poly_: Any) -> npt.NDArray[np.bool_]:
        c = np.asarray(poly_, np.float32).reshape(-1, 1, 2)
        return np.array([cv2.pointPolygonTest(c, (float(a), float(b)), False) >= 0 for a, b in pts], bool)

    keep = inside(poly)
    for ex in exclusions:
        keep &= ~inside(ex)
    return pts[keep]


def _geometry(h: npt.NDArray[np.float64], pts: npt.NDArray[np.float64], speed_mps: float, exposure_s: float,
              direction: tuple[float, float] = (0.0, 1.0)) -> dict[str, npt.NDArray[np.float64]]:
    g = np.linalg.inv(h)
    char, width, face, blur = [], [], [], []
    for pt in pts:
        x, y = hg.road_position(h, pt)
        across, _ = hg.pixels_per_metre(h, pt)
        width.append(across * hg.PLATE_WIDTH_M)
        char.append(across * hg.PLATE_CHAR_HEIGHT_M)
        blur.append(hg.motion_blur_px(h, pt, speed_mps, exposure_s, direction))
        # The driver's head is DRIVER_SETBACK_M behind the plate, i.e. farther from the camera:
        # whichever way along Y makes the image scale smaller.
        cand = hg.apply_homography(g, [[x, y + DRIVER_SETBACK_M], [x, y - DRIVER_SETBACK_M]])
        scales = [hg.pixels_per_metre(h, c)[0] if np.all(np.isfinite(c)) else np.inf for c in cand]
        face.append(min(scales) * FACE_HEIGHT_M)
    return {k: np.asarray(v) for k, v in (("char", char), ("width", width), ("face", face), ("blur", blur))}


def measure_video(path: str | Path, cal: CameraCalibration, max_frames: int = 30, color_frames: int = 0
                  ) -> tuple[dict[str, Any], list[npt.NDArray[np.uint8]], list[npt.NDArray[np.uint8]]]:
    """Frame size/rate of a recording, up to max_frames evenly spaced grayscale frames and up
    to color_frames of them in colour (for the models; 4K BGR frames are 26 MB each)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FitnessError(f"{path}: cannot open video")
    try:
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if (w, h) != tuple(cal.image_size):
            raise FitnessError(
                f"{path}: frames are {w}x{h} but {cal.camera_id}'s calibration is for "
                f"{cal.image_size[0]}x{cal.image_size[1]}"
            )
        step = max(1, n // max_frames) if n > 0 else 1
        frames: list[npt.NDArray[np.uint8]] = []
        color: list[npt.NDArray[np.uint8]] = []
        expected = min(max_frames, n) if n > 0 else max_frames
        every = max(1, expected // color_frames) if color_frames else 0
        i = 0
        while len(frames) < max_frames:
            ok = cap.grab()
            if not ok:
                break
            if i % step == 0:
                ok, f = cap.retrieve()
                if ok:
                    if every and len(frames) % every == 0 and len(color) < color_frames:
                        color.append(np.asarray(f, np.uint8))
                    frames.append(np.asarray(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), np.uint8))
            i += 1
    finally:
        cap.release()
    if not frames:
        raise FitnessError(f"{path}: no frames could be decoded")
    return {"path": str(path), "width": w, "height": h, "fps": fps, "frames": n,
            "frames_sampled": len(frames)}, frames, color


def _measure_zone(frames: list[npt.NDArray[np.uint8]], poly: list[list[float]]) -> dict[str, float]:
    mask = np.zeros(frames[0].shape, np.uint8)
    cv2.fillPoly(mask, [np.round(np.asarray(poly)).astype(np.int32)], 255)
    sel = mask > 0
    luma, clipped, dark, sharp = [], [], [], []
    for f in frames:
        v = f[sel]
        luma.append(float(v.mean()))
        clipped.append(float((v >= 250).mean()))
        dark.append(float((v <= 5).mean()))
        lap = cv2.Laplacian(f, cv2.CV_32F, ksize=3)
        sharp.append(float(lap[sel].var()))
    return {"mean_luma": round(float(np.median(luma)), 1), "clipped_frac": round(float(np.median(clipped)), 4),
            "dark_frac": round(float(np.median(dark)), 4), "sharpness": round(float(np.median(sharp)), 1)}


def assess(
    cal: CameraCalibration,
    *,
    speed_kmh: float = 60.0,
    shutter_ms: float = 1.0,
    criteria: Criteria | None = None,
    video: str | Path | None = None,
    models_dir: str | Path | None = None,
    model_frames: int = 8,
) -> FitnessReport:
    """Per-zone resolution and blur verdicts for one calibrated camera.

    With `models_dir` (holding vehicles.onnx, optionally plates.onnx / occupants.onnx) and a
    video, the plate and face heights the models actually detect are added per zone.
    """
    c = criteria or Criteria()
    if cal.road_plane is None:
        raise FitnessError(f"camera {cal.camera_id} has no road_plane; run `roadeye calibrate road` first")
    if speed_kmh <= 0 or shutter_ms <= 0:
        raise FitnessError("speed and shutter time must be > 0")
    h = np.asarray(cal.road_plane.homography, np.float64)
    # Which side of the horizon the road is on: that of the calibration points.
    ref = np.c_[np.asarray(cal.road_plane.image_points), np.ones(len(cal.road_plane.image_points))] @ h[2]
    side = np.sign(np.median(ref))
    if models_dir is not None and video is None:
        raise FitnessError("measuring with the models needs a recording (--video)")
    frames: list[npt.NDArray[np.uint8]] = []
    color: list[npt.NDArray[np.uint8]] = []
    vinfo = None
    if video is not None:
        vinfo, frames, color = measure_video(video, cal, color_frames=model_frames if models_dir else 0)
    model_samples = {}
    if models_dir is not None:
        from calibration.measure import ModelMeasurer

        try:
            measurer = ModelMeasurer(models_dir)
        except (FileNotFoundError, ValueError) as exc:
            raise FitnessError(f"models: {exc}") from None
        model_samples = measurer.measure(color, zone_polygons(cal), h)
        assert vinfo is not None
        vinfo["models"] = measurer.models
        vinfo["model_frames"] = len(color)
    zones: list[ZoneFitness] = []
    for name, poly in zone_polygons(cal):
        pts = sample_polygon(poly, cal.zones.exclusion)
        reasons: list[str] = []
        if len(pts) == 0:
            raise FitnessError(f"zone {name}: no pixels left outside the exclusion masks")
        w = np.c_[pts, np.ones(len(pts))] @ h[2]
        valid = np.sign(w) == side
        if not valid.all():
            reasons.append(f"{(~valid).mean():.0%} of the zone is above the road horizon (sky / far away): "
                           "counted as not resolvable")
        direction = (0.0, 1.0)  # traffic along the road; a lane polygon gives its own direction
        if name.startswith("lane ") and valid.all():
            try:
                direction = hg.lane_direction(h, poly)
            except hg.HomographyError:
                pass
        geo = _geometry(h, pts[valid], speed_kmh / 3.6, shutter_ms / 1000.0, direction) if valid.any() else None
        if geo is None:
            raise FitnessError(f"zone {name}: lies entirely above the road horizon of the homography")
        plate_ok = (geo["char"] >= c.min_char_px) & (geo["blur"] <= c.max_blur_px)
        occ_ok = (geo["face"] >= c.min_face_px) & (geo["blur"] <= c.max_blur_px)
        plate_cov = float(plate_ok.sum()) / len(pts)
        occ_cov = float(occ_ok.sum()) / len(pts)
        if np.percentile(geo["char"], 10) < c.min_char_px:
            reasons.append(f"far part: plate characters {np.percentile(geo['char'], 10):.1f} px < "
                           f"{c.min_char_px:g} px (zoom in, or move the capture zone nearer)")
        if np.percentile(geo["face"], 10) < c.min_face_px:
            reasons.append(f"far part: faces {np.percentile(geo['face'], 10):.1f} px < {c.min_face_px:g} px")
        if geo["blur"].max() > c.max_blur_px:
            need = shutter_ms * c.max_blur_px / float(geo["blur"].max())
            reasons.append(f"near part: motion blur up to {geo['blur'].max():.1f} px > "
                           f"{c.max_blur_px:g} px at {speed_kmh:g} km/h (shutter <= {need:.2f} ms needed)")
        measured = None
        if frames:
            measured = _measure_zone(frames, poly)
            if name in model_samples:
                ms = model_samples[name].summary()
                measured.update(ms)
                r = ms.get("measured_over_predicted")
                if r is not None and ms["plates_measured"] >= 5 and not 0.75 <= r <= 1.33:
                    reasons.append(f"detected plates are {r:.2f}x the size the road plane predicts: "
                                   "check the road points (metres, order) or the lane layout")
            if measured["clipped_frac"] > 0.05:
                reasons.append(f"{measured['clipped_frac']:.0%} of the zone is clipped white (glare / exposure)")
            if measured["mean_luma"] < 40:
                reasons.append(f"zone is dark (mean luma {measured['mean_luma']:.0f}); check exposure / IR light")
        zones.append(ZoneFitness(
            zone=name, samples=len(pts), plate_char_px=Stat.of(geo["char"]), plate_width_px=Stat.of(geo["width"]),
            face_px=Stat.of(geo["face"]), blur_px=Stat.of(geo["blur"]),
            plate_coverage=round(plate_cov, 3), occupant_coverage=round(occ_cov, 3),
            plates=_verdict(plate_cov, c), occupants=_verdict(occ_cov, c), reasons=reasons, measured=measured,
        ))
    return FitnessReport(
        camera_id=cal.camera_id, image_size=(cal.image_size[0], cal.image_size[1]), criteria=c, zones=zones,
        video=vinfo,
        assumptions={"speed_kmh": speed_kmh, "shutter_ms": shutter_ms, "plate_char_height_m": hg.PLATE_CHAR_HEIGHT_M,
                     "face_height_m": FACE_HEIGHT_M, "driver_setback_m": DRIVER_SETBACK_M},
    )
