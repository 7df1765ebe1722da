"""Rendered clips with ground truth: `<name>.mp4`, `<name>.groundtruth.json` (schema
roadeye-groundtruth/1, see the cross-team contracts) and `<name>.camera.yaml`.

Traffic is a small deterministic simulation: vehicles enter beyond the top of the view in
each lane with random headways, follow the vehicle ahead (never closer than a safe gap),
and leave below the frame. Occupant states are fixed per vehicle; a clip's violators are
guaranteed (at least `min_violators` of each kind among vehicles that cross the capture
zone). Frames are piped raw to ffmpeg (libx264, yuv420p).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.camera import CameraCalibration, Lens, RoadPlane, ViolationThreshold, Zones, save_camera
from models.synth.cabin import Occupant
from models.synth.camera import Camera, enforcement_camera
from models.synth.scene import (
    Actor,
    Balance,
    Conditions,
    Imaging,
    RoadLayout,
    Site,
    compose,
    draw_driver,
    lighting_for,
    make_actor,
)
from models.synth.shots import visible_range


@dataclass(frozen=True)
class Preset:
    name: str
    width: int
    height: int
    light: str
    weather: str
    lanes: int = 3
    height_m: float = 6.0
    aim_m: float = 25.0
    focal_scale: float = 1.0
    headway_s: tuple[float, float] = (1.8, 4.5)     # time gap between vehicles entering a lane
    speed_kmh: tuple[float, float] = (35.0, 60.0)
    crf: int = 24
    shutter_s: float = 1 / 500
    min_violators: int = 3                            # of each kind, among vehicles in the capture zone
    vehicle_mix: dict[str, float] = field(default_factory=lambda: {
        "sedan": 0.45, "suv": 0.22, "van": 0.1, "truck": 0.08, "bus": 0.05, "two_wheeler": 0.1})


PRESETS = {
    "day4k": Preset("day_4k", 4096, 2160, "day", "clear"),
    # NIR sensor noise is strong: a higher CRF keeps the 4K night clip near 14 MB.
    "night4k": Preset("night_4k", 4096, 2160, "night", "clear", crf=27),
    "dusk4k": Preset("dusk_4k", 4096, 2160, "dusk", "rain"),
    "dense1080": Preset("dense_1080p", 1920, 1080, "day", "overcast", lanes=4, aim_m=24.0, focal_scale=0.8,
                        headway_s=(0.9, 2.0), speed_kmh=(18.0, 35.0), crf=22, min_violators=3),
    "rain1080": Preset("rain_1080p", 1920, 1080, "dusk", "rain", lanes=3, crf=22),
}

# Occupant states for clip vehicles: violations more frequent than on real roads so each
# clip exercises the rules, but clean vehicles remain the majority.
CLIP_BALANCE = Balance(belt={"worn": 0.82, "none": 0.12, "under_arm": 0.06},
                       phone={"none": 0.86, "ear": 0.06, "hand": 0.05, "wheel": 0.03}, passenger=0.4)


@dataclass
class ClipResult:
    video: Path
    groundtruth: Path
    camera_yaml: Path
    frames: int
    vehicles: int


@dataclass
class _Plan:
    subtype: str
    lane: int
    t_enter: float
    speed: float
    driver: Occupant | None
    passenger: Occupant | None


def preset_camera(p: Preset) -> Camera:
    cam = enforcement_camera(p.width, p.height, height_m=p.height_m, aim_distance_m=p.aim_m)
    if p.focal_scale != 1.0:
        cam = Camera(cam.width, cam.height, cam.focal_px * p.focal_scale, height_m=cam.height_m,
                     tilt_deg=cam.tilt_deg, yaw_deg=cam.yaw_deg, x_m=cam.x_m)
    return cam


def capture_range(cam: Camera) -> tuple[float, float]:
    """Road distances (m) where a vehicle is whole in the frame and its driver resolvable
    (face >= ~28 px wide, driver crop >= ~64 px tall)."""
    near, far = visible_range(cam)
    y_near = near + 1.0
    y_far = min(far - 6.0, cam.focal_px * 0.16 / 28.0)
    return y_near, max(y_near + 3.0, y_far)


def _plan_traffic(p: Preset, rng: np.random.Generator, seconds: float, y_spawn: float, cam: Camera,
                  layout: RoadLayout) -> list[_Plan]:
    bal = Balance(belt=CLIP_BALANCE.belt, phone=CLIP_BALANCE.phone, passenger=CLIP_BALANCE.passenger,
                  vehicles=p.vehicle_mix)
    y_near, y_far = capture_range(cam)
    warm = (y_spawn - y_near) / (p.speed_kmh[0] / 3.6)
    plans: list[_Plan] = []
    for lane in range(layout.lanes):
        lane_speed = rng.uniform(*p.speed_kmh) / 3.6 * (1.08 if lane == 0 else 1.0)
        t = -warm + rng.uniform(0, p.headway_s[1])
        while t < seconds:
            st = bal.draw(rng, bal.vehicles)
            if st in ("bus", "truck") and lane == 0 and layout.lanes > 1:
                st = "sedan"  # heavy vehicles keep right
            if st == "two_wheeler" and lane != layout.lanes - 1:
                st = "suv"
            drv = None if st == "two_wheeler" else draw_driver(rng, bal)
            pas = None
            if st not in ("two_wheeler", "bus") and rng.random() < bal.passenger:
                pas = Occupant(bal.draw(rng, bal.belt), "hand" if rng.random() < 0.08 else "none")
            plans.append(_Plan(st, lane, t, lane_speed * rng.uniform(0.95, 1.05), drv, pas))
            t += rng.uniform(*p.headway_s)
    # Guarantee violators among vehicles that cross the capture zone during the clip.
    def crosses(pl: _Plan) -> bool:
        t_in = pl.t_enter + (y_spawn - y_far) / pl.speed
        return 0.5 < t_in < seconds - 1.5
    eligible = [pl for pl in plans if pl.driver is not None and crosses(pl)]
    for kind in ("no_seatbelt", "phone_use"):
        have = [pl for pl in eligible if _violations(pl.driver)[kind]]
        clean = [pl for pl in eligible if not any(_violations(pl.driver).values())]
        rng.shuffle(clean)  # type: ignore[arg-type]
        for pl in clean[: max(0, p.min_violators - len(have))]:
            assert pl.driver is not None
            if kind == "no_seatbelt":
                pl.driver.belt = "none" if rng.random() < 0.65 else "under_arm"
            else:
                pl.driver.phone = str(rng.choice(["ear", "hand", "wheel"], p=[0.45, 0.35, 0.2]))
    # ... but keep clean vehicles the majority: clear surplus violators (first those outside
    # the capture window, then eligible ones beyond the per-kind minimum).
    drivers = [pl for pl in plans if pl.driver is not None]
    cap = max(2 * p.min_violators, int(0.4 * len(drivers)))
    elig = {id(pl) for pl in eligible}
    viol = [pl for pl in drivers if any(_violations(pl.driver).values())]
    rng.shuffle(viol)  # type: ignore[arg-type]
    viol.sort(key=lambda pl: id(pl) in elig)  # stable: non-eligible first
    for pl in viol:
        if sum(any(_violations(q.driver).values()) for q in drivers) <= cap:
            break
        assert pl.driver is not None
        v = _violations(pl.driver)
        counts = {k: sum(_violations(q.driver)[k] for q in eligible) for k in v}
        if id(pl) not in elig or all(counts[k] > p.min_violators for k in v if v[k]):
            pl.driver.belt, pl.driver.phone = "worn", "none"
    return plans


def _violations(o: Occupant | None) -> dict[str, bool]:
    if o is None:
        return {"no_seatbelt": False, "phone_use": False}
    return {"no_seatbelt": o.belt != "worn", "phone_use": o.phone != "none"}


def _camera_yaml(name: str, cam: Camera, layout: RoadLayout) -> CameraCalibration:
    y_near, y_far = capture_range(cam)
    x0, x1 = layout.x_left - 0.3, layout.x_right + 0.3
    road = np.array([[x0, y_near], [x1, y_near], [x1, y_far], [x0, y_far]], np.float64)
    H = cam.homography_road_to_image()
    q = np.c_[road, np.ones(4)] @ H.T
    img = q[:, :2] / q[:, 2:3]
    img[:, 0] = np.clip(img[:, 0], 0, cam.width - 1)
    img[:, 1] = np.clip(img[:, 1], 0, cam.height - 1)
    road_pts = cam.image_to_road(img)
    hi = cam.homography_image_to_road()
    return CameraCalibration(
        camera_id=name.replace("_", "-"), image_size=(cam.width, cam.height),
        lens=Lens(camera_matrix=cam.K.tolist(), dist_coeffs=[0.0, 0.0, 0.0, 0.0, 0.0], rms_px=0.0),
        zones=Zones(capture=[[float(u), float(v)] for u, v in img]),
        road_plane=RoadPlane(image_points=[[float(u), float(v)] for u, v in img],
                             road_points_m=[[float(a), float(b)] for a, b in road_pts],
                             homography=hi.tolist(), rms_m=0.0, undistorted=False),
        thresholds={"no_seatbelt": ViolationThreshold.model_validate({}),
                    "phone_use": ViolationThreshold.model_validate({})},
    )


def render_clip(p: Preset, out_dir: str | Path, *, seconds: float = 10.0, fps: float = 25.0, seed: int = 1,
                name: str | None = None, crf: int | None = None,
                log: Callable[[str], None] | None = None) -> ClipResult:
    """Render one clip with ground truth; deterministic for (preset, seconds, fps, seed)."""
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("ffmpeg not found on PATH; install the Debian package ffmpeg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = name or p.name
    rng = np.random.default_rng([seed, 4242])
    cam = preset_camera(p)
    cond = Conditions(p.light, p.weather)
    light = lighting_for(cond, rng)
    lw = 3.5
    layout = RoadLayout(p.lanes, lw, cam.x_m - p.lanes * lw / 2 + float(rng.uniform(-0.4, 0.4)),
                        dashed=True, two_way=True, zebra_y=None)
    site = Site(layout, cond, light, int(rng.integers(1 << 30)))
    bg = site.background(cam)
    imaging = Imaging(cam, cond, light, int(rng.integers(1 << 30)), variants=4)
    near, far = visible_range(cam)
    y_spawn = far + 14.0
    plans = _plan_traffic(p, rng, seconds, y_spawn, cam, layout)
    n_frames = round(seconds * fps)
    dt = 1.0 / fps
    actors: dict[int, Actor] = {}
    plan_of: dict[int, _Plan] = {}
    gt: dict[int, dict[str, Any]] = {}
    lane_x = {i: layout.lane_center(i) for i in range(layout.lanes)}
    # Deterministic per-vehicle RNG streams keep appearance independent of frame timing.
    pending = sorted(enumerate(plans), key=lambda t: t[1].t_enter)
    next_id = 1
    video = out / f"{name}.mp4"
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
           "-s", f"{cam.width}x{cam.height}", "-r", f"{fps}", "-i", "-", "-an", "-c:v", "libx264",
           "-preset", "medium", "-crf", str(crf if crf is not None else p.crf), "-pix_fmt", "yuv420p",
           "-threads", "2", "-movflags", "+faststart", str(video)]
    enc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert enc.stdin is not None
    # Simulation starts early so the road is already populated at frame 0.
    t = min((pl.t_enter for pl in plans), default=0.0)
    step = 0.2
    try:
        frame_i = 0
        while frame_i < n_frames:
            now = frame_i * dt if t >= 0 else t
            while pending and pending[0][1].t_enter <= now:
                k, pl = pending.pop(0)
                arng = np.random.default_rng([seed, 777, k])
                a = make_actor(next_id, arng, light, subtype=pl.subtype, driver=pl.driver,
                               passenger=pl.passenger if pl.passenger is not None else False,
                               x=lane_x[pl.lane] + float(arng.normal(0, 0.25)), y_front=y_spawn, speed=pl.speed)
                if pl.subtype == "two_wheeler":
                    a.x = lane_x[pl.lane] + layout.lane_width * 0.28
                a.y_front = y_spawn - pl.speed * (now - pl.t_enter)
                actors[next_id] = a
                plan_of[next_id] = pl
                next_id += 1
            h = step if t < 0 else dt
            _advance(actors, plan_of, h)
            for aid in [i for i, a in actors.items() if a.y_front + a.model.length < near - 8]:
                del actors[aid]
            if t < 0:
                t += step
                if t >= 0:
                    t = 0.0
                continue
            frame, labels = compose(bg, cam, list(actors.values()), light, shutter_s=p.shutter_s)
            img = imaging.apply(frame, frame_i)
            enc.stdin.write(img.tobytes())
            for lab in labels:
                a = actors[lab.id]
                g = gt.setdefault(lab.id, _vehicle_gt(a))
                g["track"].append({
                    "frame": frame_i, "box": list(lab.box), "visible_fraction": lab.visible_fraction,
                    "plate_box": list(lab.plate_box) if lab.plate_box else None,
                    "windshield_box": list(lab.windshield_box) if lab.windshield_box else None,
                    "driver_box": list(lab.driver_box) if lab.driver_box else None})
            if log and frame_i % 25 == 0:
                log(f"{name}: frame {frame_i}/{n_frames}, {len(actors)} vehicles on the road")
            frame_i += 1
            t += dt
    finally:
        enc.stdin.close()
        rc = enc.wait()
    if rc != 0:
        raise RuntimeError(f"ffmpeg failed with exit code {rc} writing {video}")
    vehicles = [gt[k] for k in sorted(gt)]
    doc = {
        "schema": "roadeye-groundtruth/1", "video": video.name, "width": cam.width, "height": cam.height,
        "fps": float(fps), "frames": n_frames, "seed": seed,
        "conditions": {"light": cond.light, "weather": cond.weather},
        "camera": {"height_m": cam.height_m, "tilt_deg": round(cam.tilt_deg, 4), "focal_px": cam.focal_px,
                   "homography_image_to_road": cam.homography_image_to_road().tolist()},
        "vehicles": vehicles,
    }
    gt_path = out / f"{name}.groundtruth.json"
    gt_path.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    cam_path = out / f"{name}.camera.yaml"
    save_camera(_camera_yaml(name, cam, layout), cam_path)
    return ClipResult(video, gt_path, cam_path, n_frames, len(vehicles))


def _vehicle_gt(a: Actor) -> dict[str, Any]:
    return {"id": a.id, "type": a.cls, "color": a.model.color_name, "plate": a.plate, "plate_kind": a.plate_kind,
            "belt": a.driver.belt if a.driver else None, "phone": a.driver.phone if a.driver else None,
            "passenger": a.passenger is not None, "violations": a.violations, "track": []}


def _advance(actors: dict[int, Actor], plan_of: dict[int, _Plan], h: float) -> None:
    """Move every vehicle toward the camera, keeping a safe gap to the one ahead in its lane."""
    by_lane: dict[int, list[Actor]] = {}
    for aid, a in actors.items():
        by_lane.setdefault(plan_of[aid].lane, []).append(a)
    for lane_actors in by_lane.values():
        lane_actors.sort(key=lambda a: a.y_front)  # nearest to the camera first = leader
        for i, a in enumerate(lane_actors):
            want = plan_of[a.id].speed
            if i > 0:
                lead = lane_actors[i - 1]
                gap = a.y_front - (lead.y_front + lead.model.length)
                safe = 2.0 + 1.2 * a.speed
                if gap < safe:
                    want = min(want, lead.speed * max(0.0, gap / safe))
            a.speed += float(np.clip(want - a.speed, -6 * h, 2.5 * h))
            a.y_front -= a.speed * h
            if math.isnan(a.y_front):
                raise RuntimeError(f"vehicle {a.id} position became NaN")


def benchmark(p: Preset, *, frames: int = 20, seed: int = 1) -> dict[str, float | int | str]:
    """Render `frames` frames of a preset's scene (static traffic snapshot advanced per
    frame) without encoding; returns wall and CPU seconds per frame."""
    import time

    rng = np.random.default_rng([seed, 4242])
    cam = preset_camera(p)
    cond = Conditions(p.light, p.weather)
    light = lighting_for(cond, rng)
    layout = RoadLayout(p.lanes, 3.5, cam.x_m - p.lanes * 1.75)
    t0, c0 = time.perf_counter(), time.process_time()
    site = Site(layout, cond, light, seed)
    bg = site.background(cam)
    imaging = Imaging(cam, cond, light, seed, variants=4)
    t_setup = time.perf_counter() - t0
    near, _far = visible_range(cam)
    actors = []
    for i in range(8 if p.width > 2000 else 14):
        lane = i % p.lanes
        actors.append(make_actor(i + 1, np.random.default_rng([seed, i]), light, x=layout.lane_center(lane),
                                 y_front=near + 2 + (i // p.lanes) * 9.0 + lane * 2.5, speed=13.0))
    t1, c1 = time.perf_counter(), time.process_time()
    for f in range(frames):
        for a in actors:
            a.y_front -= a.speed / 25.0
        frame, _ = compose(bg, cam, actors, light, shutter_s=p.shutter_s)
        imaging.apply(frame, f)
    wall = (time.perf_counter() - t1) / frames
    cpu = (time.process_time() - c1) / frames
    return {"preset": p.name, "size": f"{p.width}x{p.height}", "vehicles": len(actors), "frames": frames,
            "setup_s": round(t_setup, 2), "wall_s_per_frame": round(wall, 3), "cpu_s_per_frame": round(cpu, 3),
            "fps_wall": round(1 / wall, 2), "fps_cpu": round(1 / cpu, 2), "setup_cpu_s": round(c1 - c0, 2)}
