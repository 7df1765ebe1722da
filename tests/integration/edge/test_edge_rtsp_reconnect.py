"""A live RTSP camera that drops and comes back: the source reconnects by itself."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge.sources import LiveSource
from tests.services import make_test_clip

pytestmark = pytest.mark.services


def wait(cond, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("backend", ["opencv", pytest.param("pyav", marks=pytest.mark.slow),
                                     pytest.param("ffmpeg", marks=pytest.mark.slow)])
def test_rtsp_source_reconnects(rtsp_server_factory, tmp_path: Path, backend: str) -> None:  # type: ignore[no-untyped-def]
    clip = make_test_clip(tmp_path / "clip.mp4", seconds=4, fps=10)
    server = rtsp_server_factory(clip, loops=15)
    src = LiveSource("cam1", server.url, analysis_fps=5, backend=backend, open_timeout_s=5, read_timeout_s=2,
                     backoff_initial_s=0.2, backoff_max_s=1.0)
    src.start()
    try:
        assert wait(lambda: src.frames_in >= 10 and src.connected, 30), src.last_error
        f = src.latest(timeout=2)
        assert f is not None and f.image is not None and f.image.shape == (240, 320, 3)
        server.stop()
        assert wait(lambda: not src.connected, 20), "stream loss not noticed"
        before = src.frames_in
        time.sleep(1.0)
        assert src.connect_failures >= 1  # it keeps trying while the camera is away
        server.start()
        assert wait(lambda: src.reconnects >= 1 and src.frames_in >= before + 10, 40), src.last_error
        assert src.connected
        g = src.latest(timeout=2)
        assert g is not None and g.seq > f.seq
    finally:
        src.stop()
        src.join(10)
