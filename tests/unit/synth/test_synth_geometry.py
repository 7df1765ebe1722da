"""Camera model and scene labels checked against the rendered geometry."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.synth.cabin import Occupant
from models.synth.camera import Camera, enforcement_camera
from models.synth.scene import Conditions, Imaging, RoadLayout, Site, compose, lighting_for, make_actor
from models.synth.shots import visible_range


def test_homography_matches_projection_and_inverts() -> None:
    cam = enforcement_camera(4096, 2160, height_m=6.5, aim_distance_m=24, x_m=0.7, yaw_deg=2.0)
    road = np.array([[-3.0, 15.0], [2.0, 20.0], [4.5, 40.0], [-1.0, 60.0]])
    uv, z = cam.project(np.c_[road, np.zeros(4)])
    assert (z > 0).all()
    H = cam.homography_road_to_image()
    q = np.c_[road, np.ones(4)] @ H.T
    np.testing.assert_allclose(q[:, :2] / q[:, 2:3], uv, atol=1e-6)
    np.testing.assert_allclose(cam.image_to_road(uv), road, atol=1e-6)
    # The optical axis meets the road at the aim distance.
    assert cam.ground_distance_at_row(cam.height / 2) == pytest.approx(np.hypot(24, 0) / np.cos(np.radians(2.0)),
                                                                         rel=0.02)


def test_crop_and_scale_keep_geometry() -> None:
    cam = enforcement_camera()
    p = np.array([[1.0, 25.0, 1.2]])
    uv, _ = cam.project(p)
    c = cam.crop(1000, 500, 800, 600)
    uvc, _ = c.project(p)
    np.testing.assert_allclose(uvc, uv - [1000, 500], atol=1e-9)
    s = cam.scaled(0.3125)
    uvs, _ = s.project(p)
    np.testing.assert_allclose(uvs, uv * 0.3125, atol=1e-6)


def test_horizon_kept_out_and_visible_range() -> None:
    cam = enforcement_camera(4096, 2160, height_m=5.0, aim_distance_m=40.0)
    d = cam.R.T @ np.array([0.0, (0 - cam.principal[1]) / cam.focal_px, 1.0])
    assert d[2] < 0  # the top row still looks down at the road
    near, far = visible_range(cam)
    assert 5 < near < far
    with pytest.raises(ValueError, match="tilt"):
        Camera(100, 100, 100.0, tilt_deg=0.0)


def _scene(seed: int, driver: Occupant, *, light: str = "day", passenger: Occupant | None = None,
           plate_kind: str = "blue"):  # type: ignore[no-untyped-def]
    cam = enforcement_camera(4096, 2160)
    rng = np.random.default_rng(seed)
    cond = Conditions(light, "clear")
    lt = lighting_for(cond, rng)
    site = Site(RoadLayout(2, 3.5, -3.5), cond, lt, seed)
    a = make_actor(1, rng, lt, subtype="sedan", driver=driver, passenger=passenger or False, x=1.75,
                   y_front=20.0, plate_kind=plate_kind)
    uv, _ = cam.project(np.concatenate([f.pts for f in a.model.faces]) + np.array([a.x, a.y_front, 0]))
    x0, y0 = np.floor(uv.min(0)).astype(int) - 40
    x1, y1 = np.ceil(uv.max(0)).astype(int) + 40
    crop = cam.crop(int(x0), int(y0), int(x1 - x0), int(y1 - y0))
    frame, labels = compose(site.background(crop), crop, [a], lt)
    return crop, a, frame, labels


@pytest.mark.parametrize(("belt", "phone"), [("worn", "none"), ("none", "ear"), ("under_arm", "hand"),
                                             ("worn", "wheel")])
def test_labels_match_rendered_geometry(belt: str, phone: str) -> None:
    crop, a, frame, labels = _scene(3, Occupant(belt, phone))
    assert len(labels) == 1
    lab = labels[0]
    H, W = frame.shape[:2]
    # Vehicle box: inside the frame and tight on the painted sprite (alpha) mask.
    sp = lab.sprite
    ys, xs = np.nonzero(sp.alpha >= 128)
    assert lab.box == (xs.min() + sp.x0, ys.min() + sp.y0, xs.max() + 1 + sp.x0, ys.max() + 1 + sp.y0)
    assert 0 <= lab.box[0] < lab.box[2] <= W and 0 <= lab.box[1] < lab.box[3] <= H
    # ... and agrees with the projection of the 3D model (independent of the painter).
    uv, _ = crop.project(np.concatenate([f.pts for f in a.model.faces]) + np.array([a.x, a.y_front, 0]))
    assert abs(lab.box[0] - uv[:, 0].min()) < 3 and abs(lab.box[2] - uv[:, 0].max()) < 3
    assert abs(lab.box[1] - uv[:, 1].min()) < 3 and abs(lab.box[3] - uv[:, 1].max()) < 3
    assert lab.visible_fraction > 0.98
    # Plate box: on the projected plate quad, filled with blue sheeting and white characters.
    assert lab.plate_box is not None
    pq, _ = crop.project(a.model.plate + np.array([a.x, a.y_front, 0]))
    assert abs(lab.plate_box[0] - pq[:, 0].min()) < 2 and abs(lab.plate_box[2] - pq[:, 0].max()) < 2
    x0, y0, x1, y1 = lab.plate_box
    roi = frame[y0:y1, x0:x1]
    hsv = cv2.cvtColor(roi, cv2.COLOR_BGR2HSV)
    blue = ((hsv[..., 0] > 95) & (hsv[..., 0] < 130) & (hsv[..., 1] > 120)).mean()
    white = ((roi.min(axis=2) > 150) & (hsv[..., 1] < 60)).mean()
    assert blue > 0.4, blue
    assert white > 0.08, white  # characters
    # Windshield inside the vehicle; driver on the image-right half of the windshield.
    ws = lab.windshield_box
    assert ws is not None and lab.box[0] <= ws[0] < ws[2] <= lab.box[2]
    assert lab.driver_box is not None
    assert (lab.driver_box[0] + lab.driver_box[2]) / 2 > (ws[0] + ws[2]) / 2
    occ = lab.occupant_boxes
    assert len(occ["driver"]) == 1 and occ["passenger"] == []
    assert len(occ["face"]) == 1
    f = occ["face"][0]
    assert lab.driver_box[0] <= f[0] and f[2] <= lab.driver_box[2]
    # Ground truth: only a correctly worn strap is a 'seatbelt'; phones are boxed when held.
    assert (len(occ["seatbelt"]) == 1) == (belt == "worn")
    assert (len(occ["phone"]) == 1) == (phone != "none")
    expected = (["no_seatbelt"] if belt != "worn" else []) + (["phone_use"] if phone != "none" else [])
    assert a.violations == expected
    if belt == "worn":
        b = occ["seatbelt"][0]
        # The strap crosses the driver's chest from the image-right shoulder down-left.
        assert b[3] - b[1] > 0.2 * (ws[3] - ws[1]) and b[2] > (ws[0] + ws[2]) / 2
        strap = frame[b[1]:b[3], b[0]:b[2]].astype(int)
        assert strap.size > 0


def test_passenger_on_image_left() -> None:
    _, _, _, labels = _scene(5, Occupant("worn", "none"), passenger=Occupant("worn", "none"))
    lab = labels[0]
    ws = lab.windshield_box
    assert ws is not None and len(lab.occupant_boxes["passenger"]) == 1
    p = lab.occupant_boxes["passenger"][0]
    assert (p[0] + p[2]) / 2 < (ws[0] + ws[2]) / 2
    assert len(lab.occupant_boxes["seatbelt"]) == 2 and len(lab.occupant_boxes["face"]) == 2


def test_occlusion_reduces_visible_fraction() -> None:
    cam = enforcement_camera(1280, 675)
    rng = np.random.default_rng(9)
    cond = Conditions("day", "clear")
    lt = lighting_for(cond, rng)
    far = make_actor(1, rng, lt, subtype="sedan", x=0.0, y_front=30.0)
    near = make_actor(2, rng, lt, subtype="bus", x=1.6, y_front=22.0)
    site = Site(RoadLayout(1, 3.5, -1.75), cond, lt, 1)
    bg = site.background(cam)
    _, alone = compose(bg, cam, [far], lt)
    _, both = compose(bg, cam, [far, near], lt)
    by = {lb.id: lb for lb in both}
    assert alone[0].visible_fraction > 0.98
    assert by[2].visible_fraction > 0.98
    # The bus hides the sedan's right part: its box shrinks to the visible part, left edge kept.
    assert 0.4 < by[1].visible_fraction < 0.9
    assert by[1].box[0] == alone[0].box[0] and by[1].box[2] < alone[0].box[2]
    assert by[1].box[2] <= by[2].box[0] + 30  # visible part ends where the bus begins


def test_render_deterministic_and_ir_monochrome() -> None:
    crop, _, f1, l1 = _scene(11, Occupant("none", "ear"), light="night")
    _, _, f2, l2 = _scene(11, Occupant("none", "ear"), light="night")
    assert np.array_equal(f1, f2)
    assert [(lb.box, lb.plate_box, lb.driver_box) for lb in l1] == [(lb.box, lb.plate_box, lb.driver_box) for lb in l2]
    cond = Conditions("night", "clear")
    out = Imaging(crop, cond, lighting_for(cond, np.random.default_rng(0)), 0, variants=1).apply(f1, 0)
    assert np.array_equal(out[..., 0], out[..., 2])  # the NIR sensor delivers monochrome frames


@pytest.mark.parametrize("hands", ["face", "cup"])
def test_distractor_hands_are_drawn_but_never_labelled_phone(hands: str) -> None:
    """A hand at the face or a cup is a hard negative: pixels change, the labels do not."""
    _, a0, f0, _ = _scene(21, Occupant("worn", "none"))
    _, a1, f1, l1 = _scene(21, Occupant("worn", "none", hands))
    assert l1[0].occupant_boxes["phone"] == [] and a1.violations == a0.violations == []
    assert l1[0].driver_box is not None
    x0, y0, x1, y1 = l1[0].windshield_box or l1[0].box
    assert np.abs(f1[y0:y1, x0:x1].astype(int) - f0[y0:y1, x0:x1].astype(int)).mean() > 0.5
    with pytest.raises(ValueError, match="hands"):
        _scene(21, Occupant("worn", "none", "wave"))
