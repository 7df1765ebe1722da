"""Low-poly 3D vehicles (sedan, SUV, van, truck, bus, two-wheeler with rider) projected
through the enforcement camera and drawn as sprites with exact label masks.

A vehicle is a side profile (longitudinal s, height z, half width) swept across its width
into faces, plus detail faces (lights, grille, plate, mirrors, wheels). Faces are culled
against the camera and painted far to near; the windshield face is textured with the cabin
render and the plate face with the rendered plate, both by homography, so the boxes of
windshield / plate / driver follow the real projection. Local frame: x lateral (world +x),
s backwards from the front bumper (world +y), z up.
"""

from __future__ import annotations

import itertools
import math
import zlib
from dataclasses import dataclass, field

import cv2
import numpy as np

from models.synth.cabin import CabinSpec, Occupant
from models.synth.camera import Camera

# Contract classes of the `vehicles` model.
VEHICLE_CLASSES = ("car", "bus", "truck", "van", "two_wheeler", "windshield")
SUBTYPES = {"sedan": "car", "suv": "car", "van": "van", "truck": "truck", "bus": "bus", "two_wheeler": "two_wheeler"}

PAINT = {  # name: (BGR, share in traffic)
    "white": ((232, 234, 236), 0.30), "black": ((24, 24, 26), 0.17), "silver": ((190, 190, 186), 0.14),
    "gray": ((110, 110, 112), 0.12), "red": ((35, 35, 170), 0.07), "blue": ((140, 70, 25), 0.07),
    "champagne": ((150, 175, 196), 0.04), "brown": ((40, 60, 95), 0.02), "green": ((60, 110, 40), 0.02),
    "yellow": ((30, 190, 230), 0.02), "orange": ((30, 110, 225), 0.015), "sky_blue": ((200, 160, 90), 0.015),
}
TRUCK_PAINT = ("blue", "white", "red", "yellow", "green", "orange", "silver")


@dataclass
class Face:
    pts: np.ndarray                  # (N, 3) local coordinates
    color: tuple[float, ...]
    kind: str = "paint"              # paint | glass | dark | light | chrome | tire | windshield | plate | skin | cloth
    details: list[Face] = field(default_factory=list)
    cull: bool = True
    inside: np.ndarray | None = None  # a local point inside the solid (orients the normal); None: body centre


@dataclass
class VehicleModel:
    subtype: str
    length: float
    width: float
    height: float
    color_name: str
    faces: list[Face]
    windshield: np.ndarray | None    # (4,3) local: TL, TR, BR, BL as the camera sees them
    plate: np.ndarray | None         # (4,3) local: TL, TR, BR, BL
    lights: list[np.ndarray]         # headlight centres (local) for night glow
    cabin_size: tuple[float, float] = (1.35, 0.64)  # glass width, apparent height (m)
    rake_deg: float = 30.0           # windshield angle from the horizontal

    @property
    def cls(self) -> str:
        return SUBTYPES[self.subtype]


def _quad(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    return np.stack([a, b, c, d]).astype(np.float64)


def sub_quad(q: np.ndarray, a0: float, a1: float, b0: float, b1: float) -> np.ndarray:
    """Bilinear sub-quad of a quad (q0->q1 is the a axis, q0->q3 the b axis)."""
    def at(a: float, b: float) -> np.ndarray:
        return (1 - a) * (1 - b) * q[0] + a * (1 - b) * q[1] + a * b * q[2] + (1 - a) * b * q[3]
    return np.stack([at(a0, b0), at(a1, b0), at(a1, b1), at(a0, b1)])


def _band(p: tuple[float, float, float], q: tuple[float, float, float]) -> np.ndarray:
    """Quad across the width between profile points p and q: (s, z, half width)."""
    return _quad(np.array([-p[2], p[0], p[1]]), np.array([p[2], p[0], p[1]]),
                 np.array([q[2], q[0], q[1]]), np.array([-q[2], q[0], q[1]]))


def _pick_paint(rng: np.random.Generator, subset: tuple[str, ...] | None = None) -> tuple[str, np.ndarray]:
    names = list(subset or PAINT)
    w = np.array([PAINT[n][1] for n in names])
    name = names[int(rng.choice(len(names), p=w / w.sum()))]
    return name, np.asarray(PAINT[name][0], np.float64) * rng.uniform(0.92, 1.05)


def _circle_side(x: float, s: float, zc: float, r: float, n: int = 14) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.full(n, x), s + r * np.cos(a), zc + r * np.sin(a)], 1)


_PROFILES: dict[str, list[tuple[float, float, float]]] = {
    # (s, z, half-width fraction) from the front bumper bottom over the roof to the rear.
    "sedan": [(0.10, 0.20, 0.96), (0.0, 0.50, 1.0), (0.07, 0.72, 0.98), (1.15, 0.93, 0.95), (2.0, 1.42, 0.8),
              (3.05, 1.45, 0.8), (3.85, 1.0, 0.93), (4.65, 0.98, 0.95), (4.72, 0.3, 0.97)],
    "suv": [(0.10, 0.30, 0.96), (0.0, 0.62, 1.0), (0.08, 0.98, 0.98), (1.05, 1.12, 0.95), (1.85, 1.66, 0.84),
            (4.35, 1.70, 0.84), (4.6, 1.1, 0.93), (4.68, 0.4, 0.96)],
    "van": [(0.06, 0.28, 0.97), (0.0, 0.58, 1.0), (0.05, 0.95, 0.99), (0.55, 1.08, 0.97), (1.25, 1.92, 0.9),
            (4.75, 1.97, 0.9), (4.85, 0.4, 0.97)],
    "truck": [(0.0, 0.40, 1.0), (0.0, 1.05, 1.0), (0.02, 1.42, 1.0), (0.06, 1.50, 0.98), (0.3, 2.45, 0.94),
              (1.9, 2.55, 0.94), (2.0, 0.8, 1.0)],
    "bus": [(0.0, 0.35, 1.0), (0.0, 0.95, 1.0), (0.02, 1.08, 1.0), (0.16, 2.85, 0.98), (0.35, 3.1, 0.96),
            (11.5, 3.1, 0.96), (11.6, 0.35, 1.0)],
}
_DIMS = {"sedan": (4.7, 1.8), "suv": (4.68, 1.88), "van": (4.85, 1.75), "truck": (7.5, 2.3), "bus": (11.6, 2.5)}
# Index in the profile of the windshield's lower point, and plate centre height (m).
_WS_INDEX = {"sedan": 3, "suv": 3, "van": 3, "truck": 3, "bus": 2}
_PLATE_Z = {"sedan": 0.36, "suv": 0.48, "van": 0.42, "truck": 0.62, "bus": 0.6}


def build_vehicle(subtype: str, rng: np.random.Generator) -> VehicleModel:
    """A randomised vehicle of `subtype` (sedan, suv, van, truck, bus, two_wheeler)."""
    if subtype == "two_wheeler":
        return _build_two_wheeler(rng)
    if subtype not in _PROFILES:
        raise ValueError(f"unknown vehicle subtype {subtype!r}; expected one of {', '.join(SUBTYPES)}")
    L0, W0 = _DIMS[subtype]
    sl, sw = rng.uniform(0.94, 1.06), rng.uniform(0.95, 1.04)
    hw = W0 * sw / 2
    prof = [(s * sl, z * rng.uniform(0.98, 1.02) if i else z, f * hw) for i, (s, z, f) in enumerate(_PROFILES[subtype])]
    if subtype == "truck":
        name, col = _pick_paint(rng, TRUCK_PAINT)
    elif subtype == "bus":
        name, col = _pick_paint(rng, ("white", "blue", "green", "red", "yellow", "silver"))
    else:
        name, col = _pick_paint(rng)
    c = tuple(float(v) for v in col)
    dark = (28.0, 28.0, 30.0)
    glass_col = (70.0, 60.0, 55.0)
    faces: list[Face] = []
    wi = _WS_INDEX[subtype]
    n = len(prof)
    for i in range(n - 1):
        q = _band(prof[i], prof[i + 1])
        faces.append(Face(q, c))
    ws_face = faces[wi]
    # Windshield glass inset in the pillars; trucks/buses have thin pillars.
    inset_a = 0.045 if subtype in ("truck", "bus") else 0.07
    glass_q = sub_quad(ws_face.pts, inset_a, 1 - inset_a, 0.03, 0.95)
    windshield = np.stack([glass_q[3], glass_q[2], glass_q[1], glass_q[0]])  # TL, TR, BR, BL (top = far edge)
    ws_face.details.append(Face(glass_q, (0, 0, 0), "windshield"))
    zb = prof[wi][1]  # beltline
    # Front details: the band(s) below the windshield base hold lights, grille, intake.
    lights: list[np.ndarray] = []
    front_upper = faces[1] if subtype in ("sedan", "suv", "van") else faces[0]
    fu = front_upper.pts if subtype in ("sedan", "suv", "van") else sub_quad(faces[0].pts, 0, 1, 0.35, 1.0)
    style = int(rng.integers(3))
    lw = rng.uniform(0.2, 0.3)
    for a0, a1 in ((0.02, 0.02 + lw), (0.98 - lw, 0.98)):
        lq = sub_quad(fu, a0, a1, 0.35 if style else 0.15, 0.92)
        front_upper.details.append(Face(lq, (205.0, 205.0, 210.0), "light"))
        front_upper.details.append(Face(sub_quad(lq, 0.15, 0.85, 0.3, 0.7), (245.0, 245.0, 250.0), "light"))
        lights.append(lq.mean(0))
    gw = rng.uniform(0.18, 0.34)
    front_upper.details.append(Face(sub_quad(fu, 0.5 - gw, 0.5 + gw, 0.15 if style != 2 else 0.0, 0.9), dark, "dark"))
    front_upper.details.append(Face(sub_quad(fu, 0.48, 0.52, 0.4, 0.6), (180.0, 180.0, 185.0), "chrome"))
    fl = faces[0].pts
    if subtype in ("sedan", "suv", "van"):
        faces[0].details.append(Face(sub_quad(fl, 0.22, 0.78, 0.1, 0.55), dark, "dark"))
        if rng.random() < 0.5:
            for a0 in (0.08, 0.84):
                faces[0].details.append(Face(sub_quad(fl, a0, a0 + 0.08, 0.3, 0.6), (190.0, 190.0, 195.0), "light"))
    else:  # heavy bumper
        faces[0].details.append(Face(sub_quad(fl, 0.0, 1.0, 0.0, 0.3), dark, "dark"))
        if subtype == "truck":  # grille bars across the cab front
            for b in (0.15, 0.45, 0.75):
                faces[1].details.append(Face(sub_quad(faces[1].pts, 0.3, 0.7, b, b + 0.12), dark, "dark"))
    # Plate: a vertical 440x140 mm quad just proud of the front face, centred.
    pz = _PLATE_Z[subtype] * rng.uniform(0.95, 1.05)
    s_front = _s_at_z(prof, pz) - 0.015
    plate = _quad(np.array([-0.22, s_front, pz + 0.07]), np.array([0.22, s_front, pz + 0.07]),
                  np.array([0.22, s_front, pz - 0.07]), np.array([-0.22, s_front, pz - 0.07]))
    # Sides: body panel up to the beltline, side glass above it, wheels on the panel.
    L = prof[-1][0]
    axle_f, axle_r = prof[1][0] + (0.95 if subtype in ("sedan", "suv") else 0.7), L - 1.0
    if subtype == "bus":
        axle_f = 2.6
        axle_r = L - 3.0
    if subtype == "truck":
        axle_f = 1.1
    for sgn in (-1.0, 1.0):
        x = sgn * hw
        body = [(x, prof[0][0] + 0.05, 0.3)]
        body += [(sgn * p[2], p[0], min(p[1], zb)) for p in prof[1:-1]]
        body += [(x, L - 0.05, 0.3)]
        side = Face(np.array(body, np.float64), c)
        for ax in (axle_f, axle_r):
            side.details.append(Face(_circle_side(x * 1.001, ax, 0.33, 0.36), (20.0, 20.0, 22.0), "tire"))
            side.details.append(Face(_circle_side(x * 1.002, ax, 0.33, 0.2), (150.0, 150.0, 155.0), "chrome"))
        faces.append(side)
        greenhouse = [p for p in prof[wi: -1] if p[1] > zb + 0.05]
        if subtype in ("truck",):
            greenhouse = [prof[3], prof[4], prof[5]]
        if len(greenhouse) >= 2:
            pts = [(sgn * (greenhouse[0][2] + 0.005), greenhouse[0][0], zb)]
            pts += [(sgn * (p[2] + 0.005), p[0], p[1] - 0.02) for p in greenhouse]
            pts += [(sgn * (greenhouse[-1][2] + 0.005), greenhouse[-1][0], zb)]
            faces.append(Face(np.array(pts, np.float64), glass_col, "glass"))
        # Mirror: a small quad facing forward outside the A-pillar.
        ms, mz = prof[wi][0] + 0.12, zb + 0.1
        mx0, mx1 = sgn * (hw * 0.88), sgn * (hw + 0.17)
        mirror = _quad(np.array([min(mx0, mx1), ms, mz + 0.1]), np.array([max(mx0, mx1), ms, mz + 0.1]),
                       np.array([max(mx0, mx1), ms, mz - 0.05]), np.array([min(mx0, mx1), ms, mz - 0.05]))
        faces.append(Face(mirror, c if rng.random() < 0.6 else dark, cull=False))
    # Tyre fronts under the bumper (visible between bumper and road).
    for sgn in (-1.0, 1.0):
        ts = axle_f - 0.36
        tq = _quad(np.array([sgn * (hw - 0.28), ts, 0.45]), np.array([sgn * (hw - 0.04), ts, 0.45]),
                   np.array([sgn * (hw - 0.04), ts, 0.0]), np.array([sgn * (hw - 0.28), ts, 0.0]))
        faces.insert(0, Face(tq, (18.0, 18.0, 20.0), "tire", cull=False))
    total_len = L
    if subtype == "truck":  # cargo box behind the cab, taller and wider than the cab
        bh = rng.uniform(2.9, 3.5)
        bw = hw * 1.08
        total_len = L0 * sl
        box_col = tuple(float(v) for v in (_pick_paint(rng, ("white", "silver", "blue", "gray"))[1]))
        box = _box(-bw, bw, 2.05, total_len, 1.0, bh, box_col)  # type: ignore[arg-type]
        for sgn in (-1.0, 1.0):  # rear wheels under the box
            for ax in (total_len - 1.6, total_len - 0.5):
                box[2 if sgn < 0 else 3].details.append(
                    Face(_circle_side(sgn * bw * 1.001, ax, 0.5, 0.5), (20.0, 20.0, 22.0), "tire"))
        faces += box
    if subtype == "bus":  # destination sign and a livery stripe
        top = faces[3].pts
        faces[3].details.append(Face(sub_quad(top, 0.1, 0.9, 0.0, 0.6), (20.0, 20.0, 20.0), "dark"))
        faces[3].details.append(Face(sub_quad(top, 0.2, 0.8, 0.15, 0.45), (40.0, 160.0, 240.0), "light"))
    ws_len = float(np.linalg.norm(windshield[0] - windshield[3]))
    rise = float(windshield[0][2] - windshield[3][2])
    rake = math.degrees(math.asin(min(1.0, rise / max(ws_len, 1e-6))))
    gw_m = float(np.linalg.norm(windshield[1] - windshield[0]) + np.linalg.norm(windshield[2] - windshield[3])) / 2
    height = max(float(f.pts[:, 2].max()) for f in faces)
    return VehicleModel(subtype, total_len, 2 * hw, height, name, faces, windshield, plate, lights,
                        cabin_size=(gw_m, ws_len), rake_deg=rake)


def _s_at_z(prof: list[tuple[float, float, float]], z: float) -> float:
    for (s0, z0, _), (s1, z1, _) in itertools.pairwise(prof[:4]):
        if min(z0, z1) <= z <= max(z0, z1) and z1 != z0:
            return s0 + (s1 - s0) * (z - z0) / (z1 - z0)
    return prof[1][0]


def _box(x0: float, x1: float, s0: float, s1: float, z0: float, z1: float, col: tuple[float, ...],
         kind: str = "paint") -> list[Face]:
    """Front, top and both sides of a box (rear and bottom are never seen from ahead)."""
    P = np.array
    c = P([(x0 + x1) / 2, (s0 + s1) / 2, (z0 + z1) / 2])
    return [Face(_quad(P([x0, s0, z1]), P([x1, s0, z1]), P([x1, s0, z0]), P([x0, s0, z0])), col, kind, inside=c),
            Face(_quad(P([x0, s1, z1]), P([x1, s1, z1]), P([x1, s0, z1]), P([x0, s0, z1])), col, kind, inside=c),
            Face(_quad(P([x0, s0, z1]), P([x0, s1, z1]), P([x0, s1, z0]), P([x0, s0, z0])), col, kind, inside=c),
            Face(_quad(P([x1, s0, z1]), P([x1, s1, z1]), P([x1, s1, z0]), P([x1, s0, z0])), col, kind, inside=c)]


def _prism(cx: float, cs: float, z0: float, z1: float, rx: float, rs: float, col: tuple[float, ...],
           kind: str = "paint", n: int = 10, taper: float = 1.0) -> list[Face]:
    """Elliptic prism (n sides + top): rounder torsos and helmets than boxes."""
    a = np.linspace(0, 2 * np.pi, n, endpoint=False) + np.pi / n
    lo = np.stack([cx + rx * np.cos(a), cs + rs * np.sin(a), np.full(n, z0)], 1)
    hi = np.stack([cx + rx * taper * np.cos(a), cs + rs * taper * np.sin(a), np.full(n, z1)], 1)
    c = np.array([cx, cs, (z0 + z1) / 2])
    faces = [Face(_quad(hi[i], hi[(i + 1) % n], lo[(i + 1) % n], lo[i]), col, kind, inside=c) for i in range(n)]
    faces.append(Face(hi[::-1].copy(), col, kind, inside=c))
    return faces


def _build_two_wheeler(rng: np.random.Generator) -> VehicleModel:
    """Motorbike or e-bike with its rider, seen from ahead."""
    ebike = rng.random() < 0.6
    name, col = _pick_paint(rng)
    c = tuple(float(v) for v in col)
    from models.synth.cabin import CLOTHES, SKIN
    cloth = tuple(float(v) for v in CLOTHES[int(rng.integers(len(CLOTHES)))])
    pants = tuple(float(v) for v in CLOTHES[int(rng.integers(len(CLOTHES)))] * 0.7)
    skin = tuple(float(v) for v in SKIN[int(rng.integers(len(SKIN)))])
    helmet = tuple(float(v) for v in _pick_paint(rng)[1]) if rng.random() < 0.8 else (25.0, 25.0, 28.0)
    dark = (25.0, 25.0, 28.0)
    f: list[Face] = []
    f += _box(-0.05, 0.05, 0.0, 0.25, 0.0, 0.58, (18.0, 18.0, 20.0), "tire")
    f += _box(-0.05, 0.05, 1.25, 1.45, 0.0, 0.58, (18.0, 18.0, 20.0), "tire")
    if ebike:
        f += _box(-0.22, 0.22, 0.15, 0.35, 0.3, 0.95, c)  # leg shield
        f += _box(-0.2, 0.2, 0.6, 1.5, 0.45, 0.75, c)     # seat/body
    else:
        f += _box(-0.13, 0.13, 0.05, 0.45, 0.55, 0.95, c)  # fairing
        f += _box(-0.18, 0.18, 0.5, 1.3, 0.45, 0.9, c)     # tank/engine
    f += _box(-0.36, 0.36, 0.3, 0.36, 0.98, 1.02, dark)     # handlebar
    f += _box(-0.08, 0.08, 0.0, 0.04, 0.82, 0.94, (230.0, 230.0, 235.0), "light")
    lights = [np.array([0.0, 0.0, 0.88])]
    # Rider: legs, torso, arms to the bar, head.
    f += _box(-0.2, -0.06, 0.45, 0.65, 0.35, 0.85, pants)
    f += _box(0.06, 0.2, 0.45, 0.65, 0.35, 0.85, pants)
    f += _prism(0.0, 0.78, 0.85, 1.45, 0.22, 0.13, cloth, "cloth", taper=0.92)
    f += _box(-0.3, -0.2, 0.3, 0.7, 1.0, 1.38, cloth, "cloth")
    f += _box(0.2, 0.3, 0.3, 0.7, 1.0, 1.38, cloth, "cloth")
    f += _box(-0.06, 0.06, 0.7, 0.82, 1.45, 1.52, skin, "skin")
    f += _prism(0.0, 0.75, 1.5, 1.72, 0.13, 0.14, helmet, n=12)
    f += _prism(0.0, 0.75, 1.72, 1.8, 0.13, 0.14, helmet, n=12, taper=0.6)
    # Visor / face opening on the front of the helmet.
    f.append(Face(_quad(np.array([-0.085, 0.6, 1.68]), np.array([0.085, 0.6, 1.68]), np.array([0.085, 0.6, 1.55]),
                        np.array([-0.085, 0.6, 1.55])), (40.0, 40.0, 45.0) if rng.random() < 0.5 else skin, "skin",
                  inside=np.array([0.0, 0.75, 1.6])))
    for face in f:
        face.cull = True
    return VehicleModel("two_wheeler", 1.7, 0.72, 1.8, name, f, None, None, lights)


# ------------------------------------------------------------------------------------- drawing


@dataclass
class Lighting:
    ambient: float = 0.55
    sun: np.ndarray = field(default_factory=lambda: np.array([0.3, -0.5, 0.81]))  # towards the sun (behind camera)
    sun_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ir: bool = False           # near-infrared flash: light from the camera, falls off with distance
    ir_ref_m: float = 25.0
    headlights: bool = False
    sky: tuple[float, float, float] = (235.0, 215.0, 200.0)


@dataclass
class Sprite:
    x0: int
    y0: int
    img: np.ndarray            # premultiplied BGR uint8
    alpha: np.ndarray          # uint8
    glass: np.ndarray | None   # uint8 mask of the windshield glass
    plate: np.ndarray | None   # uint8 mask of the plate
    cabin_ids: np.ndarray | None  # cabin label ids warped into the sprite (0 outside the glass)
    lights: np.ndarray         # (K, 2) image points of headlights
    depth: float


def _normal(p: np.ndarray) -> np.ndarray:
    n = np.cross(p[1] - p[0], p[2] - p[0])
    if np.linalg.norm(n) < 1e-9 and len(p) > 3:
        n = np.cross(p[2] - p[0], p[3] - p[0])
    return n / (np.linalg.norm(n) + 1e-12)


_IR_GAIN = {"paint": 1.0, "glass": 0.5, "dark": 0.6, "light": 1.6, "chrome": 1.3, "tire": 0.5, "skin": 1.2,
            "cloth": 1.0}


def _shade(face: Face, n: np.ndarray, to_cam: np.ndarray, light: Lighting, dist: float) -> tuple[float, ...]:
    col = np.asarray(face.color, np.float64)
    if light.ir:
        g = float(col @ np.array([0.3, 0.35, 0.35])) * 0.75 + 55
        lam = 0.35 + 0.65 * max(0.0, float(n @ to_cam))
        g *= lam * _IR_GAIN.get(face.kind, 1.0) * min(1.6, (light.ir_ref_m / max(dist, 1.0)) ** 2)
        return (g, g, g)
    if face.kind == "light":
        k = 1.4 if light.headlights else 0.95
        return tuple(float(v) for v in np.clip(col * k, 0, 255))
    diff = max(0.0, float(n @ light.sun))
    k = light.ambient + (1 - light.ambient) * diff
    out = col * k * np.asarray(light.sun_color)
    if face.kind in ("paint", "glass", "chrome"):  # sky reflection on glossy surfaces facing up
        up = max(0.0, float(n[2]))
        gloss = 0.12 if face.kind == "paint" else 0.25
        out = out * (1 - gloss * up) + np.asarray(light.sky) * light.ambient * gloss * up
    return tuple(float(v) for v in np.clip(out, 0, 255))


def vehicle_world(model: VehicleModel, x: float, y_front: float) -> np.ndarray:
    """Offset from local to world: local (x, s, z) -> world (x + X, Y + s, z)."""
    return np.array([x, y_front, 0.0])


def draw_vehicle(model: VehicleModel, cam: Camera, x: float, y_front: float, light: Lighting,
                 cabin_tex: np.ndarray | None = None, cabin_ids: np.ndarray | None = None,
                 plate_tex: tuple[np.ndarray, np.ndarray] | None = None, pad: int = 3) -> Sprite | None:
    """Project and paint the vehicle; None when it is entirely outside the image or behind."""
    off = vehicle_world(model, x, y_front)
    allpts = np.concatenate([f.pts for f in model.faces]) + off
    uv, z = cam.project(allpts)
    if (z < 1.0).any():
        return None
    x0, y0 = np.floor(uv.min(0)).astype(int) - pad
    x1, y1 = np.ceil(uv.max(0)).astype(int) + pad
    X0, Y0, X1, Y1 = max(x0, 0), max(y0, 0), min(x1, cam.width), min(y1, cam.height)
    if X1 - X0 < 2 or Y1 - Y0 < 2:
        return None
    w, h = X1 - X0, Y1 - Y0
    img = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    glass_m: np.ndarray | None = None
    plate_m: np.ndarray | None = None
    ids_out: np.ndarray | None = None
    cam_c = cam.center
    dist = float(np.linalg.norm(np.array([x, y_front, 1.0]) - cam_c))
    order = []
    for f in model.faces:
        wp = f.pts + off
        n = _normal(wp)
        ctr = wp.mean(0)
        to_cam = cam_c - ctr
        to_cam /= np.linalg.norm(to_cam)
        # Outward orientation: away from the vehicle's centre (convex-ish bodies).
        body_c = off + (f.inside if f.inside is not None else np.array([0, model.length / 2, model.height / 2]))
        if n @ (ctr - body_c) < 0:
            n = -n
        if f.cull and n @ to_cam <= 0.02:
            continue
        depth = float(cam.to_camera(ctr[None])[0, 2])
        order.append((depth, f, n, to_cam))
    # Faces flagged cull=False (tyres under the bumper) go first: they sit behind everything.
    order.sort(key=lambda t: (t[1].cull, -t[0]))

    def fill(pts_w: np.ndarray, col: tuple[float, ...], mask: np.ndarray | None = None) -> np.ndarray:
        p, _ = cam.project(pts_w)
        pi = np.round((p - [X0, Y0]) * 16).astype(np.int32)
        cv2.fillPoly(img, [pi], col[:3], cv2.LINE_AA, shift=4)
        cv2.fillPoly(alpha, [pi], 255, cv2.LINE_AA, shift=4)
        if mask is not None:
            cv2.fillPoly(mask, [pi], 255, cv2.LINE_8, shift=4)
        return p

    for _, f, n, to_cam in order:
        fill(f.pts + off, _shade(f, n, to_cam, light, dist))
        for d in f.details:
            if d.kind == "windshield":
                glass_m = np.zeros((h, w), np.uint8)
                fill(d.pts + off, (20.0, 20.0, 22.0), glass_m)
                if cabin_tex is not None and model.windshield is not None:
                    q, _ = cam.project(model.windshield + off)
                    ids_out = _texture(img, alpha, cabin_tex, cabin_ids, q - [X0, Y0], glass_m)
            else:
                fill(d.pts + off, _shade(d, n, to_cam, light, dist))
    if model.plate is not None:
        pw = model.plate + off
        pn = np.array([0.0, -1.0, 0.0])
        tc = cam_c - pw.mean(0)
        if pn @ tc > 0:
            plate_m = np.zeros((h, w), np.uint8)
            q = fill(pw, (200.0, 200.0, 200.0), plate_m)
            if plate_tex is not None:
                _texture(img, alpha, plate_tex[0], None, q - [X0, Y0], plate_m, tex_alpha=plate_tex[1])
    _weather(img, model, x, y_front)
    lp, _ = cam.project(np.array(model.lights) + off) if model.lights else (np.zeros((0, 2)), None)
    return Sprite(int(X0), int(Y0), img, alpha, glass_m, plate_m, ids_out, lp, dist)


def _weather(img: np.ndarray, model: VehicleModel, x: float, y_front: float) -> None:
    """Break the flat low-poly fills: a soft top-lit gradient, road grime towards the
    bottom and low-frequency paint/dirt variation (stable per vehicle, not per frame)."""
    h, w = img.shape[:2]
    if h < 4 or w < 4:
        return
    seed = zlib.crc32(f"{model.subtype}{model.color_name}{model.length:.4f}{model.width:.4f}".encode())
    r = np.random.default_rng(seed)
    grad = np.linspace(1.06, 0.82, h, dtype=np.float32)[:, None]
    low = cv2.resize(r.uniform(0.92, 1.06, (4, 5)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    g = (grad * low)[..., None]
    np.copyto(img, np.clip(img.astype(np.float32) * g, 0, 255).astype(np.uint8))


def _texture(img: np.ndarray, alpha: np.ndarray, tex: np.ndarray, ids: np.ndarray | None, quad: np.ndarray,
             mask: np.ndarray, tex_alpha: np.ndarray | None = None) -> np.ndarray | None:
    """Warp `tex` (TL, TR, BR, BL corners) into `quad` inside the sprite, within `mask`."""
    th, tw = tex.shape[:2]
    src = np.asarray([[0, 0], [tw, 0], [tw, th], [0, th]], np.float32)
    bx0, by0 = np.floor(quad.min(0)).astype(int)
    bx1, by1 = np.ceil(quad.max(0)).astype(int) + 1
    bx0, by0 = max(bx0, 0), max(by0, 0)
    bx1, by1 = min(bx1, img.shape[1]), min(by1, img.shape[0])
    if bx1 - bx0 < 1 or by1 - by0 < 1:
        return None
    M = cv2.getPerspectiveTransform(src, np.asarray(quad - [bx0, by0], np.float32))
    size = (bx1 - bx0, by1 - by0)
    # Downscaling a lot: pre-shrink the texture so the warp does not alias.
    scale = min(size[0] / tw, 1.0)
    if scale < 0.5:
        s2 = max(scale * 1.5, 8 / tw)
        tex = cv2.resize(tex, (max(2, round(tw * s2)), max(2, round(th * s2))), interpolation=cv2.INTER_AREA)
        if tex_alpha is not None:
            tex_alpha = cv2.resize(tex_alpha, (tex.shape[1], tex.shape[0]), interpolation=cv2.INTER_AREA)
        S = np.diag([tw / tex.shape[1], th / tex.shape[0], 1.0])
        M = M @ S
    warped = cv2.warpPerspective(tex, M, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    m = mask[by0:by1, bx0:bx1].astype(np.float32) / 255.0
    if tex_alpha is not None:
        ta = cv2.warpPerspective(tex_alpha.astype(np.float32), M, size, flags=cv2.INTER_LINEAR)
        m = m * ta
    roi = img[by0:by1, bx0:bx1]
    roi[:] = (roi * (1 - m[..., None]) + warped * m[..., None]).astype(np.uint8)
    if ids is None:
        return None
    ih, iw = ids.shape[:2]
    isrc = np.asarray([[0, 0], [iw, 0], [iw, ih], [0, ih]], np.float32)
    Mi = cv2.getPerspectiveTransform(isrc, np.asarray(quad - [bx0, by0], np.float32))
    wid = cv2.warpPerspective(ids, Mi, size, flags=cv2.INTER_NEAREST, borderValue=0)
    out = np.zeros(mask.shape, np.uint8)
    out[by0:by1, bx0:bx1] = np.where(mask[by0:by1, bx0:bx1] > 0, wid, 0)
    return out


def default_cabin(model: VehicleModel, driver: Occupant, passenger: Occupant | None) -> CabinSpec:
    """Cabin layout for the vehicle's glass (apparent height for a camera ~14 deg above)."""
    gw, glen = model.cabin_size
    alpha = math.radians(14.0)
    beta = math.radians(model.rake_deg)
    ha = glen * math.sin(beta + alpha) / math.cos(alpha)
    if model.subtype == "bus":
        return CabinSpec(driver=driver, passenger=None, width_m=gw, height_m=ha, seat_offset_m=gw * 0.3,
                         head_v_m=ha * 0.42, bus=True)
    if model.subtype == "truck":
        return CabinSpec(driver=driver, passenger=passenger, width_m=gw, height_m=ha, seat_offset_m=gw * 0.28,
                         head_v_m=ha * 0.33)
    return CabinSpec(driver=driver, passenger=passenger, width_m=gw, height_m=ha, seat_offset_m=min(0.38, gw * 0.27),
                     head_v_m=max(0.16, ha * 0.3))
