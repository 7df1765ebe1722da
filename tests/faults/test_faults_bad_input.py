"""Case 6: bad input never crashes anything and never gets stored as an event.

- thousands of hypothesis-generated payloads (raw bytes, and structural mutations of a real
  signed event) through the server's ingest: each becomes a dead letter with a reason, or,
  when the mutation did not change the signed content, exactly the original event;
- a batch of truncated / oversized / wrong-version / forged / tampered / misrouted messages
  through the real broker and a real `roadeye server collect`: all dead-lettered, the
  collector keeps running and still stores the good event that follows;
- corrupt, truncated and garbage video files through `roadeye edge replay`, an RTSP source
  that stalls and a "camera" that answers garbage: survived, with counters;
- hypothesis-mutated box configs: a ConfigError naming the key, never another exception.
"""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.event import EventMessage, event_topic
from server.db.engine import Database
from server.db.models import Device
from server.evidence_store import LocalEvidenceStore
from server.ingest import Ingestor, Outcome
from server.sample import SampleDevice, make_message
from tests.faults.faults_helpers import (
    REPO,
    DeviceKeys,
    Owned,
    Store,
    mqtt_client,
    start_collector,
    wait_subscribed,
    wait_until,
)

FUZZ = settings(deadline=2000, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@pytest.fixture
def ingest_env(tmp_path: Path) -> Any:
    db = Database(f"sqlite:///{tmp_path / 'fuzz.db'}")
    store = LocalEvidenceStore(tmp_path / "evidence")
    dev = SampleDevice(device_id="fuzz-box", site_id="site-z", camera_id="cam-z")
    with db.session() as s:
        s.add(Device(device_id=dev.device_id, public_key_pem=dev.public_pem, site_id=dev.site_id))
    ing = Ingestor(db, store, key_ttl_s=3600)
    yield db, store, dev, ing
    db.dispose()


def _commit_all(ing: Ingestor, prepared: list[Any]) -> list[Outcome]:
    out: list[Outcome] = []
    for i in range(0, len(prepared), 500):
        out += ing.commit(prepared[i:i + 500])
    return out


def _dead_count(db: Database) -> int:
    from sqlalchemy import func, select

    from server.db.models import DeadLetter

    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(DeadLetter)) or 0)


@pytest.mark.timeout(240)
def test_fuzzed_raw_payloads_all_dead_lettered(ingest_env: Any) -> None:
    db, _, dev, ing = ingest_env
    topic = event_topic(dev.site_id, dev.camera_id)
    prepared: list[Any] = []

    @settings(FUZZ, max_examples=1500)
    @given(payload=st.one_of(
        st.binary(max_size=3000),
        st.text(max_size=600).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                     max_leaves=12).flatmap(lambda v: st.sampled_from([{"event": v}, v]))
        .map(lambda v: json.dumps(v).encode()),
    ))
    def run(payload: bytes) -> None:
        p = ing.prepare(topic, payload)
        assert p.kind == "dead" and p.reason, (payload[:80], p.kind)
        prepared.append(p)

    run()
    assert len(prepared) >= 1000
    outcomes = _commit_all(ing, prepared)
    assert set(outcomes) == {Outcome.DEAD_LETTER}
    assert _dead_count(db) == len(prepared)
    good, _ = make_message(dev, seed=1)
    assert ing.ingest(topic, good.to_bytes()) == Outcome.STORED  # still works after the storm


def _paths(v: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(v, dict):
        for k, x in v.items():
            out += _paths(x, (*prefix, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            out += _paths(x, (*prefix, i))
    return out


def _mutate(doc: Any, path: tuple[Any, ...], op: str, value: Any) -> Any:
    doc = copy.deepcopy(doc)
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "add" and isinstance(parent, dict):
        parent[f"x_{last}"] = value
    else:
        parent[last] = value
    return doc


@pytest.mark.timeout(240)
def test_fuzzed_mutations_of_a_signed_event(ingest_env: Any) -> None:
    """Change, delete or add one field anywhere in a real signed event message."""
    db, _, dev, ing = ingest_env
    topic = event_topic(dev.site_id, dev.camera_id)
    good, _ = make_message(dev, seed=7)
    doc = json.loads(good.to_bytes())
    original = good.event.to_json()
    paths = _paths(doc)
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=30),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=6)
    prepared: list[Any] = []
    accepted = 0

    @settings(FUZZ, max_examples=1500)
    @given(path=st.sampled_from(paths), op=st.sampled_from(["replace", "delete", "add"]), value=json_values)
    def run(path: tuple[Any, ...], op: str, value: Any) -> None:
        nonlocal accepted
        try:
            payload = json.dumps(_mutate(doc, path, op, value), allow_nan=True).encode()
        except (TypeError, IndexError, KeyError):
            return
        p = ing.prepare(topic, payload)
        if p.kind == "event":
            # only a mutation that left the signed content as it was may pass
            assert p.event is not None and p.event.to_json() == original, (path, op, value)
            accepted += 1
        else:
            assert p.kind == "dead" and p.reason, (path, op, value)
            prepared.append(p)

    run()
    assert len(prepared) >= 1000, len(prepared)
    assert set(_commit_all(ing, prepared)) == {Outcome.DEAD_LETTER}
    assert _dead_count(db) == len(prepared)
    assert ing.ingest(topic, good.to_bytes()) == Outcome.STORED


@pytest.mark.timeout(60)
def test_deeply_nested_json_is_a_dead_letter(ingest_env: Any) -> None:
    """Regression (fixed in server/ingest.py): RecursionError escaped `prepare`, and the collector
    took it for a storage error, retrying the batch (and blocking everything behind it) forever."""
    _, _, dev, ing = ingest_env
    topic = event_topic(dev.site_id, dev.camera_id)
    for payload in (b"[" * 100_000, b'{"event":' * 50_000,
                    b'{"event":{"schema_version":1,"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}}"):
        assert ing.ingest(topic, payload) == Outcome.DEAD_LETTER


# -- through the real broker and collector ---------------------------------------------------
def _bad_batch(dev: SampleDevice, other: SampleDevice) -> list[tuple[str, bytes, str]]:
    """(topic, payload, expected reason fragment) for each bad message."""
    topic = event_topic(dev.site_id, dev.camera_id)
    good, blobs = make_message(dev, seed=11)
    raw = good.to_bytes()
    doc = json.loads(raw)
    wrong_version = copy.deepcopy(doc)
    wrong_version["event"]["schema_version"] = 2
    forged, _ = make_message(SampleDevice(device_id=dev.device_id, site_id=dev.site_id, camera_id=dev.camera_id),
                             seed=12)
    tampered = copy.deepcopy(doc)
    sha = good.event.evidence[1].sha256
    data = bytearray(blobs[sha])
    data[len(data) // 2] ^= 0xFF
    import base64

    tampered["evidence"][sha] = base64.b64encode(bytes(data)).decode()
    missing = copy.deepcopy(doc)
    missing["evidence"].pop(sha)
    edited = copy.deepcopy(doc)
    edited["event"]["plate"]["text"] = "京A00000"  # signature no longer matches
    unsigned, _ = make_message(dev, seed=13, sign=False)
    stranger, _ = make_message(other, seed=14)
    return [
        (topic, raw[: len(raw) // 2], "not JSON"),
        (topic, raw[:-1], "not JSON"),
        (topic, b"", "not JSON"),
        (topic, b"\xff\xfe\x00garbage", "not JSON"),
        (topic, b'{"event":' * 50_000, "nested too deeply"),
        (topic, b'{"event": {"schema_version": 1}, "pad": "' + b"x" * (9 * 1024 * 1024) + b'"}', "bytes, limit"),
        (topic, json.dumps(wrong_version).encode(), "schema_version 2"),
        (topic, forged.to_bytes(), "invalid signature"),
        (topic, json.dumps(edited, ensure_ascii=False).encode(), "invalid signature"),
        (topic, unsigned.to_bytes(), "not signed"),
        (topic, json.dumps(tampered).encode(), "does not match its sha256"),
        (topic, json.dumps(missing).encode(), "missing"),
        (event_topic(dev.site_id, "cam-other"), raw, "topic"),
        (event_topic(other.site_id, other.camera_id), stranger.to_bytes(), "not registered"),
    ]


@pytest.mark.services
@pytest.mark.timeout(120)
def test_bad_messages_through_broker_and_collector(mosquitto, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                  owned: Owned) -> None:
    dev = SampleDevice(device_id="bad-box", site_id="site-f", camera_id="cam-b")
    other = SampleDevice(device_id="unknown-box", site_id="site-f", camera_id="cam-u")
    (tmp_path / "keys").mkdir()
    pub_path = tmp_path / "keys" / "bad-box.pub"
    pub_path.write_text(dev.public_pem)
    keys = DeviceKeys("bad-box", pub_path, pub_path)
    db_url = f"sqlite:///{tmp_path / 'server.db'}"
    store = owned(Store(db_url))
    col = owned(start_collector(db_url=db_url, data_dir=tmp_path / "srv", port=mosquitto.port, device=keys,
                                log=tmp_path / "collector.log"))
    c = owned(mqtt_client())
    wait_subscribed(store, mosquitto.host, mosquitto.port)
    batch = _bad_batch(dev, other)
    c.connect(mosquitto.host, mosquitto.port)
    c.loop_start()
    for topic, payload, _ in batch:
        c.publish(topic, payload, qos=1).wait_for_publish(30)
    good, _ = make_message(dev, seed=99)
    c.publish(event_topic(dev.site_id, dev.camera_id), good.to_bytes(), qos=1).wait_for_publish(10)
    wait_until(lambda: store.count_dead() >= len(batch) and store.count_events() >= 1, 60,
               "all bad messages dead-lettered and the good one stored")
    time.sleep(0.5)
    dead = store.dead_letters()
    assert len(dead) == len(batch), dead
    for (topic, _, needle), (dtopic, reason) in zip(batch, dead, strict=True):
        assert dtopic == topic and needle in reason, (needle, reason)
    assert store.event_ids() == [good.event.event_id]
    assert col.alive(), col.log_tail()
    owned.close()  # the collector must exit cleanly on SIGTERM
    assert col.proc.returncode == 0, col.log_tail()


# -- video sources ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clipdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.unit.edge.edge_doubles import CarSpec, write_clip
    from tests.unit.edge.edge_onnx_fixtures import write_fixture_models

    d = tmp_path_factory.mktemp("clips")
    write_clip(str(d / "good.mp4"), [CarSpec(40, 40, w=240, h=180)], 60, size=(320, 240), fps=25.0)
    write_fixture_models(d / "models")
    # a recorder writes the index first (faststart) or streams MPEG-TS; cut such a file short
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(d / "good.mp4"), "-c", "copy", "-movflags",
                    "+faststart", str(d / "fast.mp4")], check=True)
    data = (d / "fast.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) * 2 // 3])
    rng = random.Random(5)
    bad = bytearray(data)
    for _ in range(len(bad) // 40):  # 2.5 % of the bytes after the header overwritten
        i = rng.randrange(2048, len(bad))
        bad[i] = rng.randrange(256)
    (d / "corrupt.mp4").write_bytes(bytes(bad))
    (d / "garbage.mp4").write_bytes(os.urandom(200_000))
    (d / "empty.mp4").write_bytes(b"")
    for name in ("good", "truncated", "corrupt", "garbage", "empty"):
        (d / f"{name}.camera.yaml").write_text(yaml.safe_dump({
            "camera_id": "gate-1", "image_size": [320, 240], "thresholds": {"no_seatbelt": {"min_driver_px": 20}}}))
    return d


def _replay(d: Path, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge.cli", "edge", "replay", f"{name}.mp4", "--no-progress",
                           "--out", f"{name}.jsonl"], cwd=d, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO)))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", ["truncated", "corrupt"])
def test_damaged_video_is_replayed_as_far_as_it_goes(clipdir: Path, name: str) -> None:
    res = _replay(clipdir, name)
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert res.returncode == 0, res.stderr[-2000:]
    assert "frames decoded" in res.stdout
    decoded = int(next(ln for ln in res.stdout.splitlines() if "frames decoded" in ln).split("│")[-2].strip())
    assert 0 < decoded <= 60, res.stdout
    for ln in (clipdir / f"{name}.jsonl").read_text().splitlines():
        EventMessage.from_bytes(ln.encode())  # whatever came out is a valid signed-schema event


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["garbage", "empty"])
def test_unreadable_video_is_a_clear_error(clipdir: Path, name: str) -> None:
    res = _replay(clipdir, name)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert f"{name}.mp4" in (res.stderr + res.stdout), res.stderr[-2000:]


def stop_source(src: Any) -> None:
    """Stop a LiveSource thread and wait for it (it has no close())."""
    src.stop()
    src.join(15)


@pytest.mark.services
@pytest.mark.timeout(120)
def test_rtsp_source_that_stalls_is_survived(rtsp_server_factory, tmp_path: Path,  # type: ignore[no-untyped-def]
                                             owned: Owned) -> None:
    from edge.sources import LiveSource
    from tests.services import make_test_clip

    clip = make_test_clip(tmp_path / "clip.mp4", seconds=4, fps=10)
    server = rtsp_server_factory(clip, loops=20)
    src = LiveSource("cam1", server.url, analysis_fps=5, open_timeout_s=3, read_timeout_s=2,
                     backoff_initial_s=0.2, backoff_max_s=1.0)
    src.start()
    owned.callback(stop_source, src)

    def resume_camera() -> None:  # left SIGSTOPped by a failing case, it would ignore the fixture's SIGTERM
        if server.proc is not None and server.proc.poll() is None:
            os.kill(server.proc.pid, signal.SIGCONT)

    owned.callback(resume_camera)
    wait_until(lambda: src.frames_in >= 10 and src.connected, 40, "first frames")
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)  # the camera hangs: TCP open, no data
    t0 = time.monotonic()
    wait_until(lambda: not src.connected, 30, "stall noticed")
    noticed = time.monotonic() - t0
    time.sleep(2.0)
    os.kill(server.proc.pid, signal.SIGCONT)
    before = src.frames_in
    wait_until(lambda: src.connected and src.frames_in >= before + 10, 60, "frames again after the stall")
    assert src.reconnects >= 1 and src.is_alive()
    print(f"FIGURES rtsp-stall noticed_after_s={noticed:.1f} reconnects={src.reconnects} "
          f"connect_failures={src.connect_failures} last_error={src.last_error!r}")


class GarbageServer:
    """A 'camera' that accepts TCP connections and answers random bytes (or nothing)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            try:
                conn.settimeout(0.5)
                try:
                    conn.recv(4096)
                except OSError:
                    pass
                conn.sendall(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n" + os.urandom(2000)
                             if self.connections % 2 else os.urandom(4000))
            except OSError:
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("backend", ["opencv", "pyav"])
def test_rtsp_garbage_source_is_survived_with_counters(backend: str, owned: Owned) -> None:
    from edge.sources import LiveSource

    g = owned(GarbageServer())
    src = LiveSource("cam-g", f"rtsp://127.0.0.1:{g.port}/stream", analysis_fps=5, backend=backend,
                     open_timeout_s=2, read_timeout_s=2, backoff_initial_s=0.1, backoff_max_s=0.5)
    src.start()
    owned.callback(stop_source, src)
    wait_until(lambda: src.connect_failures >= 2, 60, "repeated failed connects")
    assert src.is_alive() and not src.connected and src.frames_in == 0
    assert src.last_error
    print(f"FIGURES rtsp-garbage backend={backend} connect_failures={src.connect_failures} "
          f"connections={g.connections} last_error={src.last_error!r}")
    owned.close()
    assert not src.is_alive()


# -- configs ---------------------------------------------------------------------------------
GOOD_CFG = {
    "device": {"id": "box-01", "site": "site-1"},
    "cameras": [{"id": "cam1", "source": "rtsp://127.0.0.1:8554/stream", "analysis_fps": 5}],
    "broker": {"host": "127.0.0.1", "port": 1883},
    "outbox": {"path": "outbox.sqlite3", "max_bytes": 1000000},
    "metrics_port": 9108,
}


@pytest.mark.timeout(120)
def test_fuzzed_box_configs_fail_with_config_errors_only(tmp_path: Path) -> None:
    from edge.config import ConfigError, load_config

    paths = _paths(GOOD_CFG)
    values = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(max_size=12) | \
        st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=4), st.integers(), max_size=2)
    p = tmp_path / "box.yaml"
    bad = 0

    @settings(FUZZ, max_examples=400)
    @given(path=st.sampled_from(paths), op=st.sampled_from(["replace", "delete", "add"]), value=values)
    def run(path: tuple[Any, ...], op: str, value: Any) -> None:
        nonlocal bad
        cfg = _mutate(GOOD_CFG, path, op, value)
        p.write_text(yaml.safe_dump(cfg, allow_unicode=True))
        try:
            load_config(p)
        except ConfigError as exc:
            bad += 1
            msg = str(exc)
            assert "box.yaml" in msg
            # the message names the key (or its parent section for a missing one)
            names = [str(k) for k in path if not isinstance(k, int)]
            assert any(n in msg for n in names) or f"x_{path[-1]}" in msg, (path, op, msg)

    run()
    assert bad >= 100


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("args", "needle"), [
    (["server", "collect", "--mqtt-port", "eighty"], "--mqtt-port"),
    (["server", "collect", "--group", "bad group!", "--data-dir", "{tmp}"], "group"),
    (["server", "web", "--http-port", "-5"], "port"),
    (["server", "collect", "--register-device-key", "nokey", "--data-dir", "{tmp}", "--mqtt-port", "1"],
     "--register-device-key"),
    (["edge", "check-config", "{tmp}/missing.yaml"], "missing.yaml"),
])
def test_invalid_cli_settings_name_the_key(tmp_path: Path, args: list[str], needle: str) -> None:
    res = subprocess.run([sys.executable, "-m", "edge.cli", *[a.replace("{tmp}", str(tmp_path)) for a in args]],
                         capture_output=True, text=True, timeout=60, cwd=REPO,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode != 0
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    assert needle in res.stderr + res.stdout, res.stderr[-2000:]
