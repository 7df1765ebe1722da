"""Zone polygons (capture zone, named lanes, exclusion masks): parsing, validation, snapshots
and point queries the edge can use.

A polygon must have >= 3 distinct points, lie inside the image, enclose a non-zero area and
not cross itself; every error names the zone and the offending points, because operators
type these on a command line or click them on a 4K snapshot where mistakes are easy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.camera import RoadPlane, Zones

Poly = list[list[float]]

LANE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


class ZoneError(ValueError):
    """A polygon or zone definition that cannot be used; the message names it."""


def parse_points(text: str, what: str = "polygon") -> Poly:
    """'x,y x,y ...' (spaces or ';' between points) -> [[x, y], ...]."""
    pts: Poly = []
    for tok in re.split(r"[;\s]+", text.strip()):
        if not tok:
            continue
        parts = tok.split(",")
        if len(parts) != 2:
            raise ZoneError(f"{what}: point {tok!r} is not 'x,y'")
        try:
            x, y = float(parts[0]), float(parts[1])
        except ValueError:
            raise ZoneError(f"{what}: point {tok!r} has a non-numeric coordinate") from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise ZoneError(f"{what}: point {tok!r} is not finite")
        pts.append([x, y])
    return pts


def _segments_cross(p1: Any, p2: Any, q1: Any, q2: Any) -> bool:
    """Proper or touching intersection of segments p1p2 and q1q2 (orientation test)."""

    def orient(a: Any, b: Any, c: Any) -> float:
        return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    def on_seg(a: Any, b: Any, c: Any) -> bool:
        return min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])

    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True
    return (
        (d1 == 0 and on_seg(q1, q2, p1)) or (d2 == 0 and on_seg(q1, q2, p2))
        or (d3 == 0 and on_seg(p1, p2, q1)) or (d4 == 0 and on_seg(p1, p2, q2))
    )


def polygon_area(poly: Sequence[Sequence[float]]) -> float:
    p = np.asarray(poly, np.float64)
    x, y = p[:, 0], p[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def validate_polygon(poly: Sequence[Sequence[float]], image_size: tuple[int, int], name: str) -> Poly:
    """Return the polygon as floats or raise ZoneError saying exactly what is wrong with it."""
    pts = [[float(p[0]), float(p[1])] for p in poly]
    if len(pts) < 3:
        raise ZoneError(f"{name}: needs at least 3 points, got {len(pts)}")
    w, h = image_size
    outside = [i + 1 for i, (x, y) in enumerate(pts) if not (0 <= x <= w and 0 <= y <= h)]
    if outside:
        raise ZoneError(
            f"{name}: point(s) {outside} lie outside the {w}x{h} image "
            f"(e.g. {pts[outside[0] - 1][0]:g},{pts[outside[0] - 1][1]:g})"
        )
    n = len(pts)
    for i in range(n):
        if pts[i] == pts[(i + 1) % n]:
            raise ZoneError(f"{name}: points {i + 1} and {(i + 1) % n + 1} are the same")
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # adjacent edges share a vertex
            if _segments_cross(pts[i], pts[(i + 1) % n], pts[j], pts[(j + 1) % n]):
                raise ZoneError(
                    f"{name}: edge {i + 1}-{(i + 1) % n + 1} crosses edge {j + 1}-{(j + 1) % n + 1} "
                    "(self-intersecting; order the points around the outline)"
                )
    if polygon_area(pts) < 1.0:
        raise ZoneError(f"{name}: encloses no area (points are collinear)")
    return pts


def validate_zones(zones: Zones, image_size: tuple[int, int]) -> Zones:
    """Validate every polygon of a Zones model; returns a clean copy."""
    cap = validate_polygon(zones.capture, image_size, "capture") if zones.capture is not None else None
    lanes = {}
    for lname, poly in zones.lanes.items():
        if not LANE_NAME.match(lname):
            raise ZoneError(f"lane name {lname!r}: use letters, digits, '_', '.', '-' (max 32)")
        lanes[lname] = validate_polygon(poly, image_size, f"lane {lname}")
    excl = [validate_polygon(p, image_size, f"exclusion #{i + 1}") for i, p in enumerate(zones.exclusion)]
    return Zones(capture=cap, lanes=lanes, exclusion=excl)


def zones_from_json(data: Any, image_size: tuple[int, int]) -> Zones:
    """Body of the web page's save request -> validated Zones (ZoneError on any problem)."""
    if not isinstance(data, dict):
        raise ZoneError("expected a JSON object with capture, lanes, exclusion")
    unknown = set(data) - {"capture", "lanes", "exclusion"}
    if unknown:
        raise ZoneError(f"unknown key(s): {sorted(unknown)}")
    cap = data.get("capture")
    lanes = data.get("lanes") or {}
    excl = data.get("exclusion") or []
    if not isinstance(lanes, dict):
        raise ZoneError("lanes must be an object {name: polygon}")
    if not isinstance(excl, list):
        raise ZoneError("exclusion must be a list of polygons")

    def poly(v: Any, name: str) -> Poly:
        if not isinstance(v, list) or not all(
            isinstance(p, list | tuple) and len(p) == 2 and all(isinstance(c, int | float) for c in p) for p in v
        ):
            raise ZoneError(f"{name}: expected [[x, y], ...]")
        return [[float(p[0]), float(p[1])] for p in v]

    z = Zones(
        capture=poly(cap, "capture") if cap else None,
        lanes={str(k): poly(v, f"lane {k}") for k, v in lanes.items()},
        exclusion=[poly(p, f"exclusion #{i + 1}") for i, p in enumerate(excl)],
    )
    return validate_zones(z, image_size)


def load_snapshot(path: str | Path, at_s: float = 0.0) -> npt.NDArray[np.uint8]:
    """A BGR frame from an image, a video at `at_s` seconds (default the first frame), or a
    live stream URL (rtsp://...), so zones can be drawn on what the camera sees right now."""
    is_url = "://" in str(path)
    p = Path(path) if not is_url else path
    if not is_url:
        assert isinstance(p, Path)
        if not p.exists():
            raise ZoneError(f"snapshot {p}: no such file")
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is not None:
            return np.asarray(img, np.uint8)
    cap = cv2.VideoCapture(str(p))
    try:
        if not cap.isOpened():
            raise ZoneError(f"snapshot {p}: neither a readable image nor a video")
        if at_s > 0 and not is_url:
            cap.set(cv2.CAP_PROP_POS_MSEC, at_s * 1000.0)
        ok, frame = cap.read()
    finally:
        cap.release()
    if not ok or frame is None:
        raise ZoneError(f"snapshot {p}: could not read a frame at {at_s:g} s")
    return np.asarray(frame, np.uint8)


# ---------------------------------------------------------------------------------------------
# Queries for the edge


def point_in_polygon(pt: Sequence[float], poly: Sequence[Sequence[float]]) -> bool:
    """Inside or on the boundary."""
    contour = np.asarray(poly, np.float32).reshape(-1, 1, 2)
    return bool(cv2.pointPolygonTest(contour, (float(pt[0]), float(pt[1])), False) >= 0)


def in_capture(zones: Zones, pt: Sequence[float]) -> bool:
    """True when the point counts for violations: inside capture (or no capture) and not excluded."""
    if zones.capture is not None and not point_in_polygon(pt, zones.capture):
        return False
    return not any(point_in_polygon(pt, p) for p in zones.exclusion)


def lane_at(zones: Zones, pt: Sequence[float]) -> str | None:
    """Name of the first lane containing the point, or None."""
    for name, poly in zones.lanes.items():
        if point_in_polygon(pt, poly):
            return name
    return None


def grid_for(road_plane: RoadPlane, image_size: tuple[int, int]) -> list[tuple[str, Any]]:
    """Road grid around the calibration points: lane-width columns, 5 m rows."""
    from calibration.homography import road_grid

    r = np.asarray(road_plane.road_points_m, np.float64)
    return road_grid(road_plane.homography, image_size, (float(r[:, 0].min()) - 3.5, float(r[:, 0].max()) + 3.5),
                     (max(0.0, float(r[:, 1].min()) - 10.0), float(r[:, 1].max()) + 20.0),
                     front=r.mean(axis=0).tolist())


def draw_zones(image: npt.NDArray[np.uint8], zones: Zones, road_plane: RoadPlane | None = None
               ) -> npt.NDArray[np.uint8]:
    """Overlay for reports: capture green, lanes blue with names, exclusions red, and the road
    plane's metric grid in yellow (it must follow the lane markings)."""
    out = image.copy()
    th = max(2, image.shape[1] // 800)
    if road_plane is not None:
        h_img, w_img = image.shape[:2]
        last_y = 10**9
        for label, line in grid_for(road_plane, (w_img, h_img)):
            arr = np.round(line).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(out, [arr], False, (0, 215, 255), max(1, th // 2), cv2.LINE_AA)
            x, y = arr.reshape(-1, 2)[0]
            if label and abs(int(y) - last_y) > 14 * th:  # rows crowd together far away: label fewer
                last_y = int(y)
                cv2.putText(out, label, (int(max(0, x)) + 4, int(y) - 4), cv2.FONT_HERSHEY_SIMPLEX, th * 0.5,
                            (0, 215, 255), max(1, th // 2))

    def poly(p: Poly, color: tuple[int, int, int], label: str | None = None) -> None:
        arr = np.round(np.asarray(p)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [arr], True, color, th, cv2.LINE_AA)
        if label:
            c = arr.reshape(-1, 2).mean(axis=0).astype(int)
            cv2.putText(out, label, (int(c[0]), int(c[1])), cv2.FONT_HERSHEY_SIMPLEX, th * 0.6, color, th)

    if zones.capture:
        poly(zones.capture, (0, 220, 0), "capture")
    for n, p in zones.lanes.items():
        poly(p, (255, 160, 0), n)
    for p in zones.exclusion:
        poly(p, (0, 0, 255), "excluded")
    return out
