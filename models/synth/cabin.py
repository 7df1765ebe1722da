"""The cabin as seen through a windshield: occupants, belts, phones, wheel, occluders.

Drawn in *apparent* space: a plane facing the camera, isotropic metres, the size of the
glass as the camera sees it (width x apparent height). Mapping that texture onto the
projected glass quad then gives the right foreshortening without a 3D cabin. Every
element is painted twice: colour into the texture and a label id into an id map, last
painter wins, so label boxes come from what is actually visible (a hand over the strap,
a sun visor over the forehead, the wheel over the belly).

Image orientation is the camera's: the DRIVER sits on the image RIGHT (China drives on the
right; the driver's left shoulder is at the image-right edge near the B-pillar), the
passenger on the image left. A correctly worn driver strap runs from the image-right
shoulder down to the image-left hip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

# Label ids in the id map.
BG, DRIVER, DRIVER_FACE, DRIVER_BELT, DRIVER_PHONE = 0, 1, 2, 3, 4
PASS, PASS_FACE, PASS_BELT, PASS_PHONE = 11, 12, 13, 14
BELT_AUX, WHEEL, FIXTURE = 20, 21, 22

BELTS = ("worn", "none", "under_arm")
PHONES = ("none", "ear", "hand", "wheel")
#: what the hands of a driver WITHOUT a phone do besides steering: hard negatives for the phone
#: class (a hand at the face or a cup held up is not a phone call); "default" draws nothing extra
HANDS = ("default", "face", "cup")

SKIN = np.array([[168, 196, 232], [150, 182, 222], [128, 160, 205], [112, 142, 188], [92, 118, 160],
                 [70, 92, 130], [52, 68, 100]], np.float32)
HAIR = np.array([[18, 18, 22], [22, 24, 30], [30, 42, 62], [45, 62, 92], [120, 122, 126], [175, 178, 182],
                 [40, 70, 130]], np.float32)
HAIR_P = np.array([0.45, 0.2, 0.12, 0.08, 0.08, 0.03, 0.04])
CLOTHES = np.array([[235, 235, 235], [28, 28, 30], [80, 45, 25], [125, 125, 128], [170, 115, 55], [45, 45, 175],
                    [165, 192, 212], [60, 110, 65], [220, 195, 160], [20, 150, 235], [200, 200, 205],
                    [60, 60, 110], [90, 140, 180]], np.float32)
BELT_COL = np.array([[38, 38, 40], [55, 55, 58], [82, 82, 88], [135, 160, 178]], np.float32)
BELT_P = np.array([0.5, 0.25, 0.15, 0.1])


@dataclass
class Occupant:
    belt: str = "worn"
    phone: str = "none"
    hands: str = "default"  # HANDS; only drawn when phone is "none"


@dataclass
class CabinSpec:
    """What the cabin contains (the ground truth) and how it is laid out."""

    driver: Occupant = field(default_factory=Occupant)
    passenger: Occupant | None = None
    width_m: float = 1.35        # glass width
    height_m: float = 0.64       # apparent glass height
    seat_offset_m: float = 0.36  # driver/passenger lateral offset from the glass centre
    head_v_m: float = 0.19       # apparent depth of the head centre below the glass top
    wheel: bool = True
    bus: bool = False


def _rot(pts: np.ndarray, ang: float, c: np.ndarray) -> np.ndarray:
    cs, sn = math.cos(ang), math.sin(ang)
    return (pts - c) @ np.array([[cs, sn], [-sn, cs]]) + c


class _Painter:
    """Paints in metres (u right from the glass centre, v down from the glass top)."""

    def __init__(self, w_m: float, h_m: float, k: float) -> None:
        self.k, self.w_m = k, w_m
        self.W, self.H = max(8, round(w_m * k)), max(8, round(h_m * k))
        self.img = np.zeros((self.H, self.W, 3), np.uint8)
        self.ids = np.zeros((self.H, self.W), np.uint8)

    def px(self, pts: np.ndarray | list[tuple[float, float]]) -> np.ndarray:
        p = np.asarray(pts, np.float64).reshape(-1, 2)
        return np.stack([(p[:, 0] + self.w_m / 2) * self.k, p[:, 1] * self.k], 1)

    def _col(self, c: np.ndarray | tuple[float, ...]) -> tuple[float, float, float]:
        a = np.clip(np.asarray(c, np.float64), 0, 255)
        return float(a[0]), float(a[1]), float(a[2])

    def poly(self, pts: np.ndarray | list[tuple[float, float]], col: np.ndarray | tuple[float, ...], lid: int
             ) -> None:
        p = np.round(self.px(pts) * 16).astype(np.int32)
        cv2.fillPoly(self.img, [p], self._col(col), cv2.LINE_AA, shift=4)
        if lid >= 0:
            cv2.fillPoly(self.ids, [p], lid, cv2.LINE_8, shift=4)

    def ellipse(self, c: tuple[float, float], axes: tuple[float, float], ang_deg: float,
                col: np.ndarray | tuple[float, ...], lid: int, arc: tuple[float, float] = (0, 360),
                thick_m: float | None = None) -> None:
        cc = self.px([c])[0]
        ax = (max(1, round(axes[0] * self.k * 16)), max(1, round(axes[1] * self.k * 16)))
        cint = (round(cc[0] * 16), round(cc[1] * 16))
        t = -1 if thick_m is None else max(1, round(thick_m * self.k))
        cv2.ellipse(self.img, cint, ax, ang_deg, arc[0], arc[1], self._col(col), t, cv2.LINE_AA, shift=4)
        if lid >= 0:
            cv2.ellipse(self.ids, cint, ax, ang_deg, arc[0], arc[1], lid, t, cv2.LINE_8, shift=4)

    def line(self, pts: list[tuple[float, float]], width_m: float, col: np.ndarray | tuple[float, ...],
             lid: int) -> None:
        p = np.round(self.px(pts) * 16).astype(np.int32)
        t = max(1, round(width_m * self.k))
        cv2.polylines(self.img, [p], False, self._col(col), t, cv2.LINE_AA, shift=4)
        if lid >= 0:
            cv2.polylines(self.ids, [p], False, lid, t, cv2.LINE_8, shift=4)

    def strap(self, a: tuple[float, float], b: tuple[float, float], width_m: float,
              col: np.ndarray, lid: int) -> None:
        """A flat belt webbing: a quad with a faint centre sheen."""
        pa, pb = np.array(a), np.array(b)
        d = pb - pa
        n = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-9) * width_m / 2
        self.poly([tuple(pa + n), tuple(pb + n), tuple(pb - n), tuple(pa - n)], col, lid)
        self.line([tuple(pa + n * 0.3), tuple(pb + n * 0.3)], width_m * 0.12, col * 1.35 + 10, -1)


def _shade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Soften flat fills into something photographic: blur, low-frequency light, grain."""
    h, w = img.shape[:2]
    f = cv2.GaussianBlur(img, (0, 0), 0.7).astype(np.float32)
    light = cv2.resize(rng.uniform(0.8, 1.15, (3, 4)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    f *= light[..., None]
    f += rng.normal(0, 3.0, (h, w, 1)).astype(np.float32)
    return np.clip(f, 0, 255).astype(np.uint8)


def _person(p: _Painter, rng: np.random.Generator, spec: CabinSpec, occ: Occupant, driver: bool) -> None:
    side: float = 1.0 if driver else -1.0  # image right for the driver
    lid, fid, bid, phid = (DRIVER, DRIVER_FACE, DRIVER_BELT, DRIVER_PHONE) if driver else (
        PASS, PASS_FACE, PASS_BELT, PASS_PHONE)
    sc = rng.uniform(0.9, 1.1)  # body size
    cu = side * spec.seat_offset_m + rng.normal(0, 0.025)
    hv = spec.head_v_m + rng.normal(0, 0.02)
    lean = rng.normal(0, 0.06)  # head tilt, radians
    skin = SKIN[int(rng.integers(len(SKIN)))] * rng.uniform(0.92, 1.06)
    hair = HAIR[int(rng.choice(len(HAIR), p=HAIR_P))]
    cloth = CLOTHES[int(rng.integers(len(CLOTHES)))] * rng.uniform(0.85, 1.1)
    head_w, head_h = 0.078 * sc, 0.105 * sc  # semi-axes of the face ellipse
    shoulder_v = hv + head_h + 0.07 * sc
    sh_w = rng.uniform(0.2, 0.25) * sc
    bottom = spec.height_m + 0.1
    # Headrest behind the head.
    seat = np.array([40, 40, 44]) if rng.random() < 0.6 else np.array([120, 140, 160])
    p.ellipse((cu + rng.normal(0, 0.01), hv - 0.02), (0.13, 0.1), 0, seat * rng.uniform(0.7, 1.1), FIXTURE)
    # Long hair falls behind the shoulders.
    style = rng.choice(["short", "long", "bald", "cap", "bun"], p=[0.48, 0.22, 0.08, 0.12, 0.1])
    if style == "long":
        p.poly([(cu - head_w * 1.25, hv - 0.02), (cu + head_w * 1.25, hv - 0.02), (cu + head_w * 1.4, shoulder_v + 0.1),
                (cu - head_w * 1.4, shoulder_v + 0.1)], hair, lid)
    # Torso: rounded trapezoid from the shoulders down past the glass bottom.
    torso = [(cu - sh_w, shoulder_v + 0.04), (cu - sh_w * 0.75, shoulder_v - 0.01),
             (cu + sh_w * 0.75, shoulder_v - 0.01), (cu + sh_w, shoulder_v + 0.04),
             (cu + sh_w * 1.02, bottom), (cu - sh_w * 1.02, bottom)]
    # Unfastened or under-arm belt: the upper part runs from the B-pillar anchor behind the body.
    anchor = (cu + side * (sh_w + 0.06), shoulder_v - 0.08)
    belt_col = BELT_COL[int(rng.choice(len(BELT_COL), p=BELT_P))]
    bw = rng.uniform(0.045, 0.052)
    if occ.belt == "none":
        p.strap(anchor, (anchor[0] + side * 0.01, bottom), bw, belt_col, BELT_AUX)
    elif occ.belt == "under_arm":
        p.strap(anchor, (cu + side * sh_w * 0.7, shoulder_v + 0.02), bw, belt_col, BELT_AUX)
    p.poly(torso, cloth, lid)
    if rng.random() < 0.25:  # jacket opening / contrasting inner shirt
        inner = CLOTHES[int(rng.integers(len(CLOTHES)))]
        p.poly([(cu - 0.05, shoulder_v), (cu + 0.05, shoulder_v), (cu + 0.07, bottom), (cu - 0.07, bottom)], inner,
               lid)
    # Neck and collar.
    p.poly([(cu - 0.038 * sc, hv + head_h * 0.6), (cu + 0.038 * sc, hv + head_h * 0.6),
            (cu + 0.045 * sc, shoulder_v + 0.01), (cu - 0.045 * sc, shoulder_v + 0.01)], skin * 0.85, lid)
    p.ellipse((cu, shoulder_v + 0.0), (0.06 * sc, 0.035), 0, skin * 0.8, lid, arc=(0, 180))
    # Belt worn: over the outboard shoulder to the inboard hip; under_arm: from the armpit.
    if occ.belt == "worn":
        top = (cu + side * sh_w * 0.45, shoulder_v - 0.012)
        p.strap(anchor, top, bw, belt_col, BELT_AUX)
        p.strap(top, (cu - side * sh_w * 0.95, bottom), bw, belt_col, bid)
    elif occ.belt == "under_arm":
        p.strap((cu + side * sh_w * 0.92, shoulder_v + 0.13), (cu - side * sh_w * 0.95, bottom + 0.05), bw, belt_col,
                BELT_AUX)
    # Head: face ellipse (face id), hair cap (body id), features.
    c = (cu, hv)
    hair_top = (cu + math.sin(lean) * 0.02, hv - head_h * 0.35)
    if style != "bald":
        p.ellipse(hair_top, (head_w * 1.08, head_h * 0.85), math.degrees(lean), hair, lid)
    # Face: a darker rim and a lit centre (soft after _shade's blur) read as a rounded head.
    p.ellipse(c, (head_w, head_h), math.degrees(lean), skin * 0.82, fid)
    p.ellipse((cu + rng.normal(0, 0.006), hv - head_h * 0.08), (head_w * 0.78, head_h * 0.8), math.degrees(lean),
              skin * 1.04, fid)
    p.ellipse((cu, hv + head_h * 0.92), (head_w * 0.7, head_h * 0.12), 0, skin * 0.6, fid)  # chin shadow
    p.ellipse((cu - head_w, hv + 0.005), (0.012, 0.025), 0, skin * 0.9, fid)  # ears
    p.ellipse((cu + head_w, hv + 0.005), (0.012, 0.025), 0, skin * 0.9, fid)
    if style in ("short", "long", "bun"):  # fringe
        p.ellipse(hair_top, (head_w * 1.02, head_h * 0.55), math.degrees(lean), hair, lid, arc=(180, 360))
    elif style == "cap":
        cap = CLOTHES[int(rng.integers(len(CLOTHES)))]
        p.ellipse((cu, hv - head_h * 0.45), (head_w * 1.1, head_h * 0.6), 0, cap, lid, arc=(180, 360))
        p.poly([(cu - head_w * 1.1, hv - head_h * 0.45), (cu + head_w * 1.1, hv - head_h * 0.45),
                (cu + head_w * 0.9, hv - head_h * 0.3), (cu - head_w * 0.9, hv - head_h * 0.3)], cap * 0.8, lid)
    if style == "bun":
        p.ellipse((cu, hv - head_h * 1.05), (0.035, 0.03), 0, hair, lid)
    ey = hv - head_h * 0.05
    eye = (25, 25, 30)
    if rng.random() < 0.15:  # sunglasses
        p.poly([(cu - head_w * 0.8, ey - 0.012), (cu + head_w * 0.8, ey - 0.012), (cu + head_w * 0.75, ey + 0.018),
                (cu - head_w * 0.75, ey + 0.018)], (20, 20, 20), fid)
    else:
        for s in (-1.0, 1.0):
            p.ellipse((cu + s * head_w * 0.4, ey), (0.011, 0.005), 0, eye, fid)
            p.line([(cu + s * head_w * 0.2, ey - 0.017), (cu + s * head_w * 0.62, ey - 0.019)], 0.005, hair, fid)
        if rng.random() < 0.2:  # glasses frame
            for s in (-1.0, 1.0):
                p.ellipse((cu + s * head_w * 0.4, ey), (0.022, 0.015), 0, (30, 30, 30), fid, thick_m=0.003)
    p.line([(cu, ey + 0.01), (cu + 0.004, ey + 0.04)], 0.006, skin * 0.75, fid)  # nose
    if rng.random() < 0.12:  # face mask, common in Chinese traffic
        p.ellipse((cu, hv + head_h * 0.45), (head_w * 0.85, head_h * 0.45), 0,
                  (235, 225, 210) if rng.random() < 0.6 else (210, 170, 120), fid)
    else:
        p.line([(cu - 0.017, hv + head_h * 0.55), (cu + 0.017, hv + head_h * 0.55)], 0.006, skin * 0.6, fid)
    # Arms and hands.
    sleeve = cloth * rng.uniform(0.8, 1.0)
    arm_w = 0.075 * sc
    if spec.wheel and driver:
        wc = (cu, spec.height_m + 0.01)
        wr = 0.19
        _wheel(p, wc, wr, rng)
    def arm(shoulder: tuple[float, float], elbow: tuple[float, float], hand: tuple[float, float]) -> None:
        """A bent sleeve: its shaded outline, then the sleeve itself."""
        p.line([shoulder, elbow, hand], arm_w * 1.15, sleeve * 0.55, lid)
        p.line([shoulder, elbow, hand], arm_w, sleeve, lid)

    hand_pts: list[tuple[tuple[float, float], tuple[float, float]]] = []  # (shoulder, hand)
    ph_hand: float = 0.0
    if occ.phone != "none":
        ph_hand = side if rng.random() < 0.5 else -side  # which image side's hand holds the phone
    if occ.hands not in HANDS:
        raise ValueError(f"occupant hands must be one of {HANDS}, got {occ.hands!r}")
    busy_hand: float = 0.0  # the hand that is at the face or holds a cup (no phone)
    if occ.phone == "none" and occ.hands != "default":
        busy_hand = side if rng.random() < 0.5 else -side
    for s in (-1.0, 1.0):
        shoulder = (cu + s * sh_w * 0.88, shoulder_v + 0.03)
        if occ.hands == "face" and s == busy_hand:
            # the phone-at-ear arm, the hand empty at the cheek, chin or temple
            hand = (cu + s * (head_w * rng.uniform(0.3, 1.0) + 0.01), hv + head_h * rng.uniform(-0.4, 0.9))
            elbow = (cu + s * (sh_w + 0.05), shoulder_v + 0.2)
            arm(shoulder, elbow, hand)
            p.ellipse(hand, (0.035, 0.045), rng.normal(0, 25), skin * 0.95, lid)
        elif occ.hands == "cup" and s == busy_hand:
            # the phone-in-hand arm holding a cup or bottle at chest or mouth height
            hand = (cu + s * 0.04 + rng.normal(0, 0.02), shoulder_v + rng.uniform(-0.12, 0.24))
            elbow = (cu + s * (sh_w + 0.03), shoulder_v + 0.3)
            arm(shoulder, elbow, hand)
            _cup(p, rng, (hand[0], hand[1] - 0.05), lid)
            p.ellipse((hand[0], hand[1] - 0.01), (0.038, 0.035), 0, skin * 0.95, lid)
        elif occ.phone == "ear" and s == ph_hand:
            hand = (cu + s * (head_w + 0.012), hv + 0.01)
            elbow = (cu + s * (sh_w + 0.05), shoulder_v + 0.2)
            arm(shoulder, elbow, hand)
            p.ellipse(hand, (0.035, 0.045), 0, skin * 0.95, lid)
            _phone(p, rng, (hand[0] - s * 0.006, hand[1] - 0.015), 0.072, 0.145, -s * 0.25, phid, ear=True)
        elif occ.phone == "hand" and s == ph_hand:
            hand = (cu + s * 0.04 + rng.normal(0, 0.02), shoulder_v + rng.uniform(0.18, 0.26))
            elbow = (cu + s * (sh_w + 0.03), shoulder_v + 0.3)
            arm(shoulder, elbow, hand)
            _phone(p, rng, (hand[0], hand[1] - 0.06), 0.072, 0.145, rng.normal(0, 0.3), phid)
            p.ellipse((hand[0], hand[1] - 0.01), (0.038, 0.035), 0, skin * 0.95, lid)
        elif spec.wheel and driver:
            wc = (cu, spec.height_m + 0.01)
            ang = math.radians(rng.uniform(35, 65))
            hand = (wc[0] + s * 0.19 * math.sin(ang), wc[1] - 0.19 * 0.6 * math.cos(ang))
            elbow = (cu + s * (sh_w + 0.02), shoulder_v + 0.3)
            arm(shoulder, elbow, hand)
            p.ellipse(hand, (0.035, 0.03), rng.normal(0, 20), skin * 0.95, lid)
            hand_pts.append((shoulder, hand))
        else:  # passenger arm resting down
            p.line([shoulder, (cu + s * (sh_w + 0.02), bottom)], arm_w, sleeve, lid)
    if occ.phone == "wheel" and spec.wheel and driver:
        wc = (cu, spec.height_m + 0.01)
        _phone(p, rng, (wc[0] + rng.normal(0, 0.04), wc[1] - 0.13), 0.075, 0.15, rng.normal(0, 0.2), phid,
               landscape=rng.random() < 0.4)


def _wheel(p: _Painter, wc: tuple[float, float], wr: float, rng: np.random.Generator) -> None:
    col = np.array([28, 28, 30]) * rng.uniform(0.8, 1.4)
    p.ellipse(wc, (wr, wr * 0.6), 0, col, WHEEL, arc=(180, 360), thick_m=0.032)
    p.line([(wc[0] - wr * 0.95, wc[1]), (wc[0] - 0.05, wc[1] - 0.02)], 0.03, col, WHEEL)
    p.line([(wc[0] + wr * 0.95, wc[1]), (wc[0] + 0.05, wc[1] - 0.02)], 0.03, col, WHEEL)
    p.ellipse(wc, (0.06, 0.045), 0, col * 1.1, WHEEL)


def _cup(p: _Painter, rng: np.random.Generator, c: tuple[float, float], lid: int) -> None:
    """A paper cup, can or bottle: a held object the phone class must not fire on."""
    kind = rng.choice(["cup", "can", "bottle"])
    w, h = {"cup": (0.07, 0.1), "can": (0.06, 0.11), "bottle": (0.055, 0.2)}[str(kind)]
    w, h = w * rng.uniform(0.85, 1.15), h * rng.uniform(0.85, 1.15)
    cols = [(235, 235, 230), (40, 120, 200), (30, 30, 160), (60, 140, 60), (200, 200, 60), (180, 220, 230)]
    col = np.array(cols[int(rng.integers(len(cols)))], np.float64)
    top = w * (0.6 if kind == "bottle" else 1.0)
    p.poly([(c[0] - top / 2, c[1] - h / 2), (c[0] + top / 2, c[1] - h / 2), (c[0] + w / 2, c[1] + h / 2),
            (c[0] - w / 2, c[1] + h / 2)], col, lid)
    p.ellipse((c[0], c[1] - h / 2), (top / 2, top / 6), 0, col * 0.7, lid)


def _phone(p: _Painter, rng: np.random.Generator, c: tuple[float, float], w: float, h: float, ang: float,
           lid: int, *, ear: bool = False, landscape: bool = False) -> None:
    if landscape:
        w, h = h, w
    if ear:  # seen edge-on from the side of the head: narrower
        w *= 0.55
    body = np.array([[c[0] - w / 2, c[1] - h / 2], [c[0] + w / 2, c[1] - h / 2], [c[0] + w / 2, c[1] + h / 2],
                     [c[0] - w / 2, c[1] + h / 2]])
    body = _rot(body, ang, np.array(c))
    case = [(20, 20, 22), (230, 230, 232), (60, 170, 220), (160, 90, 40), (40, 40, 150), (200, 180, 230)]
    col = np.array(case[int(rng.integers(len(case)))], np.float64)
    p.poly([tuple(q) for q in body], col, lid)
    # Camera bump / screen glow depending on which face we see.
    inner = _rot(np.array([[c[0] - w * 0.3, c[1] - h * 0.42], [c[0] - w * 0.05, c[1] - h * 0.42],
                           [c[0] - w * 0.05, c[1] - h * 0.22], [c[0] - w * 0.3, c[1] - h * 0.22]]), ang, np.array(c))
    p.poly([tuple(q) for q in inner], col * 0.55, lid)


def _fixtures_top(p: _Painter, rng: np.random.Generator, spec: CabinSpec) -> None:
    """Sun visors, rear-view mirror with a hanging ornament, inspection stickers."""
    W, H = spec.width_m, spec.height_m
    visor_col = np.array([150, 165, 175]) if rng.random() < 0.5 else np.array([70, 70, 75])
    for s in (-1.0, 1.0):
        if rng.random() < 0.3:  # visor down
            d = rng.uniform(0.06, 0.15)
            u = s * spec.seat_offset_m + rng.normal(0, 0.03)
            p.poly([(u - 0.19, -0.01), (u + 0.19, -0.01), (u + 0.18, d), (u - 0.18, d)],
                   visor_col * rng.uniform(0.8, 1), FIXTURE)
    if rng.random() < 0.8 and not spec.bus:
        mw = 0.12
        p.poly([(-mw, 0.015), (mw, 0.015), (mw * 0.95, 0.06), (-mw * 0.95, 0.06)], (35, 35, 38), FIXTURE)
        p.line([(0.0, 0.0), (0.0, 0.02)], 0.015, (35, 35, 38), FIXTURE)
        if rng.random() < 0.55:  # ornament: red knot / tassel, jade pendant, photo frame
            L = rng.uniform(0.08, 0.2)
            x = rng.normal(0, 0.01)
            p.line([(0.0, 0.06), (x, 0.06 + L)], 0.004, (30, 30, 150), FIXTURE)
            kind = rng.integers(3)
            if kind == 0:
                p.poly([(x, 0.06 + L - 0.03), (x + 0.03, 0.06 + L), (x, 0.06 + L + 0.03), (x - 0.03, 0.06 + L)],
                       (30, 30, 190), FIXTURE)
                p.line([(x, 0.06 + L + 0.03), (x, 0.06 + L + 0.1)], 0.025, (40, 40, 200), FIXTURE)
            elif kind == 1:
                p.ellipse((x, 0.06 + L + 0.02), (0.025, 0.03), 0, (110, 170, 90), FIXTURE)
            else:
                p.poly([(x - 0.035, 0.06 + L), (x + 0.035, 0.06 + L), (x + 0.035, 0.06 + L + 0.06),
                        (x - 0.035, 0.06 + L + 0.06)], (60, 140, 200), FIXTURE)
    # Annual inspection / insurance stickers (top of the passenger side, image left).
    for i in range(int(rng.integers(0, 3))):
        u = -W / 2 + 0.12 + i * 0.09 + rng.normal(0, 0.01)
        col = [(60, 160, 60), (220, 220, 220), (40, 140, 220), (170, 90, 40)][int(rng.integers(4))]
        p.poly([(u, 0.03), (u + 0.07, 0.03), (u + 0.07, 0.1), (u, 0.1)], col, FIXTURE)
    # Dashboard along the glass bottom.
    dash = np.array([32, 32, 34]) * rng.uniform(0.7, 2.2)
    dv = H - rng.uniform(0.03, 0.07)
    p.poly([(-W / 2, dv), (W / 2, dv), (W / 2, H + 0.01), (-W / 2, H + 0.01)], dash, FIXTURE)


def render_cabin(spec: CabinSpec, rng: np.random.Generator, *, px_per_m: float = 480.0,
                 interior_light: float = 0.55) -> tuple[np.ndarray, np.ndarray]:
    """(BGR texture, id map) of what the glass shows of the cabin, before glass effects."""
    p = _Painter(spec.width_m, spec.height_m, px_per_m)
    W, H = spec.width_m, spec.height_m
    # Interior: dark headliner at top, rear window light through the middle, pillars.
    base = np.array([40, 42, 46]) * rng.uniform(0.6, 1.6)
    p.img[:] = np.clip(base, 0, 255).astype(np.uint8)
    rear = rng.uniform(90, 190)
    p.poly([(-W * 0.32, 0.02), (W * 0.32, 0.02), (W * 0.28, H * 0.42), (-W * 0.28, H * 0.42)],
           (rear * 1.05, rear, rear * 0.95), FIXTURE)
    p.poly([(-W / 2, 0), (W / 2, 0), (W / 2, 0.025), (-W / 2, 0.025)], base * 0.8, FIXTURE)
    for s in (-1.0, 1.0):  # B-pillars and side windows beyond
        p.poly([(s * W / 2, 0), (s * (W / 2 - 0.06), 0), (s * (W / 2 - 0.04), H), (s * W / 2, H)], base * 1.2,
               FIXTURE)
    if spec.passenger is not None:
        _person(p, rng, spec, spec.passenger, driver=False)
    else:  # empty seat
        p.ellipse((-spec.seat_offset_m, spec.head_v_m), (0.13, 0.1), 0, (40, 40, 44), FIXTURE)
        p.poly([(-spec.seat_offset_m - 0.22, spec.head_v_m + 0.1), (-spec.seat_offset_m + 0.22, spec.head_v_m + 0.1),
                (-spec.seat_offset_m + 0.24, H + 0.1), (-spec.seat_offset_m - 0.24, H + 0.1)], (45, 45, 50), FIXTURE)
    _person(p, rng, spec, spec.driver, driver=True)
    _fixtures_top(p, rng, spec)
    img = _shade(p.img, rng)
    img = np.clip(img.astype(np.float32) * interior_light, 0, 255).astype(np.uint8)
    return img, p.ids


def glass(texture: np.ndarray, rng: np.random.Generator, *, tint: float = 0.8, reflection: float = 0.25,
          sky: tuple[float, float, float] = (235, 215, 200), glare: float = 0.0) -> np.ndarray:
    """Windshield optics over the cabin texture: tint, sky/scene reflection, glare band,
    and the dark ceramic frit along the edges."""
    h, w = texture.shape[:2]
    f = texture.astype(np.float32) * tint * np.array([1.0, 1.0, 0.93], np.float32)
    # Reflection: sky gradient with blurred silhouettes (trees, buildings, gantry) across it,
    # built at quarter resolution (it is blurry anyway) and upsampled.
    qh, qw = max(4, h // 4), max(4, w // 4)
    refl = np.empty((qh, qw, 3), np.float32)
    t = np.linspace(1.0, 0.55, qh, dtype=np.float32)[:, None, None]
    refl[:] = np.asarray(sky, np.float32) * t
    for _ in range(int(rng.integers(2, 7))):
        x0 = rng.uniform(-0.2, 1.0) * qw
        ww = rng.uniform(0.05, 0.4) * qw
        top = rng.uniform(0.0, 0.8) * qh
        cv2.rectangle(refl, (int(x0), int(top)), (int(x0 + ww), qh), tuple(float(v) for v in rng.uniform(40, 120, 3)),
                      -1)
    refl = cv2.resize(cv2.GaussianBlur(refl, (0, 0), qw / 60), (w, h), interpolation=cv2.INTER_LINEAR)
    wmap = np.clip(reflection * (0.6 + 0.8 * cv2.resize(rng.random((2, 3)).astype(np.float32), (w, h),
                                                          interpolation=cv2.INTER_CUBIC)), 0, 0.95)[..., None]
    f = f * (1 - wmap * 0.5) + refl * wmap
    if glare > 0:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ang = rng.uniform(-0.6, 0.6)
        d = (xx - rng.uniform(0.2, 0.8) * w) * math.cos(ang) + (yy - h / 2) * math.sin(ang)
        band = np.exp(-(d / (rng.uniform(0.05, 0.2) * w)) ** 2) * glare
        f += band[..., None] * 255
    # Frit: a dark band along the top and sides.
    fr = max(2, round(w * 0.012))
    f[:fr] *= 0.25
    f[:, :fr] *= 0.3
    f[:, -fr:] *= 0.3
    return np.clip(f, 0, 255).astype(np.uint8)
