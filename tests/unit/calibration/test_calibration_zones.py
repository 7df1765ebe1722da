"""Zone parsing, validation (named errors), edge queries and the CLI flags."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from calibration.cli import calibrate
from calibration.zones import (
    ZoneError,
    in_capture,
    lane_at,
    parse_points,
    validate_polygon,
    zones_from_json,
)
from edge.camera import Zones, load_camera

SIZE = (1920, 1080)


def test_parse_points() -> None:
    assert parse_points("1,2 3.5,4;5,6") == [[1, 2], [3.5, 4], [5, 6]]
    with pytest.raises(ZoneError, match=r"'3' is not 'x,y'"):
        parse_points("1,2 3")
    with pytest.raises(ZoneError, match="non-numeric"):
        parse_points("a,2 3,4 5,6")


@pytest.mark.parametrize(
    ("poly", "msg"),
    [
        ([[0, 0], [10, 10]], "at least 3 points"),
        ([[0, 0], [2000, 0], [0, 500]], r"point\(s\) \[2\] lie outside the 1920x1080"),
        ([[0, 0], [100, 100], [100, 0], [0, 100]], "edge 1-2 crosses edge 3-4"),
        ([[0, 0], [50, 50], [100, 100]], "no area"),
        ([[0, 0], [0, 0], [100, 100], [0, 100]], "points 1 and 2 are the same"),
    ],
)
def test_invalid_polygons_are_named(poly, msg) -> None:
    with pytest.raises(ZoneError, match=msg):
        validate_polygon(poly, SIZE, "capture")


def test_concave_polygon_is_valid_and_queries_work() -> None:
    l_shape = [[0.0, 0.0], [200.0, 0.0], [200.0, 100.0], [100.0, 100.0], [100.0, 200.0], [0.0, 200.0]]
    assert validate_polygon(l_shape, SIZE, "lane A") == [[float(x), float(y)] for x, y in l_shape]
    z = Zones.model_validate({"capture": l_shape, "lanes": {"A": [[0, 0], [100, 0], [100, 200], [0, 200]]},
                              "exclusion": [[[0, 0], [30, 0], [30, 30], [0, 30]]]})
    assert in_capture(z, (50, 150)) and not in_capture(z, (150, 150))  # the notch
    assert not in_capture(z, (10, 10))  # excluded
    assert lane_at(z, (50, 50)) == "A" and lane_at(z, (150, 50)) is None
    assert in_capture(Zones(), (5000, 5000))  # no capture zone: whole frame


def test_zones_from_json_rejects_bad_shapes() -> None:
    with pytest.raises(ZoneError, match="unknown key"):
        zones_from_json({"capture": None, "lanez": {}}, SIZE)
    with pytest.raises(ZoneError, match=r"lane L1: expected \[\[x, y\]"):
        zones_from_json({"lanes": {"L1": [[1, 2, 3]]}}, SIZE)
    with pytest.raises(ZoneError, match="lane name"):
        zones_from_json({"lanes": {"bad name!": [[0, 0], [10, 0], [0, 10]]}}, SIZE)


def test_cli_sets_zones_from_flags_and_snapshot_video(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    wr = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), 10, (640, 360))
    for i in range(5):
        wr.write(np.full((360, 640, 3), 40 * i, np.uint8))
    wr.release()
    cam = tmp_path / "north.camera.yaml"
    r = CliRunner()
    res = r.invoke(calibrate, ["zones", "--camera", str(cam), "--snapshot", str(video),
                               "--capture", "10,350 630,350 400,100 200,100",
                               "--lane", "L1=10,350 320,350 300,100 200,100",
                               "--lane", "L2=320,350 630,350 400,100 300,100",
                               "--exclude", "0,0 50,0 50,50", "--preview", str(tmp_path / "p.png")])
    assert res.exit_code == 0, res.output
    cal = load_camera(cam)
    assert cal.camera_id == "north" and tuple(cal.image_size) == (640, 360)
    assert sorted(cal.zones.lanes) == ["L1", "L2"] and len(cal.zones.exclusion) == 1
    assert (tmp_path / "p.png").stat().st_size > 1000
    # Bad input: nothing written, the error names the zone.
    before = cam.read_text()
    res = r.invoke(calibrate, ["zones", "--camera", str(cam), "--lane", "L3=10,10 700,10 10,300"])
    assert res.exit_code == 1 and "lane L3" in res.output and "outside the 640x360" in res.output
    assert cam.read_text() == before
    res = r.invoke(calibrate, ["zones", "--camera", str(cam), "--remove-lane", "L1", "--clear-exclusions"])
    assert res.exit_code == 0, res.output
    cal = load_camera(cam)
    assert sorted(cal.zones.lanes) == ["L2"] and cal.zones.exclusion == [] and cal.zones.capture is not None
    # A snapshot at another resolution is refused rather than silently mixing pixel grids.
    img = tmp_path / "big.png"
    cv2.imwrite(str(img), np.zeros((720, 1280, 3), np.uint8))
    res = r.invoke(calibrate, ["zones", "--camera", str(cam), "--snapshot", str(img), "--capture", "0,0 10,0 0,10"])
    assert res.exit_code == 1 and "640x360" in res.output and "1280x720" in res.output
