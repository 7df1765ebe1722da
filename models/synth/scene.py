"""Roadside scenes: road background, conditions, actors, frame composition and labels.

A `Site` is one place under one condition (road layout, lighting, a top-down texture of
the road and roadside). It renders the static background for any camera (the full frame
once per clip, or a crop window for dataset images). `compose` paints actors far to near
as sprites over it, keeps a per-pixel owner buffer, and derives every label box from the
pixels each actor really owns after occlusion: boxes are exact, not estimated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from models.synth.cabin import (
    DRIVER,
    DRIVER_BELT,
    DRIVER_FACE,
    DRIVER_PHONE,
    PASS,
    PASS_BELT,
    PASS_FACE,
    PASS_PHONE,
    CabinSpec,
    Occupant,
    glass,
    render_cabin,
)
from models.synth.camera import Camera
from models.synth.plates import ir_look, motion_blur, random_plate_text, render_plate_rgba
from models.synth.vehicles import Lighting, Sprite, VehicleModel, build_vehicle, default_cabin, draw_vehicle

LIGHTS = ("day", "low_sun", "dusk", "night")
WEATHERS = ("clear", "overcast", "rain")


@dataclass(frozen=True)
class Conditions:
    light: str = "day"
    weather: str = "clear"

    def __post_init__(self) -> None:
        if self.light not in LIGHTS:
            raise ValueError(f"light must be one of {', '.join(LIGHTS)}, got {self.light!r}")
        if self.weather not in WEATHERS:
            raise ValueError(f"weather must be one of {', '.join(WEATHERS)}, got {self.weather!r}")

    @property
    def ir(self) -> bool:
        return self.light == "night"


def random_conditions(rng: np.random.Generator) -> Conditions:
    light = LIGHTS[int(rng.choice(4, p=[0.5, 0.12, 0.13, 0.25]))]
    weather = WEATHERS[int(rng.choice(3, p=[0.6, 0.25, 0.15]))]
    return Conditions(light, weather)


@dataclass
class RoadLayout:
    lanes: int = 3
    lane_width: float = 3.5
    x_left: float = -5.25          # left edge of the travel lanes (world x)
    dashed: bool = True
    two_way: bool = True           # opposing lanes beyond a yellow double line on the left
    zebra_y: float | None = None   # crossing's near edge (m), None: no crossing

    @property
    def x_right(self) -> float:
        return self.x_left + self.lanes * self.lane_width

    def lane_center(self, i: int) -> float:
        return self.x_left + (i + 0.5) * self.lane_width


def random_layout(rng: np.random.Generator, cam_x: float = 0.0) -> RoadLayout:
    lanes = int(rng.choice([1, 2, 3, 3, 4], p=[0.08, 0.3, 0.4, 0.12, 0.1]))
    lw = float(rng.uniform(3.25, 3.75))
    x_left = cam_x - lanes * lw / 2 + float(rng.normal(0, 0.6))
    zebra = float(rng.uniform(11, 16)) if rng.random() < 0.3 else None
    return RoadLayout(lanes, lw, x_left, bool(rng.random() < 0.7), bool(rng.random() < 0.6), zebra)


def lighting_for(cond: Conditions, rng: np.random.Generator) -> Lighting:
    if cond.light == "night":
        return Lighting(ambient=0.2, ir=True, headlights=True, sky=(20.0, 20.0, 20.0),
                        ir_ref_m=float(rng.uniform(22, 28)))
    if cond.light == "dusk":
        return Lighting(ambient=0.45, sun=np.array([0.6, -0.3, 0.2]), sun_color=(0.75, 0.7, 0.75), headlights=True,
                        sky=(150.0, 120.0, 140.0))
    if cond.light == "low_sun":  # sun low ahead of the camera: backlit fronts, glare
        return Lighting(ambient=0.5, sun=_unit(np.array([rng.uniform(-0.5, 0.5), 0.9, 0.25])),
                        sun_color=(0.92, 1.0, 1.08), sky=(200.0, 220.0, 245.0))
    if cond.weather in ("overcast", "rain"):
        return Lighting(ambient=0.75, sun=np.array([0.0, 0.0, 1.0]), sun_color=(0.92, 0.92, 0.92),
                        sky=(205.0, 200.0, 195.0), headlights=cond.weather == "rain")
    return Lighting(ambient=0.55, sun=_unit(np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.7, -0.1), 0.8])),
                    sky=(240.0, 215.0, 190.0))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


# ------------------------------------------------------------------------------------ actors

VEHICLE_MIX = {"sedan": 0.42, "suv": 0.2, "van": 0.1, "truck": 0.1, "bus": 0.06, "two_wheeler": 0.12}


@dataclass
class Balance:
    """Class balance of what occupants do. Violations are rare on real roads; datasets
    over-sample them so the detectors see enough positives."""

    belt: dict[str, float] = field(default_factory=lambda: {"worn": 0.55, "none": 0.3, "under_arm": 0.15})
    phone: dict[str, float] = field(default_factory=lambda: {"none": 0.6, "ear": 0.15, "hand": 0.15, "wheel": 0.1})
    passenger: float = 0.45
    vehicles: dict[str, float] = field(default_factory=lambda: dict(VEHICLE_MIX))
    #: cabin.HANDS of drivers without a phone; None draws nothing (the seeds' images stay as they were)
    hands: dict[str, float] | None = None

    def draw(self, rng: np.random.Generator, table: dict[str, float]) -> str:
        keys = list(table)
        p = np.array([table[k] for k in keys], np.float64)
        return keys[int(rng.choice(len(keys), p=p / p.sum()))]


@dataclass
class Actor:
    id: int
    model: VehicleModel
    x: float
    y_front: float
    speed: float                    # m/s towards the camera
    driver: Occupant | None = None
    passenger: Occupant | None = None
    plate: str | None = None
    plate_kind: str | None = None
    cabin_tex: np.ndarray | None = None
    cabin_ids: np.ndarray | None = None
    plate_tex: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def cls(self) -> str:
        return self.model.cls

    @property
    def violations(self) -> list[str]:
        if self.driver is None:
            return []
        out = []
        if self.driver.belt != "worn":
            out.append("no_seatbelt")
        if self.driver.phone != "none":
            out.append("phone_use")
        return out


def draw_driver(rng: np.random.Generator, bal: Balance) -> Occupant:
    """Belt, phone and, when the balance asks for them, what a phone-free driver's hands do."""
    occ = Occupant(bal.draw(rng, bal.belt), bal.draw(rng, bal.phone))
    if bal.hands is not None and occ.phone == "none":
        occ.hands = bal.draw(rng, bal.hands)
    return occ


def lit_plate(bgr: np.ndarray, rng: np.random.Generator, light: Lighting) -> np.ndarray:
    """A plate texture under the scene's light (rendered or a real crop pasted in its place)."""
    if light.ir:  # retroreflective sheeting returns the flash: bright plate, monochrome
        return ir_look(bgr, rng, gain=float(rng.uniform(1.1, 1.5)))
    return np.clip(bgr.astype(np.float32) * (0.55 + 0.45 * light.ambient) * 1.2, 0, 255).astype(np.uint8)


def make_actor(aid: int, rng: np.random.Generator, light: Lighting, *, subtype: str | None = None,
               balance: Balance | None = None, driver: Occupant | None = None,
               passenger: Occupant | bool | None = True, x: float = 0.0, y_front: float = 30.0,
               speed: float = 12.0, plate_kind: str | None = None, cabin_px_per_m: float = 480.0) -> Actor:
    """A vehicle with its occupants, plate and pre-rendered cabin and plate textures."""
    bal = balance or Balance()
    st = subtype or bal.draw(rng, bal.vehicles)
    model = build_vehicle(st, rng)
    a = Actor(aid, model, x, y_front, speed)
    if st == "two_wheeler":
        return a
    a.driver = driver or draw_driver(rng, bal)
    if passenger is True:
        a.passenger = (Occupant(bal.draw(rng, bal.belt), "hand" if rng.random() < 0.1 else "none")
                       if rng.random() < bal.passenger and st != "bus" else None)
    elif isinstance(passenger, Occupant):
        a.passenger = passenger
    if plate_kind is None:
        if st in ("truck", "bus"):
            plate_kind = "yellow"
        else:
            plate_kind = str(rng.choice(["blue", "green", "white"], p=[0.76, 0.22, 0.02]))
    a.plate, a.plate_kind = random_plate_text(rng, plate_kind)
    bgr, al = render_plate_rgba(a.plate, a.plate_kind, rng, height_px=70)
    a.plate_tex = (lit_plate(bgr, rng, light), al)
    spec: CabinSpec = default_cabin(model, a.driver, a.passenger)
    # Cabin brightness: IR flash at night, a white-light flash fills in at dusk.
    inside = 0.95 if light.ir else (0.42 + 0.25 * light.ambient + (0.2 if light.headlights else 0.0)) * rng.uniform(
        0.8, 1.2)
    tex, ids = render_cabin(spec, rng, px_per_m=cabin_px_per_m, interior_light=inside)
    if light.ir:
        refl, tint, gl = float(rng.uniform(0.0, 0.12)), float(rng.uniform(0.85, 1.0)), 0.0
    else:
        refl = float(rng.uniform(0.05, 0.45) * (1.3 if light.ambient < 0.5 else 1.0))
        tint = float(rng.uniform(0.6, 0.95))
        gl = float(rng.uniform(0.2, 0.7)) if rng.random() < 0.15 else 0.0
    a.cabin_tex = glass(tex, rng, tint=tint, reflection=refl, sky=light.sky, glare=gl)
    a.cabin_ids = ids
    return a


# ------------------------------------------------------------------------------------ background


@dataclass
class Site:
    """One place under one condition; renders its static background for any camera window."""

    layout: RoadLayout
    cond: Conditions
    light: Lighting
    seed: int
    ortho: np.ndarray = field(init=False)
    ortho_origin: tuple[float, float] = (-32.0, 4.0)  # road (x, y) of ortho pixel (0, 0)
    ortho_res: float = 0.05                            # metres per ortho pixel
    ortho_size: tuple[int, int] = (1280, 2240)         # w, h: 64 m x 112 m

    def __post_init__(self) -> None:
        self.ortho = self._make_ortho(np.random.default_rng(self.seed))

    # Road texture in road coordinates: asphalt variation, tyre tracks, patches, verges.
    def _make_ortho(self, rng: np.random.Generator) -> np.ndarray:
        w, h = self.ortho_size
        L = self.layout
        xs = self.ortho_origin[0] + (np.arange(w) + 0.5) * self.ortho_res
        base = np.array([105, 107, 110], np.float32) * rng.uniform(0.75, 1.15)
        if self.cond.weather == "rain":
            base *= 0.6
        img = np.empty((h, w, 3), np.float32)
        img[:] = base
        low = cv2.resize(rng.normal(0, 1, (h // 40 + 2, w // 40 + 2)).astype(np.float32), (w, h),
                         interpolation=cv2.INTER_CUBIC)
        mid = cv2.resize(rng.normal(0, 1, (h // 6 + 2, w // 6 + 2)).astype(np.float32), (w, h),
                         interpolation=cv2.INTER_LINEAR)
        img *= (1 + 0.06 * low + 0.035 * mid)[..., None]
        # Darker oily tyre tracks in each lane, lighter polished lane centres.
        for i in range(L.lanes):
            c = L.lane_center(i)
            for off in (-0.85, 0.85):
                d = np.abs(xs - (c + off))
                img *= (1 - 0.07 * np.exp(-(d / 0.35) ** 2))[None, :, None]
            d = np.abs(xs - c)
            img *= (1 - 0.1 * np.exp(-(d / 0.25) ** 2) * (rng.random() < 0.5))[None, :, None]
        # Patches (repaired asphalt), darker rectangles.
        for _ in range(int(rng.integers(2, 8))):
            px, py = int(rng.integers(0, w)), int(rng.integers(0, h))
            pw, ph = int(rng.integers(20, 120)), int(rng.integers(20, 300))
            img[py: py + ph, px: px + pw] *= rng.uniform(0.75, 0.92)
        # Verges: right shoulder/curb/sidewalk, left median or opposing carriageway.
        xr, xl = L.x_right, L.x_left
        right_kind = rng.choice(["sidewalk", "grass"])
        curb = (xs > xr + 0.5) & (xs <= xr + 0.75)
        beyond = xs > xr + 0.75
        img[:, curb] = np.array([165, 168, 170], np.float32) * rng.uniform(0.8, 1.05)
        if right_kind == "sidewalk":
            tile = np.array([120, 125, 150] if rng.random() < 0.5 else [150, 150, 150], np.float32)
            img[:, beyond] = tile * (1 + 0.05 * mid[:, beyond, None])
            g = 0.5 / self.ortho_res
            yy = np.arange(h)[:, None]
            xx = np.arange(w)[None, :]
            grid = ((yy % g) < 1.2) | ((xx % g) < 1.2)
            img[grid & beyond[None, :]] *= 0.8
            grass = xs > xr + 0.75 + rng.uniform(3, 6)
        else:
            grass = beyond
        gcol = np.array([62, 92, 80], np.float32) if self.cond.light != "night" else np.array([70, 90, 80], np.float32)
        img[:, grass] = gcol * (1 + 0.18 * mid[:, grass, None] + 0.15 * low[:, grass, None])
        if not L.two_way:  # raised median with curb and shrubs
            med = (xs < xl - 0.3) & (xs > xl - 2.5)
            img[:, (xs <= xl - 0.3) & (xs > xl - 0.5)] = np.array([170, 170, 170], np.float32)
            img[:, med] = gcol * (1 + 0.3 * mid[:, med, None])
        if self.cond.weather == "rain":  # puddles reflecting the (grey) sky, soft-edged
            pud = cv2.resize(rng.random((h // 60 + 2, w // 60 + 2)).astype(np.float32), (w, h),
                             interpolation=cv2.INTER_CUBIC)
            pm = np.clip((pud - 0.78) * 6, 0, 0.5)[..., None]
            sky = np.full(3, float(np.mean(self.light.sky)) * 0.55, np.float32)
            img = img * (1 - pm) + sky * pm
        return np.clip(img, 0, 255).astype(np.uint8)

    def _markings(self, cam: Camera, rng: np.random.Generator) -> list[tuple[np.ndarray, tuple[float, ...]]]:
        """Road-plane polygons (metres) with colours: lane lines, edge lines, arrows, crossing."""
        L = self.layout
        white = (225.0, 228.0, 230.0)
        yellow = (30.0, 175.0, 225.0)
        polys: list[tuple[np.ndarray, tuple[float, ...]]] = []
        y0, y1 = 6.0, 160.0

        def strip(xc: float, w: float, ya: float, yb: float, col: tuple[float, ...]) -> None:
            polys.append((np.array([[xc - w / 2, ya], [xc + w / 2, ya], [xc + w / 2, yb], [xc - w / 2, yb]]), col))

        strip(L.x_right - 0.15, 0.18, y0, y1, white)
        if L.two_way:
            strip(L.x_left - 0.15, 0.15, y0, y1, yellow)
            strip(L.x_left - 0.45, 0.15, y0, y1, yellow)
        else:
            strip(L.x_left + 0.15, 0.15, y0, y1, white)
        phase = float(rng.uniform(0, 15))
        for i in range(1, L.lanes):
            xc = L.x_left + i * L.lane_width
            if L.dashed:
                y = y0 - phase
                while y < y1:
                    strip(xc, 0.15, max(y, y0), y + 6.0, white)
                    y += 15.0
            else:
                strip(xc, 0.15, y0, y1, white)
        if L.zebra_y is not None:
            zy = L.zebra_y
            x = L.x_left + 0.3
            while x < L.x_right - 0.3:
                strip(x + 0.225, 0.45, zy, zy + 5.0, white)
                x += 1.0
            strip((L.x_left + L.x_right) / 2, L.x_right - L.x_left, zy + 6.5, zy + 6.9, white)
        # Straight-ahead arrows in each lane.
        ay = float(rng.uniform(30, 60))
        for i in range(L.lanes):
            c = L.lane_center(i)
            shaft = np.array([[c - 0.08, ay], [c + 0.08, ay], [c + 0.08, ay + 3.5], [c - 0.08, ay + 3.5]])
            head = np.array([[c - 0.45, ay + 0.0], [c, ay - 2.0], [c + 0.45, ay + 0.0]])
            polys.append((shaft, white))
            polys.append((head, white))
        return polys

    def background(self, cam: Camera) -> np.ndarray:
        """The static scene (road, markings, roadside) as `cam` sees it, BGR uint8."""
        rng = np.random.default_rng(self.seed + 1)
        ox, oy = self.ortho_origin
        r = self.ortho_res
        T = np.array([[r, 0, ox], [0, r, oy], [0, 0, 1]], np.float64)  # ortho px -> road m
        Hm = cam.homography_road_to_image() @ T
        bg = cv2.warpPerspective(self.ortho, Hm, (cam.width, cam.height), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
        # Fine grain in image space (asphalt aggregate), stronger near the camera.
        grain = np.random.default_rng(self.seed + 2).normal(0, 5.0, (cam.height, cam.width, 1)).astype(np.float32)
        f = bg.astype(np.float32) + grain
        # Markings, worn: painted through a wear mask.
        Hr = cam.homography_road_to_image()
        paint = np.zeros((cam.height, cam.width), np.uint8)
        layer = np.zeros((cam.height, cam.width, 3), np.uint8)
        for poly, col in self._markings(cam, rng):
            p = np.c_[poly, np.ones(len(poly))] @ Hr.T
            if (p[:, 2] <= 0).any():
                continue
            q = np.round(p[:, :2] / p[:, 2:3] * 16).astype(np.int32)
            cv2.fillPoly(layer, [q], col, cv2.LINE_AA, shift=4)
            cv2.fillPoly(paint, [q], 255, cv2.LINE_AA, shift=4)
        wear = np.clip(0.75 + 0.35 * cv2.resize(rng.normal(0, 1, (cam.height // 24 + 2, cam.width // 24 + 2)).astype(
            np.float32), (cam.width, cam.height)), 0.2, 1.0)
        m = (paint.astype(np.float32) / 255.0 * wear)[..., None]
        lay = layer.astype(np.float32)
        lay *= (self.light.ambient * 0.6 + 0.55) if not self.light.ir else 1.0
        f = f * (1 - m) + lay * m
        # Lighting of the road surface.
        f = self._illuminate(f, cam)
        return np.clip(f, 0, 255).astype(np.uint8)

    def _illuminate(self, f: np.ndarray, cam: Camera) -> np.ndarray:
        lt, c = self.light, self.cond
        if lt.ir:
            # IR flash from the camera: inverse-square falloff with distance from the camera.
            sh, sw = max(2, cam.height // 16), max(2, cam.width // 16)
            uu, vv = np.meshgrid((np.arange(sw) + 0.5) * cam.width / sw, (np.arange(sh) + 0.5) * cam.height / sh)
            road = cam.image_to_road(np.stack([uu.ravel(), vv.ravel()], 1))
            d = np.sqrt(road[:, 1] ** 2 + (road[:, 0] - cam.x_m) ** 2 + cam.height_m ** 2).reshape(sh, sw)
            g0 = np.clip((lt.ir_ref_m / d) ** 2, 0.05, 1.6).astype(np.float32) * 0.55
            g = np.asarray(cv2.resize(g0, (cam.width, cam.height), interpolation=cv2.INTER_LINEAR))
            gray = f @ np.array([0.3, 0.35, 0.35], np.float32)
            return np.repeat((gray * g)[..., None], 3, axis=2)
        k = np.array(lt.sun_color, np.float32) * (0.55 + 0.5 * lt.ambient)
        if c.light == "dusk":
            k *= 0.55
        return f * k


# ------------------------------------------------------------------------------------ compose


@dataclass
class ActorLabel:
    id: int
    box: tuple[int, int, int, int]
    visible_fraction: float
    plate_box: tuple[int, int, int, int] | None
    windshield_box: tuple[int, int, int, int] | None
    driver_box: tuple[int, int, int, int] | None
    occupant_boxes: dict[str, list[tuple[int, int, int, int]]]  # driver/passenger/seatbelt/phone/face
    sprite: Sprite


def _bbox(mask: np.ndarray, x0: int, y0: int) -> tuple[int, int, int, int] | None:
    ys = np.flatnonzero(mask.any(1))
    if len(ys) == 0:
        return None
    xs = np.flatnonzero(mask.any(0))
    return (int(xs[0] + x0), int(ys[0] + y0), int(xs[-1] + 1 + x0), int(ys[-1] + 1 + y0))


def _shadow(frame: np.ndarray, cam: Camera, a: Actor, light: Lighting) -> None:
    m = a.model
    hw = m.width / 2
    foot = np.array([[a.x - hw, a.y_front, 0], [a.x + hw, a.y_front, 0], [a.x + hw, a.y_front + m.length, 0],
                     [a.x - hw, a.y_front + m.length, 0]])
    pts = [foot]
    strength = 0.55
    if not light.ir and not light.headlights and light.sun[2] < 0.99 and light.ambient < 0.7:
        sx, sy = -light.sun[0] / light.sun[2], -light.sun[1] / light.sun[2]
        k = min(m.height * 0.85, 12.0)
        pts.append(foot + np.array([sx * k, sy * k, 0]))
        strength = 0.35 + 0.5 * (1 - light.ambient)
    uv, z = cam.project(np.concatenate(pts))
    if (z < 1).any():
        return
    hull = cv2.convexHull(uv.astype(np.float32)).reshape(-1, 2)
    sig = max(1.0, cam.focal_px * 0.12 / max(a.y_front, 1.0))
    mg = int(3 * sig) + 2
    x0, y0 = np.floor(hull.min(0)).astype(int) - mg
    x1, y1 = np.ceil(hull.max(0)).astype(int) + mg
    X0, Y0, X1, Y1 = max(x0, 0), max(y0, 0), min(x1, cam.width), min(y1, cam.height)
    if X1 - X0 < 2 or Y1 - Y0 < 2:
        return
    # Soft shadows are drawn and blurred at reduced resolution (the blur is wide anyway).
    ds = max(1, int(sig / 3))
    mh, mw = max(2, (Y1 - Y0) // ds), max(2, (X1 - X0) // ds)
    sx, sy = mw / (X1 - X0), mh / (Y1 - Y0)
    mask = np.zeros((mh, mw), np.float32)
    cv2.fillPoly(mask, [np.round((hull - [X0, Y0]) * [sx, sy] * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    # Contact shadow: the dark core right under the body.
    core, _ = cam.project(foot + np.array([0, 0.3, 0]))
    cv2.fillPoly(mask, [np.round((core - [X0, Y0]) * [sx, sy] * 16).astype(np.int32)], 1.35, cv2.LINE_AA, shift=4)
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.8, sig / ds))
    if ds > 1:
        mask = cv2.resize(mask, (X1 - X0, Y1 - Y0), interpolation=cv2.INTER_LINEAR)
    roi = frame[Y0:Y1, X0:X1]
    roi[:] = np.clip(roi * (1 - np.clip(mask * strength, 0, 0.85))[..., None], 0, 255).astype(np.uint8)


def _glow(frame: np.ndarray, pts: np.ndarray, radius: float, gain: float) -> None:
    h, w = frame.shape[:2]
    r = int(max(2, radius * 3))
    yy, xx = np.mgrid[-r: r + 1, -r: r + 1].astype(np.float32)
    g = np.exp(-(xx ** 2 + yy ** 2) / (2 * radius ** 2)) * gain
    for u, v in pts:
        x0, y0 = int(u) - r, int(v) - r
        X0, Y0, X1, Y1 = max(x0, 0), max(y0, 0), min(x0 + 2 * r + 1, w), min(y0 + 2 * r + 1, h)
        if X1 <= X0 or Y1 <= Y0:
            continue
        sub = g[Y0 - y0: Y1 - y0, X0 - x0: X1 - x0, None]
        roi = frame[Y0:Y1, X0:X1]
        roi[:] = np.clip(roi + sub * 255, 0, 255).astype(np.uint8)


DRIVER_IDS = (DRIVER, DRIVER_FACE, DRIVER_BELT, DRIVER_PHONE)
PASS_IDS = (PASS, PASS_FACE, PASS_BELT, PASS_PHONE)


def compose(background: np.ndarray, cam: Camera, actors: list[Actor], light: Lighting, *,
            shutter_s: float = 1 / 500, label_min_px: int = 4) -> tuple[np.ndarray, list[ActorLabel]]:
    """Paint actors far to near over a copy of `background`; return the frame and labels.

    Labels come from an owner buffer: each pixel records the actor painted last over it,
    so every box covers exactly the pixels of that actor left visible after occlusion.
    """
    frame = background.copy()
    order = sorted(actors, key=lambda a: -a.y_front)
    for a in order:
        _shadow(frame, cam, a, light)
    owner = np.zeros(frame.shape[:2], np.int32)
    sprites: dict[int, Sprite] = {}
    for a in order:
        sp = draw_vehicle(a.model, cam, a.x, a.y_front, light, a.cabin_tex, a.cabin_ids, a.plate_tex)
        if sp is None:
            continue
        img, al = sp.img, sp.alpha
        # Motion blur along the image motion during the exposure.
        c0 = np.array([[a.x, a.y_front + a.model.length / 2, a.model.height / 2]])
        c1 = c0 - np.array([[0, a.speed * shutter_s, 0]])
        (u0, u1), _ = cam.project(np.concatenate([c0, c1]))
        d = u1 - u0
        blur = float(np.hypot(*d))
        if blur >= 1.5:
            ang = math.degrees(math.atan2(d[1], d[0]))
            img = motion_blur(img, blur, ang)
            al = motion_blur(al, blur, ang)
        h, w = al.shape
        roi = frame[sp.y0: sp.y0 + h, sp.x0: sp.x0 + w]
        af = al.astype(np.float32)[..., None] / 255.0
        roi[:] = np.clip(img.astype(np.float32) + roi * (1 - af), 0, 255).astype(np.uint8)
        owner[sp.y0: sp.y0 + h, sp.x0: sp.x0 + w][sp.alpha >= 128] = a.id
        sprites[a.id] = sp
        if light.headlights and len(sp.lights):
            rad = max(1.5, cam.focal_px * 0.09 / max(sp.depth, 1.0))
            _glow(frame, sp.lights, rad, 0.9 if light.ir else 0.6)
    labels = []
    for a in order:
        sp = sprites.get(a.id)
        if sp is None:
            continue
        h, w = sp.alpha.shape
        full = sp.alpha >= 128
        vis = (owner[sp.y0: sp.y0 + h, sp.x0: sp.x0 + w] == a.id) & full
        box = _bbox(vis, sp.x0, sp.y0)
        if box is None or min(box[2] - box[0], box[3] - box[1]) < label_min_px:
            continue
        frac = float(vis.sum()) / max(1.0, _full_area(a, cam, full))
        plate_box = ws_box = drv_box = None
        occ: dict[str, list[tuple[int, int, int, int]]] = {k: [] for k in
                                                           ("driver", "passenger", "seatbelt", "phone", "face")}
        if sp.plate is not None:
            pm = sp.plate > 0
            pv = pm & vis
            if pm.sum() > 0 and pv.sum() >= 0.6 * pm.sum() and not _touches_edge(pm, sp, cam):
                plate_box = _bbox(pv, sp.x0, sp.y0)
        if sp.glass is not None:
            gm = sp.glass > 0
            gv = gm & vis
            if gm.sum() > 0 and gv.sum() >= 0.5 * gm.sum():
                ws_box = _bbox(gv, sp.x0, sp.y0)
            if sp.cabin_ids is not None and ws_box is not None:
                ids = np.where(gv, sp.cabin_ids, 0)
                drv = _bbox(np.isin(ids, DRIVER_IDS), sp.x0, sp.y0)
                drv_box = drv
                for name, sel in (("driver", DRIVER_IDS), ("passenger", PASS_IDS), ("seatbelt", (DRIVER_BELT,)),
                                  ("face", (DRIVER_FACE,)), ("phone", (DRIVER_PHONE,))):
                    b = _bbox(np.isin(ids, sel), sp.x0, sp.y0)
                    if b is not None and min(b[2] - b[0], b[3] - b[1]) >= 2:
                        occ[name].append(b)
                for name, sel in (("seatbelt", (PASS_BELT,)), ("face", (PASS_FACE,)), ("phone", (PASS_PHONE,))):
                    b = _bbox(ids == sel[0], sp.x0, sp.y0)
                    if b is not None and min(b[2] - b[0], b[3] - b[1]) >= 2:
                        occ[name].append(b)
        labels.append(ActorLabel(a.id, box, round(min(frac, 1.0), 3), plate_box, ws_box, drv_box, occ, sp))
    return frame, labels


def _touches_edge(mask: np.ndarray, sp: Sprite, cam: Camera) -> bool:
    ys, xs = np.nonzero(mask)
    return bool(xs.min() + sp.x0 <= 0 or ys.min() + sp.y0 <= 0 or xs.max() + sp.x0 >= cam.width - 1
                or ys.max() + sp.y0 >= cam.height - 1)


def _full_area(a: Actor, cam: Camera, full: np.ndarray) -> float:
    """Area the actor would cover without the frame edge: drawn area scaled by how much of
    its projected hull lies inside the frame."""
    pts = np.concatenate([f.pts for f in a.model.faces]) + np.array([a.x, a.y_front, 0])
    uv, _ = cam.project(pts)
    hull = cv2.convexHull(uv.astype(np.float32))
    total = cv2.contourArea(hull)
    rect = np.array([[0, 0], [cam.width, 0], [cam.width, cam.height], [0, cam.height]], np.float32)
    inside, _ = cv2.intersectConvexConvex(hull.reshape(-1, 2), rect)
    if inside <= 0:
        return float(full.sum())
    return float(full.sum()) * total / inside


# ------------------------------------------------------------------------------------ imaging


class Imaging:
    """Per-camera sensor and optics effects, precomputed so video frames stay cheap."""

    def __init__(self, cam: Camera, cond: Conditions, light: Lighting, seed: int, *, variants: int = 3) -> None:
        rng = np.random.default_rng(seed)
        self.cond, self.light = cond, light
        h, w = cam.height, cam.width
        sigma = {"day": 2.5, "low_sun": 3.0, "dusk": 5.0, "night": 6.0}[cond.light]
        self.noise = [rng.normal(0, sigma, (h, w, 1)).astype(np.int16) for _ in range(variants)]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        gain = 1.0 - 0.18 * r2 / 2  # vignetting
        tint = np.ones(3, np.float32)
        add = np.zeros((h, w, 3), np.float32)
        if cond.light == "low_sun":
            tint = np.array([0.93, 0.99, 1.06], np.float32)
            sx, sy = rng.uniform(0.2, 0.8) * w, rng.uniform(-0.3, 0.1) * h
            d = np.sqrt((xx - sx) ** 2 + (yy - sy) ** 2) / w
            add += (np.exp(-d * 3.0) * 70)[..., None] * np.array([0.85, 0.95, 1.0], np.float32)
            for k in (0.35, 0.6, 0.85):  # lens flare ghosts along the line through the centre
                gx, gy = sx + (w / 2 - sx) * 2 * k, sy + (h / 2 - sy) * 2 * k
                gd = np.sqrt((xx - gx) ** 2 + (yy - gy) ** 2) / (w * rng.uniform(0.02, 0.05))
                add += (np.exp(-gd ** 2) * 40)[..., None] * rng.uniform(0.6, 1.0, 3).astype(np.float32)
        if cond.light == "dusk":
            tint = np.array([1.08, 0.95, 0.92], np.float32)
        if cond.weather in ("overcast", "rain"):
            add += 12.0  # haze veil
        self.gain = np.clip(gain[..., None] * tint * 128, 0, 255).astype(np.uint8)
        self.add = np.clip(add, 0, 255).astype(np.uint8)
        self.rain: list[np.ndarray] = []
        if cond.weather == "rain":
            for _ in range(variants):
                layer = np.zeros((h, w), np.float32)
                n = int(h * w / 4000)
                xs, ys = rng.uniform(0, w, n), rng.uniform(0, h, n)
                ln = rng.uniform(0.01, 0.03, n) * h
                for x, y, L in zip(xs, ys, ln, strict=True):
                    cv2.line(layer, (int(x), int(y)), (int(x + L * 0.12), int(y + L)), float(rng.uniform(0.3, 1.0)), 1,
                             cv2.LINE_AA)
                self.rain.append(np.clip(cv2.GaussianBlur(layer, (0, 0), 0.8) * 70, 0, 255).astype(np.uint8)[..., None]
                                 .repeat(3, axis=2))

    def apply(self, frame: np.ndarray, i: int) -> np.ndarray:
        out = cv2.multiply(frame, self.gain, scale=1 / 128)
        out = cv2.add(out, self.add)
        if self.rain:
            out = cv2.add(out, self.rain[i % len(self.rain)])
        if self.cond.ir:
            out = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        n = self.noise[i % len(self.noise)]
        return np.clip(out.astype(np.int16) + n, 0, 255).astype(np.uint8)
