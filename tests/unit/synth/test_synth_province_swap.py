"""Province-glyph swap on real plate crops: where it paints, what it leaves, when it refuses."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.synth.plates import PROVINCES, render_plate
from models.synth.province_swap import locate_province, swap_province
from models.train import plate_reader
from models.train.plate_reader_data import REAL_CROPS, Augmenter


def _real_like(text: str = "皖A12345", kind: str = "blue") -> np.ndarray:
    """A rendered plate cut to its glyph band and sized like a plates-cn-crops crop (94x24)."""
    plate = render_plate(text, kind)  # 140 px high: 1 px per mm
    return cv2.resize(plate[18:122, 8:432], (94, 24), interpolation=cv2.INTER_AREA)


def test_province_box_is_where_ga36_puts_the_first_glyph() -> None:
    found = locate_province(_real_like())
    assert found is not None
    x0, y0, x1, y1, _ = found
    # band cut at 8..432 mm: the province glyph is 7.5..52.5 mm of 424, i.e. x 1.7..11.6 of 94
    assert 0 <= x0 <= 3 and 10 <= x1 <= 13, (x0, x1)
    assert y0 <= 3 and y1 >= 21, (y0, y1)


def test_swap_repaints_only_the_province_and_relabels() -> None:
    img = _real_like()
    out, text = swap_province(img, "皖A12345", np.random.default_rng(3)) or (None, "")
    assert out is not None and out.shape == img.shape and out.dtype == np.uint8
    assert text[0] in PROVINCES and text[0] != "皖" and text[1:] == "A12345"
    diff = np.abs(out.astype(int) - img.astype(int)).max(axis=2)
    assert diff[:, :13].mean() > 15  # the glyph area changed
    assert diff[:, 16:].max() == 0  # every other character is the real pixels, untouched


def test_swap_is_deterministic_for_a_seed_and_covers_every_province() -> None:
    img = _real_like()
    a = swap_province(img, "皖A12345", np.random.default_rng(7))
    b = swap_province(img, "皖A12345", np.random.default_rng(7))
    assert a is not None and b is not None and a[1] == b[1] and np.array_equal(a[0], b[0])
    rng = np.random.default_rng(0)
    seen = {r[1][0] for r in (swap_province(img, "皖A12345", rng) for _ in range(400)) if r}
    assert seen == set(PROVINCES) - {"皖"}


@pytest.mark.parametrize("img, text", [
    (_real_like("皖A12345", "yellow"), "皖A12345"),      # dark glyphs on a light ground
    (np.full((24, 94, 3), (160, 60, 20), np.uint8), "皖A12345"),  # no glyphs at all
    (cv2.resize(_real_like(), (48, 24)), "皖A12345"),   # two-row aspect
    (_real_like(), "A12345"),                           # no province to replace
])
def test_unswappable_crops_are_left_alone(img: np.ndarray, text: str) -> None:
    assert swap_province(img, text, np.random.default_rng(0)) is None


def test_locate_refuses_a_grey_image_by_name() -> None:
    with pytest.raises(ValueError, match="expected a BGR crop"):
        locate_province(np.zeros((24, 94), np.uint8))


def test_batches_swap_real_crops_only() -> None:
    real = plate_reader._Pool(f"{REAL_CROPS}:train")
    synth = plate_reader._Pool("synth:x")
    for _ in range(8):
        real.add(_real_like(), "皖A12345", False, "r.png")
        synth.add(_real_like(), "皖A12345", False, "s.png")
    rng = np.random.default_rng(1)
    aug = {p.name: Augmenter(rng) for p in (real, synth)}
    _, texts = plate_reader._make_batch([(real, 1.0)], aug, rng, 32, province_swap=1.0)
    assert all(t[0] != "皖" and t[1:] == "A12345" for t in texts)
    _, texts = plate_reader._make_batch([(synth, 1.0)], aug, rng, 32, province_swap=1.0)
    assert set(texts) == {"皖A12345"}
    _, texts = plate_reader._make_batch([(real, 1.0)], aug, rng, 32, province_swap=0.0)
    assert set(texts) == {"皖A12345"}
