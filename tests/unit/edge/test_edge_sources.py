"""Sources on a small generated clip: three decoder backends, deterministic analysis
schedule, frame metadata, live newest-frame mailbox with drop counting."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from edge.sources import LiveSource, ReplaySource, SourceError, open_decoder
from tests.unit.edge.edge_doubles import CarSpec, write_clip

N = 50  # 2 s at 25 fps


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("clip") / "small.mp4"
    write_clip(str(p), [CarSpec(10, 100, w=120, h=90, vx=8)], N, size=(320, 240), fps=25.0)
    return p


@pytest.mark.parametrize("backend", ["opencv", "pyav", "ffmpeg"])
def test_decoders_agree(clip: Path, backend: str) -> None:
    d = open_decoder(str(clip), backend)
    assert (d.width, d.height) == (320, 240)
    assert d.fps == pytest.approx(25.0, abs=0.01)
    n, last = 0, None
    ts = []
    while d.grab():
        n += 1
        ts.append(d.position_s())
        if n == 10:
            last = d.retrieve()
    d.close()
    assert n == N
    assert last is not None and last.shape == (240, 320, 3) and last.dtype == np.uint8
    assert ts[10] == pytest.approx(10 / 25, abs=0.021)
    ref = open_decoder(str(clip), "opencv")
    for _ in range(10):
        ref.grab()
    # same pixels whatever the backend (within codec rounding of the colour conversion)
    assert np.abs(ref.retrieve().astype(int) - last.astype(int)).mean() < 3.0
    ref.close()


@pytest.mark.parametrize("afps", [5.0, 2.0, 25.0])
def test_replay_schedule_is_deterministic(clip: Path, afps: float) -> None:
    start = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    runs = []
    for backend in ("opencv", "pyav"):
        src = ReplaySource("cam1", clip, analysis_fps=afps, backend=backend, start_time=start)
        frames = list(src)
        assert src.frames_in == N
        runs.append([(f.seq, round(f.stream_ts, 3)) for f in frames])
        f = frames[1]
        assert f.camera_id == "cam1" and f.image is not None
        assert f.captured_at == start + timedelta(seconds=f.stream_ts)
    assert runs[0] == runs[1]
    seqs = [s for s, _ in runs[0]]
    # the first frame of every analysis slot: frame k belongs to slot floor(k * afps / 25)
    expected = [k for k in range(N) if k == 0 or int(k * afps / 25) > int((k - 1) * afps / 25)]
    assert seqs == expected
    assert len(seqs) == int(np.ceil(N * afps / 25))


def test_realtime_replay_is_paced(clip: Path) -> None:
    t0 = time.monotonic()
    frames = list(ReplaySource("cam1", clip, analysis_fps=5, realtime=True))
    assert len(frames) == 10
    assert time.monotonic() - t0 >= 1.7  # last analysed frame is at 1.8 s


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        open_decoder(str(tmp_path / "nope.mp4"))


def test_live_source_hands_newest_frame_and_counts_drops(clip: Path) -> None:
    # a file read as if live: the reader grabs as fast as it can, the consumer never takes
    src = LiveSource("cam1", str(clip), analysis_fps=1e6, backoff_initial_s=5.0)
    src.start()
    deadline = time.monotonic() + 10
    while src.frames_in < N and time.monotonic() < deadline:
        time.sleep(0.02)
    f = src.latest()
    src.stop()
    src.join(5)
    assert f is not None and f.image is not None
    assert src.frames_in >= N
    # every due frame but the newest was replaced before anyone took it
    assert src.frames_dropped >= N - 2
    assert f.seq >= N - 2
    assert f.captured_at.tzinfo is not None


def test_live_source_reconnects_with_backoff_when_source_missing(tmp_path: Path) -> None:
    src = LiveSource("cam1", str(tmp_path / "later.mp4"), backoff_initial_s=0.05, backoff_max_s=0.2)
    src.start()
    time.sleep(0.6)
    assert src.connect_failures >= 3 and not src.connected
    assert src.last_error is not None and "not found" in src.last_error
    src.stop()
    src.join(5)


def test_sources_prepare_the_preview_in_their_thread(clip: Path) -> None:
    """`prepare` runs once per analysed frame (never on skipped ones) and rides on the frame."""
    seen: list[tuple[int, ...]] = []

    def half(img: np.ndarray) -> np.ndarray:
        seen.append(img.shape)
        return img[::2, ::2].copy()

    frames = list(ReplaySource("cam1", clip, analysis_fps=5.0, prepare=half))
    assert len(seen) == len(frames) == 10
    assert all(f.preview is not None and f.preview.shape == (120, 160, 3) for f in frames)
    assert all(f.preview is None for f in ReplaySource("cam1", clip, analysis_fps=5.0))
