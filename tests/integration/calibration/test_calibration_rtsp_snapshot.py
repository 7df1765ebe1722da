"""Zones drawn on a live camera: `calibrate zones --snapshot rtsp://...` grabs a frame from a
real RTSP server (gst-rtsp-server fixture) and sizes the camera YAML from it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from calibration.cli import calibrate
from edge.camera import load_camera

pytestmark = pytest.mark.services


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_zones_from_rtsp_snapshot(tmp_path: Path, rtsp_server_factory) -> None:  # type: ignore[no-untyped-def]
    clip = tmp_path / "cam.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=10",
                    "-t", "3", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "10", str(clip)], check=True)
    server = rtsp_server_factory(clip)
    cam = tmp_path / "live.camera.yaml"
    res = CliRunner().invoke(calibrate, ["zones", "--camera", str(cam), "--snapshot", server.url,
                                         "--capture", "10,350 630,350 400,100 200,100",
                                         "--preview", str(tmp_path / "live.png")])
    assert res.exit_code == 0, res.output
    cal = load_camera(cam)
    assert tuple(cal.image_size) == (640, 360) and cal.camera_id == "live"
    assert (tmp_path / "live.png").stat().st_size > 5000
