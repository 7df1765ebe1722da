"""Dataset writers, clip + ground truth + camera.yaml, and contact sheets."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import yaml

from edge.camera import load_camera
from models.synth.cabin import Occupant
from models.synth.contact import write_contact_sheet
from models.synth.datasets import OCCUPANT_CLASSES, RenderOptions, occupant_balance, write_dataset
from models.synth.scene import Balance, draw_driver
from models.synth.vehicles import VEHICLE_CLASSES
from models.synth.video import Preset, render_clip


def _read_labels(root: Path) -> dict[str, list[list[float]]]:
    out = {}
    for p in sorted((root / "labels").rglob("*.txt")):
        out[p.stem] = [[float(v) for v in ln.split()] for ln in p.read_text().splitlines() if ln.strip()]
    return out


def test_vehicles_dataset_yolo_and_deterministic(tmp_path: Path) -> None:
    a = write_dataset("vehicles", tmp_path / "a", 3, seed=7, val_fraction=0.0)
    data = yaml.safe_load(a.read_text())
    assert Path(data["path"]).is_absolute() and data["names"][5] == "windshield"
    assert list(data["names"].values()) == list(VEHICLE_CLASSES)
    labels = _read_labels(tmp_path / "a")
    assert len(labels) == 3 and sum(len(v) for v in labels.values()) > 0
    for rows in labels.values():
        for c, x, _y, w, h in rows:
            assert 0 <= c < len(VEHICLE_CLASSES) and c == int(c)
            assert 0 < w <= 1 and 0 < h <= 1 and x - w / 2 + 1e-6 >= 0 and x + w / 2 <= 1 + 1e-6
    img = cv2.imread(str(next((tmp_path / "a" / "images" / "train").glob("*.jpg"))))
    assert img is not None and img.shape[1] == 1280
    write_dataset("vehicles", tmp_path / "b", 3, seed=7, val_fraction=0.0)
    assert labels == _read_labels(tmp_path / "b")
    man = json.loads((tmp_path / "a" / "manifest.json").read_text())
    man_b = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert man["files_sha256"] == man_b["files_sha256"]


def test_occupants_dataset_driver_right_of_passenger(tmp_path: Path) -> None:
    write_dataset("occupants", tmp_path, 4, seed=3, val_fraction=0.0)
    labels = _read_labels(tmp_path)
    assert len(labels) == 4
    for rows in labels.values():
        cls = [int(r[0]) for r in rows]
        assert cls.count(OCCUPANT_CLASSES.index("driver")) == 1
        drv = next(r for r in rows if r[0] == 0)
        assert drv[1] > 0.5  # driver on the image-right half of the windshield crop
        for r in rows:
            if r[0] == OCCUPANT_CLASSES.index("passenger"):
                assert r[1] < drv[1]


def test_plate_text_dataset_via_dispatch(tmp_path: Path) -> None:
    p = write_dataset("plate_text", tmp_path, 5, seed=1)
    assert p.name == "labels.csv" and len(p.read_text(encoding="utf-8").splitlines()) == 6


def test_scene_plate_text_crops_match_rendered_plates(tmp_path: Path) -> None:
    import csv

    from models.synth.plates import validate_plate_text

    p = write_dataset("plate_text_scene", tmp_path, 4, seed=2)
    rows = list(csv.DictReader(p.open(encoding="utf-8")))
    assert len(rows) == 4
    for r in rows:
        validate_plate_text(r["plate"], r["kind"])
        img = cv2.imread(str(tmp_path / r["file"]))
        assert img is not None and img.shape[1] >= 24
        # The crop is the plate: dominated by its sheeting colour (day renders are colour).
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        hue = {"blue": (95, 130), "yellow": (12, 38), "green": (35, 90)}.get(r["kind"])
        if hue is not None and hsv[..., 1].mean() > 60:
            frac = ((hsv[..., 0] >= hue[0]) & (hsv[..., 0] <= hue[1]) & (hsv[..., 1] > 60)).mean()
            assert frac > 0.3, (r, frac)


def test_clip_groundtruth_and_camera_yaml(tmp_path: Path) -> None:
    pre = Preset("tiny", 640, 338, "day", "clear", lanes=2, crf=35, min_violators=1)
    res = render_clip(pre, tmp_path, seconds=0.8, fps=10, seed=2)
    gt = json.loads(res.groundtruth.read_text(encoding="utf-8"))
    assert gt["schema"] == "roadeye-groundtruth/1" and gt["video"] == "tiny.mp4"
    assert (gt["width"], gt["height"], gt["frames"], gt["fps"]) == (640, 338, 8, 10.0)
    assert set(gt["camera"]) == {"height_m", "tilt_deg", "focal_px", "homography_image_to_road"}
    with av.open(str(res.video)) as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    assert len(frames) == 8 and frames[0].shape == (338, 640, 3)
    assert gt["vehicles"], "no vehicle in view"
    for v in gt["vehicles"]:
        assert set(v) == {"id", "type", "color", "plate", "plate_kind", "belt", "phone", "passenger",
                          "violations", "track"}
        exp = []
        if v["belt"] not in (None, "worn"):
            exp.append("no_seatbelt")
        if v["phone"] not in (None, "none"):
            exp.append("phone_use")
        assert v["violations"] == exp
        for t in v["track"]:
            x0, y0, x1, y1 = t["box"]
            assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 338 and 0 <= t["frame"] < 8
            for k in ("plate_box", "windshield_box", "driver_box"):
                if t[k] is not None:
                    bx = t[k]
                    assert x0 <= bx[0] < bx[2] <= x1 and y0 <= bx[1] < bx[3] <= y1
    cal = load_camera(res.camera_yaml)
    assert tuple(cal.image_size) == (640, 338) and cal.zones.capture is not None
    assert cal.road_plane is not None
    # The road plane maps the capture polygon back to road metres consistently with the camera.
    H = np.array(gt["camera"]["homography_image_to_road"])
    pts = np.array(cal.road_plane.image_points)
    q = np.c_[pts, np.ones(len(pts))] @ H.T
    np.testing.assert_allclose(q[:, :2] / q[:, 2:3], np.array(cal.road_plane.road_points_m), atol=1e-6)


def test_contact_sheet_png(tmp_path: Path) -> None:
    p = write_contact_sheet("plates", tmp_path / "s.png", n=2, seed=1, tile=200)
    img = cv2.imread(str(p))
    assert img is not None and img.shape[1] >= 400 and p.stat().st_size < 1_500_000


def test_distractor_share_draws_hands_only_for_phone_free_drivers() -> None:
    assert occupant_balance(None, 0.0).hands is None  # the default draw: existing seeds' images unchanged
    bal = occupant_balance(0.5, 1.0)
    assert bal.hands == {"default": 0.0, "face": 0.5, "cup": 0.5}
    rng = np.random.default_rng(3)
    drivers = [draw_driver(rng, bal) for _ in range(200)]
    assert {d.hands for d in drivers if d.phone != "none"} == {"default"}
    assert {d.hands for d in drivers if d.phone == "none"} == {"face", "cup"}
    # no hands table, no extra draw: the same stream as before the option existed
    r1, r2 = np.random.default_rng(4), np.random.default_rng(4)
    plain = Balance()
    expected = []
    for _ in range(20):
        belt = plain.draw(r2, plain.belt)
        expected.append(Occupant(belt, plain.draw(r2, plain.phone)))
    assert [draw_driver(r1, plain) for _ in range(20)] == expected
    with pytest.raises(ValueError, match="distractor share"):
        RenderOptions(distractor_share=1.5)
    assert RenderOptions(distractor_share=0.25).manifest()["distractor_share"] == 0.25
