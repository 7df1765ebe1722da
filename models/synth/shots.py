"""Random single shots (camera + site + placed actors) shared by the dataset writers and
the contact sheets. Everything derives from one seed per image, so any image of any
dataset can be regenerated on its own."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.synth.camera import Camera, enforcement_camera
from models.synth.scene import (
    Actor,
    Balance,
    Conditions,
    RoadLayout,
    Site,
    lighting_for,
    make_actor,
    random_conditions,
    random_layout,
)
from models.synth.vehicles import Lighting


@dataclass
class Shot:
    cam: Camera          # full-frame camera
    site: Site
    light: Lighting
    actors: list[Actor]


def random_camera(rng: np.random.Generator, *, width: int = 4096, height: int = 2160) -> Camera:
    """An enforcement camera: 5-7.5 m up, aimed 18-34 m ahead, small pan and offset."""
    return enforcement_camera(width, height, height_m=float(rng.uniform(5.0, 7.5)),
                              aim_distance_m=float(rng.uniform(18, 34)), x_m=float(rng.normal(0, 1.0)),
                              yaw_deg=float(rng.normal(0, 2.0)))


def visible_range(cam: Camera) -> tuple[float, float]:
    """Road distances (m) seen at the bottom and the top image rows."""
    near = cam.ground_distance_at_row(cam.height - 1)
    return near, max(near + 5.0, min(cam.ground_distance_at_row(0), 150.0))


def place_actors(rng: np.random.Generator, cam: Camera, layout: RoadLayout, light: Lighting, n: int, *,
                 balance: Balance | None = None, start_id: int = 1, target_range: tuple[float, float] | None = None,
                 target_subtype: str | None = None, cabin_px_per_m: float = 480.0) -> list[Actor]:
    """Up to n vehicles in the lanes, in view, not overlapping. The first is the 'target':
    placed in `target_range` (m) when given."""
    near, far = visible_range(cam)
    actors: list[Actor] = []
    occupied: list[tuple[int, float, float]] = []  # lane, y0, y1
    for k in range(n * 3):
        if len(actors) >= n:
            break
        lane = int(rng.integers(layout.lanes))
        if k == 0 and target_range is not None:
            y = float(rng.uniform(*target_range))
        else:
            y = float(rng.uniform(near - 3, far))
        bal = balance or Balance()
        st = target_subtype if (k == 0 and target_subtype) else bal.draw(rng, bal.vehicles)
        y0, y1 = y - 1.5, y + _LENGTH[st] + 1.5
        if any(ln == lane and y0 < o1 and o0 < y1 for ln, o0, o1 in occupied):
            continue
        a = make_actor(start_id + len(actors), rng, light, subtype=st, balance=balance, y_front=y,
                       x=layout.lane_center(lane) + float(rng.normal(0, 0.3)),
                       speed=float(rng.uniform(8, 22)), cabin_px_per_m=cabin_px_per_m)
        if a.model.subtype == "two_wheeler":
            a.x = layout.lane_center(lane) + float(rng.choice([-1, 1])) * layout.lane_width * 0.3
        occupied.append((lane, y0, y1))
        actors.append(a)
    return actors


_LENGTH = {"sedan": 4.9, "suv": 4.9, "van": 5.1, "truck": 7.9, "bus": 12.2, "two_wheeler": 1.9}

_SITE_CACHE: dict[tuple[int, int], tuple[Site, Camera, Lighting]] = {}


def site_for(seed: int, group: int, *, width: int = 4096, height: int = 2160,
             cond: Conditions | None = None) -> tuple[Site, Camera, Lighting]:
    """Camera + site for a group of consecutive images (the road texture costs ~1 s)."""
    key = (seed, group)
    if key not in _SITE_CACHE:
        rng = np.random.default_rng([seed, group, 101])
        cam = random_camera(rng, width=width, height=height)
        c = cond or random_conditions(rng)
        light = lighting_for(c, rng)
        layout = random_layout(rng, cam.x_m)
        if len(_SITE_CACHE) > 4:
            _SITE_CACHE.pop(next(iter(_SITE_CACHE)))
        _SITE_CACHE[key] = (Site(layout, c, light, int(rng.integers(1 << 30))), cam, light)
    return _SITE_CACHE[key]
