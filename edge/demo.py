"""`roadeye demo`: the whole chain on one machine, with real processes.

1. a mosquitto child process on a free loopback port (temporary config),
2. `roadeye server run` as a subprocess (collector + review web app), with the demo
   device's public key registered and an admin login created,
3. a device key (`roadeye edge keygen`) and a box config pointing at that broker,
4. `roadeye edge replay` of a clip from sample_videos/ into the broker (outbox first),
5. then it prints where to look: the review URL and login, the database, what arrived.

Nothing is simulated: when a piece is missing (no clip, no models, server not installed)
the demo says so and stops or continues without it, it never prints made-up results.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        with socket.socket() as s:
            s.settimeout(0.3)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def _stop(proc: subprocess.Popen[bytes] | None, name: str) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        click.echo(f"{name} did not stop in 15 s; killing it", err=True)
        proc.kill()
        proc.wait(timeout=5)


def _count_events(db: Path) -> dict[str, int] | None:
    """Rows per table whose name mentions events (read-only; schema owned by the server)."""
    if not db.is_file():
        return None
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: int(con.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0])
                for n in names if "event" in n.lower() or "evidence" in n.lower()}


def pick_clip(clip: str | None) -> Path:
    if clip:
        p = Path(clip)
        if not p.is_file():
            raise click.ClickException(f"clip not found: {p}")
        return p
    for d in (Path.cwd() / "sample_videos", REPO_ROOT / "sample_videos"):
        clips = sorted(d.glob("*.mp4"))
        if clips:
            return clips[0]
    raise click.ClickException("no clip in sample_videos/ (render one with `roadeye models render`, "
                               "or pass --clip FILE)")


@click.command()
@click.option("--clip", type=click.Path(dir_okay=False), help="Clip to replay (default: first in sample_videos/).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("var/demo"),
              show_default=True, help="Broker config, keys, outbox, server data.")
@click.option("--http-port", type=int, default=8080, show_default=True)
@click.option("--analysis-fps", type=float, default=5.0, show_default=True)
@click.option("--models", "models_dir", type=click.Path(file_okay=False, path_type=Path),
              default=REPO_ROOT / "models", show_default=True, help="Folder with the four .onnx models.")
@click.option("--keep-running/--exit", default=True, show_default=True,
              help="Keep broker and server up after the replay until Ctrl-C.")
def demo(clip: str | None, workdir: Path, http_port: int, analysis_fps: float, models_dir: Path,
         keep_running: bool) -> None:
    """Replay a sample clip through a local broker into the collector and review app."""
    mosquitto = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if mosquitto is None:
        raise click.ClickException("mosquitto is not installed (apt-get install mosquitto)")
    video = pick_clip(clip).resolve()
    if not (models_dir / "vehicles.onnx").is_file():
        raise click.ClickException(f"no trained models in {models_dir} (vehicles.onnx missing); "
                                   "train them with `roadeye models train ...` or pass --models DIR")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        # 1. broker
        port = free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "max_queued_messages 100000\nmessage_size_limit 0\n")
        log = open(workdir / "mosquitto.log", "wb")  # noqa: SIM115 - lives as long as the child
        broker = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        procs.append(("mosquitto", broker))
        if not wait_port(port, 10, broker):
            raise click.ClickException(f"mosquitto did not start; see {workdir / 'mosquitto.log'}")
        click.echo(f"[1/4] mosquitto on 127.0.0.1:{port} (pid {broker.pid})")

        # 2. device key
        keys = workdir / "keys"
        device = "demo-box"
        if not (keys / f"{device}.key").is_file():
            from edge.keys import generate_keypair

            generate_keypair(keys, device)
        click.echo(f"[2/4] device key {keys / (device + '.key')} (public: {keys / (device + '.pub')})")

        # 3. collector + web app
        server_ok = importlib.util.find_spec("server.cli") is not None
        data_dir = workdir / "server"
        password = secrets.token_urlsafe(9)
        if server_ok:
            cmd = [sys.executable, "-m", "edge.cli", "server", "run", "--data-dir", str(data_dir),
                   "--mqtt-host", "127.0.0.1", "--mqtt-port", str(port), "--http-host", "127.0.0.1",
                   "--http-port", str(http_port), "--register-device-key", f"{device}={keys / (device + '.pub')}",
                   "--admin", f"admin:{password}"]
            slog = open(workdir / "server.log", "wb")  # noqa: SIM115
            srv = subprocess.Popen(cmd, stdout=slog, stderr=subprocess.STDOUT, cwd=str(REPO_ROOT))
            procs.append(("server", srv))
            if not wait_port(http_port, 180, srv):
                click.echo(f"WARNING: `roadeye server run` did not come up (exit code {srv.poll()}); "
                           f"see {workdir / 'server.log'}. Replaying into the broker anyway.", err=True)
                server_ok = False
            else:
                click.echo(f"[3/4] collector + review app on http://127.0.0.1:{http_port} (pid {srv.pid})")
        else:
            click.echo("WARNING: server.cli is not importable (server extra missing?): no collector; "
                       "replaying into the broker only.", err=True)

        # 4. replay through the edge into the broker
        cfg: dict[str, Any] = {
            "device": {"id": device, "site": "demo-site", "key_path": str(keys / f"{device}.key")},
            "cameras": [{"id": "cam1", "source": str(video), "analysis_fps": analysis_fps,
                         **({"calibration": str(video.with_name(video.stem + ".camera.yaml"))}
                            if video.with_name(video.stem + ".camera.yaml").is_file() else {})}],
            "models": {k: str(models_dir.resolve() / f"{k}.onnx")
                       for k in ("vehicles", "plates", "occupants", "plate_reader")},
            "broker": {"host": "127.0.0.1", "port": port, "client_id": f"roadeye-edge-{device}"},
            "outbox": {"path": str(workdir / "outbox.sqlite3")},
        }
        cam_yaml = video.with_name(video.stem + ".camera.yaml")
        if cam_yaml.is_file():
            from edge.camera import load_camera

            cfg["cameras"][0]["id"] = load_camera(cam_yaml).camera_id
        cfg_path = workdir / "edge.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
        events_file = workdir / "events.jsonl"
        click.echo(f"[4/4] replaying {video.name} through the edge pipeline (config {cfg_path})")
        rc = subprocess.call([sys.executable, "-m", "edge.cli", "edge", "replay", str(video), "--config",
                              str(cfg_path), "--out", str(events_file)], cwd=str(REPO_ROOT),
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if rc != 0:
            raise click.ClickException(f"edge replay failed with exit code {rc}")
        n_events = sum(1 for line in events_file.read_text().splitlines() if line.strip())
        click.echo("")
        click.echo(f"edge published {n_events} event(s); copy in {events_file}")
        if server_ok:
            db = data_dir / "roadeye.db"
            deadline = time.monotonic() + 60  # the collector commits in batches
            counts = _count_events(db)
            while (counts is None or counts.get("events", 0) < n_events) and time.monotonic() < deadline:
                time.sleep(0.5)
                counts = _count_events(db)
            click.echo(f"review app:  http://127.0.0.1:{http_port}  (login admin / {password})")
            click.echo(f"database:    {db}")
            click.echo(f"stored rows: {counts if counts is not None else 'database not found yet'}")
            click.echo(f"server log:  {workdir / 'server.log'}")
        click.echo(f"broker:      mqtt://127.0.0.1:{port}  (mosquitto_sub -p {port} -t 'roadeye/#' -v)")
        if keep_running:
            click.echo("running; press Ctrl-C to stop broker and server")
            with contextlib.suppress(KeyboardInterrupt):
                while all(p.poll() is None for _, p in procs):
                    time.sleep(1.0)
    finally:
        for name, p in reversed(procs):
            _stop(p, name)
