"""Frame sources: video files (replay), RTSP over TCP and V4L2 devices, behind three
interchangeable decoder backends (OpenCV's FFmpeg backend, PyAV, an FFmpeg subprocess
that can use hardware decoding).

Two schedules:
- replay (`ReplaySource`): deterministic. Frame k of a file is analysed iff it is the first
  frame of its analysis slot (floor(k * analysis_fps / stream_fps) increases), so the same
  file always yields the same analysed frames; the others are only grabbed (demuxed and
  decoded, never colour-converted). Runs as fast as possible or at real time.
- live (`LiveSource`): a reader thread per camera keeps grabbing so the stream never backs
  up, converts only the frames due for analysis, and hands the NEWEST to the pipeline
  through a one-slot mailbox. A due frame replaced before the pipeline took it counts as a
  drop. Lost streams reconnect by themselves with capped exponential backoff.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edge.config import DecoderBackend
from edge.types import Frame

log = logging.getLogger(__name__)

BGR = npt.NDArray[np.uint8]
#: per analysed frame, in the source's thread: full-resolution image -> the vehicles model's copy
Prepare = Callable[[BGR], BGR]


class SourceError(RuntimeError):
    """A source could not be opened or read (the message names the source)."""


class Decoder(Protocol):
    fps: float  # nominal stream rate (0.0 when the container does not say)
    width: int
    height: int

    def grab(self) -> bool:
        """Advance one frame without converting it; False at end of stream or on a read error."""
        ...

    def retrieve(self) -> BGR:
        """BGR pixels of the last grabbed frame."""
        ...

    def position_s(self) -> float:
        """Presentation time of the last grabbed frame, seconds since the stream start."""
        ...

    def close(self) -> None: ...


def is_rtsp(url: str) -> bool:
    return url.lower().startswith(("rtsp://", "rtsps://"))


def is_v4l2(url: str) -> bool:
    return url.startswith("/dev/video") or url.startswith("v4l2:")


# -- OpenCV -------------------------------------------------------------------------------
class OpenCVDecoder:
    def __init__(self, url: str, open_timeout_s: float = 10.0, read_timeout_s: float = 5.0) -> None:
        import cv2

        self._cv2 = cv2
        if is_v4l2(url):
            dev: Any = url.split(":", 1)[1] if url.startswith("v4l2:") else url
            dev = int(dev) if str(dev).isdigit() else dev
            self.cap = cv2.VideoCapture(dev, cv2.CAP_V4L2)
        else:
            if is_rtsp(url):
                # must be in the environment before the capture opens
                os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "rtsp_transport;tcp"
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout_s * 1000)]
            self.cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        if not self.cap.isOpened():
            raise SourceError(f"cannot open {url!r} with OpenCV")
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (0 < self.fps < 1000):
            self.fps = 0.0
        self.width = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self._n = 0

    def grab(self) -> bool:
        ok = bool(self.cap.grab())
        if ok:
            self._n += 1
        return ok

    def retrieve(self) -> BGR:
        ok, img = self.cap.retrieve()
        if not ok or img is None:
            raise SourceError("retrieve failed after a successful grab")
        return np.asarray(img, np.uint8)

    def position_s(self) -> float:
        ms = float(self.cap.get(self._cv2.CAP_PROP_POS_MSEC))
        if ms > 0 or self.fps <= 0:
            return ms / 1000.0
        return (self._n - 1) / self.fps

    def close(self) -> None:
        self.cap.release()


# -- PyAV ---------------------------------------------------------------------------------
class PyAVDecoder:
    def __init__(self, url: str, open_timeout_s: float = 10.0, read_timeout_s: float = 5.0) -> None:
        import av

        opts: dict[str, str] = {}
        if is_rtsp(url):
            opts = {"rtsp_transport": "tcp", "timeout": str(int(read_timeout_s * 1e6))}
        fmt = "v4l2" if is_v4l2(url) else None
        path = url.split(":", 1)[1] if url.startswith("v4l2:") else url
        if fmt and path.isdigit():
            path = f"/dev/video{path}"
        try:
            self.container = av.open(path, format=fmt, options=opts, timeout=(open_timeout_s, read_timeout_s))
        except (av.error.FFmpegError, OSError) as exc:  # type: ignore[attr-defined]
            raise SourceError(f"cannot open {url!r} with PyAV: {exc}") from exc
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps = float(rate) if rate else 0.0
        self.width = int(self.stream.codec_context.width)
        self.height = int(self.stream.codec_context.height)
        self._frames = self.container.decode(self.stream)
        self._cur: Any = None
        self._n = 0

    def grab(self) -> bool:
        try:
            self._cur = next(self._frames)
        except StopIteration:
            return False
        except Exception as exc:  # av raises many error types on a broken stream
            log.warning("PyAV read error: %s", exc)
            return False
        self._n += 1
        return True

    def retrieve(self) -> BGR:
        if self._cur is None:
            raise SourceError("retrieve before grab")
        return np.ascontiguousarray(self._cur.to_ndarray(format="bgr24"), dtype=np.uint8)

    def position_s(self) -> float:
        t = None if self._cur is None else self._cur.time
        if t is not None:
            return float(t)
        return (self._n - 1) / self.fps if self.fps else 0.0

    def close(self) -> None:
        self.container.close()


# -- FFmpeg subprocess ----------------------------------------------------------------------
def probe(url: str, timeout_s: float = 15.0) -> tuple[int, int, float]:
    """(width, height, fps) via ffprobe."""
    exe = shutil.which("ffprobe")
    if exe is None:
        raise SourceError("ffprobe not found on PATH (needed by the ffmpeg decoder)")
    args = [exe, "-v", "error", "-select_streams", "v:0", "-show_entries",
            "stream=width,height,avg_frame_rate,r_frame_rate", "-of", "default=nw=1"]
    if is_rtsp(url):
        args += ["-rtsp_transport", "tcp"]
    try:
        out = subprocess.run([*args, url], capture_output=True, text=True, timeout=timeout_s, check=True).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        raise SourceError(f"ffprobe cannot read {url!r}: {exc}") from exc
    kv = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def rate(s: str) -> float:
        m = re.match(r"^(\d+)/(\d+)$", s or "")
        return float(m.group(1)) / float(m.group(2)) if m and int(m.group(2)) else 0.0

    fps = rate(kv.get("avg_frame_rate", "")) or rate(kv.get("r_frame_rate", ""))
    try:
        return int(kv["width"]), int(kv["height"]), fps
    except (KeyError, ValueError) as exc:
        raise SourceError(f"ffprobe found no video stream in {url!r}") from exc


class FFmpegDecoder:
    """rawvideo BGR over a pipe from an ffmpeg child; `hwaccel` (e.g. "cuda") decodes on the GPU."""

    def __init__(self, url: str, hwaccel: str | None = None, open_timeout_s: float = 10.0,
                 read_timeout_s: float = 5.0) -> None:
        exe = shutil.which("ffmpeg")
        if exe is None:
            raise SourceError("ffmpeg not found on PATH")
        self.width, self.height, self.fps = probe(url, open_timeout_s)
        args = [exe, "-hide_banner", "-loglevel", "error", "-nostdin"]
        if hwaccel:
            args += ["-hwaccel", hwaccel]
        if is_rtsp(url):
            args += ["-rtsp_transport", "tcp", "-timeout", str(int(read_timeout_s * 1e6))]
        args += ["-i", url, "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "bgr24", "-"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._size = self.width * self.height * 3
        self._buf = bytearray(self._size)
        self._n = 0

    def grab(self) -> bool:
        assert self.proc.stdout is not None
        view = memoryview(self._buf)
        got = 0
        while got < self._size:
            n = self.proc.stdout.readinto(view[got:])  # type: ignore[attr-defined]
            if not n:
                return False
            got += n
        self._n += 1
        return True

    def retrieve(self) -> BGR:
        return np.frombuffer(bytes(self._buf), np.uint8).reshape(self.height, self.width, 3)

    def position_s(self) -> float:
        return (self._n - 1) / self.fps if self.fps else 0.0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()


def open_decoder(url: str, backend: DecoderBackend | str = DecoderBackend.OPENCV, hwaccel: str | None = None,
                 open_timeout_s: float = 10.0, read_timeout_s: float = 5.0) -> Decoder:
    backend = DecoderBackend(backend)
    if not (is_rtsp(url) or is_v4l2(url) or "://" in url) and not Path(url).exists():
        raise SourceError(f"video file not found: {url}")
    if backend == DecoderBackend.PYAV:
        return PyAVDecoder(url, open_timeout_s, read_timeout_s)
    if backend == DecoderBackend.FFMPEG:
        return FFmpegDecoder(url, hwaccel, open_timeout_s, read_timeout_s)
    return OpenCVDecoder(url, open_timeout_s, read_timeout_s)


def file_start_time(path: str | Path) -> datetime:
    """A replay has no wall clock: use the container's creation_time, else the file's mtime,
    so the same file always maps to the same capture times (and the same event ids)."""
    try:
        import av

        with av.open(str(path)) as c:
            tag = c.metadata.get("creation_time")
        if tag:
            return datetime.fromisoformat(tag.replace("Z", "+00:00")).astimezone(UTC)
    except Exception:
        pass
    return datetime.fromtimestamp(int(Path(path).stat().st_mtime), UTC)


class ReplaySource:
    """Deterministic file replay for one camera."""

    def __init__(self, camera_id: str, path: str | Path, analysis_fps: float = 5.0,
                 backend: DecoderBackend | str = DecoderBackend.OPENCV, realtime: bool = False,
                 start_time: datetime | None = None, hwaccel: str | None = None, prefetch: int = 4,
                 prepare: Prepare | None = None) -> None:
        self.camera_id = camera_id
        self.prepare = prepare  # e.g. Cascade.preview: runs in the decode thread, beside inference
        self.prefetch = prefetch
        self.path = str(path)
        self.analysis_fps = analysis_fps
        self.realtime = realtime
        self.decoder = open_decoder(self.path, backend, hwaccel)
        self.fps = self.decoder.fps or 25.0
        self.width, self.height = self.decoder.width, self.decoder.height
        self.start_time = start_time or file_start_time(self.path)
        self.frames_in = 0
        self.frames_analysed = 0
        self.frame_count = self._count()

    def _count(self) -> int:
        try:
            import cv2

            cap = cv2.VideoCapture(self.path)
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            cap.release()
            return max(n, 0)
        except Exception:
            return 0

    def __iter__(self) -> Iterator[Frame]:
        """Yields only the frames to analyse (image set); the rest are grabbed and skipped.

        With `prefetch` > 0 a decode thread runs ahead by up to that many analysed frames, so
        decoding overlaps inference (both release the GIL); order and selection are unchanged.
        """
        if self.prefetch <= 0:
            yield from self._frames()
            return
        q: queue.Queue[Frame | BaseException | None] = queue.Queue(maxsize=self.prefetch)
        halt = threading.Event()

        def produce() -> None:
            try:
                for f in self._frames():
                    while not halt.is_set():
                        try:
                            q.put(f, timeout=0.2)
                            break
                        except queue.Full:
                            continue
                    if halt.is_set():
                        return
                q.put(None)
            except BaseException as exc:  # hand decoder errors to the consumer
                q.put(exc)

        t = threading.Thread(target=produce, name=f"decode-{self.camera_id}", daemon=True)
        t.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            halt.set()
            t.join(10)

    def _frames(self) -> Iterator[Frame]:
        last_slot = -1
        t0 = time.monotonic()
        seq = -1
        try:
            while self.decoder.grab():
                seq += 1
                self.frames_in += 1
                slot = int(np.floor(seq * self.analysis_fps / self.fps + 1e-9))
                if slot <= last_slot:
                    continue
                last_slot = slot
                ts = seq / self.fps
                if self.realtime:
                    delay = ts - (time.monotonic() - t0)
                    if delay > 0:
                        time.sleep(delay)
                img = self.decoder.retrieve()
                self.frames_analysed += 1
                yield Frame(self.camera_id, seq, ts, self.start_time + timedelta(seconds=ts), img,
                            self.prepare(img) if self.prepare is not None else None)
        finally:
            self.decoder.close()


class LiveSource(threading.Thread):
    """Reader thread for one live camera (RTSP / V4L2 / a file played as if live)."""

    def __init__(self, camera_id: str, url: str, analysis_fps: float = 5.0,
                 backend: DecoderBackend | str = DecoderBackend.OPENCV, hwaccel: str | None = None,
                 open_timeout_s: float = 10.0, read_timeout_s: float = 5.0,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0,
                 prepare: Prepare | None = None) -> None:
        super().__init__(name=f"source-{camera_id}", daemon=True)
        self.prepare = prepare
        self.camera_id, self.url = camera_id, url
        self.analysis_fps = analysis_fps
        self.backend, self.hwaccel = backend, hwaccel
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self._halt = threading.Event()
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self.connected = False
        self.reconnects = 0
        self.connect_failures = 0
        self.frames_in = 0
        self.frames_dropped = 0
        self.frames_handed = 0
        self.last_frame_at: datetime | None = None
        self.last_error: str | None = None

    def stop(self) -> None:
        self._halt.set()
        with self._cond:
            self._cond.notify_all()

    def latest(self, timeout: float = 0.0) -> Frame | None:
        """Take the newest due frame (None if none arrived within timeout)."""
        with self._cond:
            if self._slot is None and timeout > 0:
                self._cond.wait(timeout)
            f, self._slot = self._slot, None
        if f is not None:
            self.frames_handed += 1
        return f

    def _open(self) -> Decoder | None:
        delay = self.backoff_initial_s
        while not self._halt.is_set():
            try:
                dec = open_decoder(self.url, self.backend, self.hwaccel, self.open_timeout_s, self.read_timeout_s)
                self.connected = True
                log.info("camera %s connected (%s, %dx%d @ %.1f fps)", self.camera_id, self.backend,
                         dec.width, dec.height, dec.fps)
                return dec
            except SourceError as exc:
                self.connect_failures += 1
                self.last_error = str(exc)
                log.warning("camera %s: %s; retrying in %.1fs", self.camera_id, exc, delay)
                self._halt.wait(delay)
                delay = min(delay * 2, self.backoff_max_s)
        return None

    def run(self) -> None:
        period = 1.0 / self.analysis_fps
        first = True
        while not self._halt.is_set():
            dec = self._open()
            if dec is None:
                break
            if not first:
                self.reconnects += 1
            first = False
            stream_t0 = time.monotonic()
            next_due = time.monotonic()
            try:
                while not self._halt.is_set():
                    if not dec.grab():
                        self.last_error = "stream ended or read timed out"
                        log.warning("camera %s: %s; reconnecting", self.camera_id, self.last_error)
                        break
                    self.frames_in += 1
                    now = time.monotonic()
                    if now < next_due:
                        continue
                    next_due = max(next_due + period, now)
                    img = dec.retrieve()
                    ts = dec.position_s() or (now - stream_t0)
                    # seq counts every frame received by this process, analysed or not
                    frame = Frame(self.camera_id, self.frames_in - 1, ts, datetime.now(UTC), img,
                                  self.prepare(img) if self.prepare is not None else None)
                    self.last_frame_at = frame.captured_at
                    with self._cond:
                        if self._slot is not None:
                            self.frames_dropped += 1
                        self._slot = frame
                        self._cond.notify_all()
            except SourceError as exc:
                self.last_error = str(exc)
                log.warning("camera %s: %s; reconnecting", self.camera_id, exc)
            finally:
                self.connected = False
                dec.close()
            self._halt.wait(self.backoff_initial_s)
