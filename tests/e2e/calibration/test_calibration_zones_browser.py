"""The zones editor in a real headless Chromium: click points, drag one, save, and check the
camera YAML (zones written, other sections untouched); an invalid polygon is refused with a
message naming it. A screenshot goes to tests/artifacts/calibration/zones_page.png."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.camfile import write_camera
from calibration.synthetic import RoadCamera, render_road
from edge.camera import CameraCalibration, RoadPlane, ViolationThreshold, load_camera

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
SIZE = (1920, 1080)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def zones_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    import uvicorn

    from calibration.web.app import create_app

    cam = RoadCamera(6.0, 20.0, 2600.0, SIZE)
    snap = np.asarray(cv2.cvtColor(render_road(cam), cv2.COLOR_GRAY2BGR), np.uint8)
    path = tmp_path / "cam07.camera.yaml"
    road_m = [[-1.875, 12.0], [1.875, 12.0], [-1.875, 30.0], [1.875, 30.0]]
    road_img = cam.project(np.c_[np.asarray(road_m), np.zeros(4)]).tolist()
    write_camera(CameraCalibration(
        camera_id="cam07", image_size=SIZE,
        road_plane=RoadPlane(image_points=road_img, road_points_m=road_m,
                             homography=cam.homography_image_to_road().tolist(), rms_m=0.01),
        thresholds={"phone_use": ViolationThreshold.model_validate({"min_confidence": 0.61, "k": 2, "n": 6})},
    ), path)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(path, snap), host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("zones server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/", path
    server.should_exit = True
    th.join(timeout=10)


def test_zones_page_click_drag_save(zones_server, artifacts_dir: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium not installed")
    from playwright.sync_api import expect, sync_playwright

    url, path = zones_server
    out_dir = artifacts_dir / "calibration"
    out_dir.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", timeout=20000)
            expect(page.locator("#camera-id")).to_have_text("cam07")
            assert page.evaluate("window.zonesEditor.gridLines") > 5  # road-plane grid overlay shown
            box = page.locator("#canvas").bounding_box()
            assert box is not None
            s = box["width"] / SIZE[0]

            def at(x: float, y: float) -> tuple[float, float]:
                return box["x"] + x * s, box["y"] + y * s

            # Capture zone: first click on an empty page starts it.
            capture = [(300, 1050), (1650, 1050), (1150, 420), (760, 420)]
            for x, y in capture:
                page.mouse.click(*at(x, y))
            # Drag the third point 100 px right, 60 px down (in image pixels).
            page.mouse.move(*at(1150, 420))
            page.mouse.down()
            page.mouse.move(*at(1200, 450), steps=5)
            page.mouse.move(*at(1250, 480), steps=5)
            page.mouse.up()
            capture[2] = (1250, 480)
            # A named lane.
            page.fill("#lane-name", "L2")
            page.click("#btn-add-lane")
            lane = [(980, 1050), (1400, 1050), (1060, 500), (960, 500)]
            for x, y in lane:
                page.mouse.click(*at(x, y))
            # An exclusion mask (e.g. a gantry shadow); a stray 4th click is removed by right-click.
            page.click("#btn-add-exclusion")
            excl = [(100, 600), (300, 600), (300, 700)]
            for x, y in [*excl, (500, 300)]:
                page.mouse.click(*at(x, y))
            page.mouse.click(*at(500, 300), button="right")
            n_excl = "window.zonesEditor.zones.find(z => z.kind === 'exclusion').points.length"
            assert page.evaluate(n_excl) == 3
            expect(page.locator("#status")).to_have_text("unsaved changes")
            page.click("#btn-save")
            expect(page.locator("#status")).to_have_class("ok", timeout=10000)
            page.screenshot(path=str(out_dir / "zones_page.png"), full_page=True)

            cal = load_camera(path)
            tol = 1.0 / s + 0.6  # one CSS pixel on the scaled canvas, plus rounding
            assert cal.zones.capture is not None
            assert np.allclose(cal.zones.capture, capture, atol=tol), cal.zones.capture
            assert list(cal.zones.lanes) == ["L2"]
            assert np.allclose(cal.zones.lanes["L2"], lane, atol=tol)
            assert len(cal.zones.exclusion) == 1 and np.allclose(cal.zones.exclusion[0], excl, atol=tol)
            # Other sections survive the save untouched.
            assert cal.road_plane is not None and cal.road_plane.rms_m == 0.01
            assert cal.thresholds["phone_use"].min_confidence == 0.61 and cal.thresholds["phone_use"].k == 2

            # Reload: the page shows what was saved.
            page.reload()
            page.wait_for_selector("body[data-ready='1']")
            expect(page.locator("#zone-list li")).to_have_count(4)  # + the road points of the road plane

            # A self-intersecting lane is refused, named, and the file is left as it was.
            before = path.read_text()
            page.fill("#lane-name", "bad")
            page.click("#btn-add-lane")
            for x, y in [(200, 200), (600, 600), (600, 200), (200, 600)]:
                page.mouse.click(*at(x, y))
            page.click("#btn-save")
            expect(page.locator("#status")).to_have_class("error", timeout=10000)
            expect(page.locator("#status")).to_contain_text("lane bad")
            expect(page.locator("#status")).to_contain_text("crosses")
            assert path.read_text() == before
            page.screenshot(path=str(out_dir / "zones_page_error.png"))
        finally:
            browser.close()


def test_road_points_fit_in_the_page(tmp_path: Path, artifacts_dir: Path) -> None:
    """Click marking corners, type their metres (one typed wrong), fit with RANSAC: the wrong
    one is flagged as an outlier, the road plane is saved and its grid drawn."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium not installed")
    import uvicorn
    from playwright.sync_api import expect, sync_playwright

    from calibration import homography as hg
    from calibration.web.app import create_app

    cam = RoadCamera(6.0, 20.0, 2600.0, SIZE)
    snap = np.asarray(cv2.cvtColor(render_road(cam), cv2.COLOR_GRAY2BGR), np.uint8)
    path = tmp_path / "cam08.camera.yaml"
    write_camera(CameraCalibration(camera_id="cam08", image_size=SIZE), path)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(path, snap), host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.05)
    # Dash ends of the two lane dividers (dashes from Y = 5 m every 15 m, 6 m long) and two
    # points on the edge lines: points on 3+ lines, or RANSAC cannot tell which one is wrong.
    road = [(-1.875, 20.0), (1.875, 20.0), (-1.875, 26.0), (1.875, 26.0), (-1.875, 11.0), (1.875, 11.0),
            (-5.625, 14.0), (5.625, 24.0)]
    px = cam.project(np.c_[np.asarray(road), np.zeros(len(road))])
    typed = [f"{x},{y}" for x, y in road]
    typed[3] = "1.875,32"  # operator typed the wrong dash end
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM), headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
            )
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector("body[data-ready='1']", timeout=20000)
                box = page.locator("#canvas").bounding_box()
                assert box is not None
                s = box["width"] / SIZE[0]
                page.click("#btn-road")
                for u, v in px:
                    page.mouse.click(box["x"] + u * s, box["y"] + v * s)
                inputs = page.locator("#road-list input")
                expect(inputs).to_have_count(len(road))
                for i, t in enumerate(typed):
                    inputs.nth(i).fill(t)
                    inputs.nth(i).dispatch_event("change")
                page.click("#btn-fit-road")
                expect(page.locator("#road-status")).to_have_class("ok", timeout=10000)
                expect(page.locator("#road-list li").nth(3)).to_contain_text("outlier")
                assert page.evaluate("window.zonesEditor.gridLines") > 5
                out_dir = artifacts_dir / "calibration"
                out_dir.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out_dir / "zones_page_road.png"), full_page=True)
            finally:
                browser.close()
    finally:
        server.should_exit = True
        th.join(timeout=10)
    from edge.camera import load_camera

    rp = load_camera(path).road_plane
    assert rp is not None and len(rp.image_points) == len(road) - 1  # the outlier is not kept
    grid = np.array([[x, y] for x in (-3.75, 0.0, 3.75) for y in (11.0, 18.0, 26.0)])
    mapped = hg.apply_homography(rp.homography, cam.project(np.c_[grid, np.zeros(len(grid))]))
    # Clicks land on CSS pixels of a ~0.57x canvas: about +-1 image px, i.e. a few cm here.
    assert np.max(np.linalg.norm(mapped - grid, axis=1)) < 0.2
