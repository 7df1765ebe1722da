"""The whole pipeline on synthetic scenes with colour-keyed detector doubles: cascade
arithmetic, tracking, rules, evidence (blurred passengers, hashes, signature), one event per
vehicle per violation, deterministic replays."""

from __future__ import annotations

import hashlib
import itertools

import cv2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.camera import CameraCalibration, ViolationThreshold, Zones
from edge.cascade import Cascade
from edge.config import config_hash
from edge.event import EventMessage, EvidenceKind, ModelRef
from edge.eventbuild import DeviceIdentity
from edge.evidence import blur_regions
from edge.pipeline import CameraState, Pipeline, new_tracker
from tests.unit.edge.edge_doubles import (
    FACE,
    CarSpec,
    GrayPlateDetector,
    GrayPlateReader,
    occupants_detector,
    scene_frames,
    vehicles_detector,
)

KEY = Ed25519PrivateKey.generate()
REFS = [ModelRef(name="vehicles", version="test", sha256="a" * 64)]


def make(cal: CameraCalibration | None = None, reader: GrayPlateReader | None = None,
         seed: str | None = "clip") -> tuple[Pipeline, list[EventMessage], Cascade]:
    cas = Cascade(vehicles_detector(), occupants_detector(), GrayPlateDetector(), reader or GrayPlateReader())
    cal = cal or CameraCalibration(camera_id="cam1", image_size=(1920, 1080))
    cams = {"cam1": CameraState(cal, config_hash(cal), new_tracker(5.0))}
    out: list[EventMessage] = []
    p = Pipeline(cas, cams, DeviceIdentity("box-01", "site-1", KEY), REFS, out.append, event_id_seed=seed)
    return p, out, cas


def run(p: Pipeline, frames: list) -> None:  # type: ignore[type-arg]
    for f in frames:
        p.process([f])
    p.flush()


# two cars on separate lanes that never overlap
BELTLESS = CarSpec(100, 80, vx=45, belt=False, plate_gray=250)
PHONER = CarSpec(1400, 620, vx=-40, belt=True, phone=True, plate_gray=230)
COMPLIANT = CarSpec(100, 620, vx=0, belt=True, plate_gray=210)


def test_one_event_per_vehicle_per_violation_with_plate_and_signature() -> None:
    p, out, cas = make()
    run(p, scene_frames([BELTLESS, PHONER], 12))
    got = sorted((m.event.violation.value, m.event.plate.text if m.event.plate else None) for m in out)
    assert got == [("no_seatbelt", "皖A12345"), ("phone_use", "皖B67890")]
    for m in out:
        ev = m.event
        assert ev.verify(KEY.public_key())
        assert ev.signature is not None and ev.signature.key_id == "box-01"
        assert {e.kind for e in ev.evidence} == {EvidenceKind.OVERVIEW, EvidenceKind.DRIVER_CROP,
                                                  EvidenceKind.PLATE_CROP}
        blobs = m.blobs()  # checks every size and SHA-256
        assert all(hashlib.sha256(b).hexdigest() == h for h, b in blobs.items())
        assert ev.frames_agreed >= 3 and ev.frames_observed == 12
        assert ev.models == REFS
        # round trip through the wire format
        assert EventMessage.from_bytes(m.to_bytes()).event == ev
    # crops were batched: one occupants call per tick, covering both cars
    assert cas.occupants is not None
    assert cas.occupants.images_seen == 24 and cas.occupants.calls == 12  # type: ignore[attr-defined]


def test_compliant_driver_and_passenger_phone_give_no_event() -> None:
    p, out, _ = make()
    # the phone is drawn on the DRIVER side only; a compliant car with a passenger gives nothing
    run(p, scene_frames([COMPLIANT], 10))
    assert out == []


def test_event_boxes_and_crops_are_in_full_resolution_frame_pixels() -> None:
    p, out, _ = make()
    frames = scene_frames([BELTLESS], 8)
    run(p, frames)
    (m,) = out
    ev = m.event
    t = ev.frame_seq
    x1 = BELTLESS.x + BELTLESS.vx * t
    assert ev.vehicle.box.x1 == pytest.approx(x1, abs=4)
    assert ev.vehicle.box.y1 == pytest.approx(BELTLESS.y, abs=4)
    assert ev.vehicle.box.x2 - ev.vehicle.box.x1 == pytest.approx(BELTLESS.w, abs=6)
    drv = next(e for e in ev.evidence if e.kind == EvidenceKind.DRIVER_CROP)
    assert 80 < drv.height < 200  # driver is ~120 px tall at full resolution, +15 % margin


def test_passengers_are_blurred_in_the_overview() -> None:
    p, out, _ = make()
    run(p, scene_frames([BELTLESS], 8))
    (m,) = out
    ov = next(e for e in m.event.evidence if e.kind == EvidenceKind.OVERVIEW)
    img = cv2.imdecode(np.frombuffer(m.blobs()[ov.sha256], np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    original = scene_frames([BELTLESS], m.event.frame_seq + 1)[-1].image
    assert original is not None
    lo, hi = np.array(FACE) - 12, np.array(FACE) + 12
    # the passenger's face is a crisp block in the original and smeared away in the evidence
    orig_px = int((cv2.inRange(original, lo, hi) > 0).sum())
    ev_px = int((cv2.inRange(img, lo, hi) > 0).sum())
    assert orig_px > 500
    assert ev_px < orig_px * 0.3
    # the driver is kept: it is the evidence
    dlo, dhi = np.array((40, 180, 40)) - 12, np.array((40, 180, 40)) + 12
    assert (cv2.inRange(img, dlo, dhi) > 0).sum() > 0.7 * (cv2.inRange(original, dlo, dhi) > 0).sum()


def test_replay_is_deterministic_including_event_ids() -> None:
    frames = scene_frames([BELTLESS, PHONER], 10)
    a, out_a, _ = make()
    b, out_b, _ = make()
    run(a, frames)
    run(b, frames)
    assert [m.event.event_id for m in out_a] == [m.event.event_id for m in out_b]
    assert [m.event.evidence for m in out_a] == [m.event.evidence for m in out_b]


def test_vehicle_outside_capture_zone_gives_no_event() -> None:
    # lower half only; BELTLESS drives at y 80-380
    zone = [[0.0, 500.0], [1920.0, 500.0], [1920.0, 1080.0], [0.0, 1080.0]]
    cal = CameraCalibration(camera_id="cam1", image_size=(1920, 1080), zones=Zones(capture=zone))
    p, out, _ = make(cal)
    run(p, scene_frames([BELTLESS, PHONER], 10))
    assert [m.event.violation.value for m in out] == ["phone_use"]


def test_per_camera_thresholds_apply() -> None:
    cal = CameraCalibration(camera_id="cam1", image_size=(1920, 1080),
                            thresholds={"no_seatbelt": ViolationThreshold(k=3, n=8, min_driver_px=200)})
    p, out, cas = make(cal)
    run(p, scene_frames([BELTLESS], 8))
    assert out == []  # driver is ~120 px: too small for this camera
    assert cas.occupants.images_seen == 8  # type: ignore[union-attr]  # phone_use still counts at 48 px


def test_windshields_too_low_for_any_rule_are_not_cropped() -> None:
    big = ViolationThreshold(k=3, n=8, min_driver_px=400)
    cal = CameraCalibration(camera_id="cam1", image_size=(1920, 1080),
                            thresholds={"no_seatbelt": big, "phone_use": big})
    p, out, cas = make(cal)
    run(p, scene_frames([BELTLESS, PHONER], 8))
    assert out == []
    assert cas.occupants.images_seen == 0 and p.crops_skipped["occupants"] == 16  # type: ignore[union-attr]


def test_plate_voted_across_frames_despite_misreads() -> None:
    reader = GrayPlateReader(garble={2: 3, 4: 5, 6: 6})
    p, out, _ = make(reader=reader)
    run(p, scene_frames([BELTLESS], 10))
    (m,) = out
    assert m.event.plate is not None
    assert m.event.plate.text == "皖A12345"
    # reads 1, 3, 5 agree (settled), frames 6-8 skip the plate, frame 9 refreshes it (misread 6)
    assert m.event.plate.frames == reader.calls == 6


def test_two_cameras_in_one_tick_are_batched() -> None:
    cas = Cascade(vehicles_detector(), occupants_detector(), GrayPlateDetector(), GrayPlateReader())
    cams = {}
    for cid in ("camA", "camB"):
        cal = CameraCalibration(camera_id=cid, image_size=(1920, 1080))
        cams[cid] = CameraState(cal, config_hash(cal), new_tracker(5.0))
    out: list[EventMessage] = []
    p = Pipeline(cas, cams, DeviceIdentity("box-01", "site-1"), REFS, out.append)
    fa = scene_frames([BELTLESS], 8, camera_id="camA")
    fb = scene_frames([PHONER], 8, camera_id="camB")
    for a, b in itertools.zip_longest(fa, fb):
        p.process([a, b])
    p.flush()
    assert sorted((m.event.camera_id, m.event.violation.value) for m in out) == [
        ("camA", "no_seatbelt"), ("camB", "phone_use")]
    assert cas.vehicles.calls == 8  # type: ignore[attr-defined]  # one batched call per tick
    assert all(m.event.signature is None for m in out)  # no key configured: unsigned, said in the log


def test_blur_destroys_detail() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)
    out = blur_regions(img, [np.array([50, 50, 150, 150], np.float32)])
    lap = lambda a: float(cv2.Laplacian(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())  # noqa: E731
    assert lap(out[60:140, 60:140]) < 0.01 * lap(img[60:140, 60:140])
    assert np.array_equal(out[:, 160:], img[:, 160:])  # outside untouched
    assert not np.array_equal(out, img)


def test_a_settled_plate_is_only_refreshed_and_far_or_unconfirmed_vehicles_get_no_crops() -> None:
    """Crops are planned per track: after 3 confident identical reads the plate is looked for
    every 4th frame only (for a nearer evidence crop); the event keeps the right plate."""
    reader = GrayPlateReader()
    p, out, cas = make(reader=reader)
    n = 16
    run(p, scene_frames([BELTLESS], n))
    assert [(m.event.violation.value, m.event.plate.text if m.event.plate else None) for m in out] == \
        [("no_seatbelt", "皖A12345")]
    plates = cas.plates
    assert plates is not None
    # frames 1-3 settle it, then 1 in 4 (frames 7, 11, 15): 6 plate detections instead of 16
    assert reader.calls == 6 and p.crops_skipped["plate"] == n - 6
    assert cas.occupants.images_seen == n  # type: ignore[union-attr]


def test_plate_refresh_every_frame_when_reads_disagree() -> None:
    reader = GrayPlateReader(garble={2: 3, 3: 4})  # reads 2 and 3 differ: settles only at read 5
    p, out, _ = make(reader=reader)
    run(p, scene_frames([BELTLESS], 9))
    assert out and out[0].event.plate is not None and out[0].event.plate.text == "皖A12345"
    assert reader.calls == 5 + 1  # 5 to settle (3 agreeing), then the 4th frame after (frame 9)
