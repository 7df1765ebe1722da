"""Real services on loopback for tests, benchmarks and the demo: mosquitto, PostgreSQL and an
RTSP server (gst-rtsp-server under the system Python). Each runs as a child process on a
free 127.0.0.1 port, in its own temp directory, and is stopped by pid.

Nothing here is a mock: the point of these helpers is that integration tests talk to the
same brokers and databases as production does.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PG_BIN = Path(os.environ.get("ROADEYE_PG_BIN", "/usr/lib/postgresql/15/bin"))
SYSTEM_PYTHON = os.environ.get("ROADEYE_GI_PYTHON", "/usr/bin/python3")
RTSP_SCRIPT = Path(__file__).with_name("rtsp_server.py")


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise ServiceError(f"nothing listening on {host}:{port} after {timeout}s")


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _stop_proc(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


# --------------------------------------------------------------------------------------
# TLS material for brokers (self-signed CA + server cert for 127.0.0.1)
# --------------------------------------------------------------------------------------
def make_tls_material(directory: Path) -> dict[str, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def _name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("roadeye test CA"))
        .issuer_name(_name("roadeye test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": directory / "ca.crt", "cert": directory / "server.crt", "key": directory / "server.key"}
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    paths["key"].chmod(0o600)
    return paths


# --------------------------------------------------------------------------------------
# mosquitto
# --------------------------------------------------------------------------------------
class MosquittoBroker:
    """A real mosquitto child process with persistence, restartable on the same port."""

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        port: int | None = None,
        tls: bool = False,
        passwords: dict[str, str] | None = None,
        acl: str | None = None,
        max_queued_messages: int = 100_000,
        max_packet_size: int = 16 * 1024 * 1024,
        binary: str = "mosquitto",
    ) -> None:
        self.binary = shutil.which(binary) or "/usr/sbin/mosquitto"
        if not Path(self.binary).exists():
            raise ServiceError("mosquitto not found: install the Debian package 'mosquitto'")
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="roadeye-mqtt-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.tls_port: int | None = free_port() if tls else None
        self.ca_cert: Path | None = None
        self.passwords = passwords
        self.acl = acl
        self.max_queued_messages = max_queued_messages
        self.max_packet_size = max_packet_size
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir / "mosquitto.log"
        self.conf_path = self.data_dir / "mosquitto.conf"
        self._tls_paths = make_tls_material(self.data_dir / "tls") if tls else None
        if self._tls_paths:
            self.ca_cert = self._tls_paths["ca"]
        self._write_conf()

    def _write_conf(self) -> None:
        lines = [
            "per_listener_settings false",
            # Running as root, mosquitto would switch to its own user and lose access to the
            # temp dirs; keep the invoking user (ignored when not root).
            f"user {_current_user()}",
            "persistence true",
            f"persistence_location {self.data_dir}/",
            "autosave_interval 1",
            "autosave_on_changes false",
            f"max_queued_messages {self.max_queued_messages}",
            "max_inflight_messages 100",
            f"max_packet_size {self.max_packet_size}",
            "persistent_client_expiration 1d",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            f"listener {self.port} {self.host}",
        ]
        if self.passwords is not None:
            pw = self.data_dir / "passwd"
            pw.write_text("")
            for user, password in self.passwords.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(pw), user, password], check=True, capture_output=True
                )
            pw.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        if self.acl is not None:
            aclf = self.data_dir / "acl"
            aclf.write_text(self.acl)
            aclf.chmod(0o600)
            lines.append(f"acl_file {aclf}")
        if self._tls_paths:
            lines += [
                f"listener {self.tls_port} {self.host}",
                f"cafile {self._tls_paths['ca']}",
                f"certfile {self._tls_paths['cert']}",
                f"keyfile {self._tls_paths['key']}",
                "tls_version tlsv1.2",
            ]
        self.conf_path.write_text("\n".join(lines) + "\n")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> MosquittoBroker:
        if self.running:
            return self
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.data_dir / "stderr.log", "ab"),  # noqa: SIM115
        )
        try:
            wait_port(self.host, self.port, timeout, self.proc)
            if self.tls_port:
                wait_port(self.host, self.tls_port, timeout, self.proc)
        except ServiceError as exc:
            raise ServiceError(f"mosquitto failed to start: {exc}\n{self.log_tail()}") from exc
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        _stop_proc(self.proc, sig)
        self.proc = None

    def log_tail(self, n: int = 30) -> str:
        text = ""
        for p in (self.log_path, self.data_dir / "stderr.log"):
            if p.exists():
                text += "\n".join(p.read_text(errors="replace").splitlines()[-n:])
        return text

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------
class PostgresServer:
    """initdb + pg_ctl into a temp dir, listening on loopback only, trust auth for loopback."""

    def __init__(self, data_dir: Path | None = None, port: int | None = None, user: str = "roadeye") -> None:
        if not (PG_BIN / "initdb").exists():
            raise ServiceError(f"PostgreSQL binaries not found in {PG_BIN}: install 'postgresql'")
        self._own_dir = data_dir is None
        self.base = Path(data_dir or tempfile.mkdtemp(prefix="roadeye-pg-"))
        self.pgdata = self.base / "data"
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.user = user
        self._run_as: list[str] = []
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root: run it as the unprivileged 'postgres' or 'nobody'.
            import pwd

            for name in ("postgres", "nobody"):
                try:
                    pwd.getpwnam(name)
                except KeyError:
                    continue
                self._run_as = ["runuser", "-u", name, "--"]
                shutil.chown(self.base, user=name)
                self.base.chmod(0o700)
                break
            else:
                raise ServiceError("running as root and no 'postgres' or 'nobody' user exists")

    def _cmd(self, *args: str) -> list[str]:
        return [*self._run_as, *args]

    def start(self) -> PostgresServer:
        if not (self.pgdata / "PG_VERSION").exists():
            res = subprocess.run(
                self._cmd(str(PG_BIN / "initdb"), "-D", str(self.pgdata), "-U", self.user,
                          "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C.UTF-8"),
                capture_output=True, text=True,
            )
            if res.returncode != 0:
                raise ServiceError(f"initdb failed ({res.returncode}): {res.stderr or res.stdout}")
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='{self.base}' -c fsync=off"
        res = subprocess.run(
            self._cmd(str(PG_BIN / "pg_ctl"), "-D", str(self.pgdata), "-o", opts, "-l",
                      str(self.base / "pg.log"), "-w", "-t", "30", "start"),
            capture_output=True, text=True,
        )
        if res.returncode != 0:
            log = (self.base / "pg.log").read_text(errors="replace") if (self.base / "pg.log").exists() else ""
            raise ServiceError(f"pg_ctl start failed: {res.stderr}\n{log[-2000:]}")
        wait_port(self.host, self.port, 15)
        return self

    @property
    def pid(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return None
        return int(pidfile.read_text().split()[0])

    def stop(self, mode: str = "fast") -> None:
        if self.pid is None:
            return
        subprocess.run(self._cmd(str(PG_BIN / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop"),
                       capture_output=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"host={self.host} port={self.port} user={self.user} dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        self.stop("immediate")
        if self._own_dir:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------
# RTSP
# --------------------------------------------------------------------------------------
class RtspServer:
    """gst-rtsp-server (system Python + GObject introspection) serving one H.264 MP4.

    `loops` > 1 serves the clip repeated that many times (concatenated once with
    `ffmpeg -stream_loop`, stream copy), for tests that need a long-running live source.
    """

    def __init__(self, video: Path, port: int | None = None, mount: str = "/stream", loops: int = 1) -> None:
        if not Path(SYSTEM_PYTHON).exists():
            raise ServiceError(f"{SYSTEM_PYTHON} not found (needs python3-gi + gir1.2-gst-rtsp-server-1.0)")
        video = Path(video).resolve()
        if not video.exists():
            raise ServiceError(f"video not found: {video}")
        self._tmp_video: Path | None = None
        if loops > 1:
            fd, name = tempfile.mkstemp(prefix="roadeye-rtsp-", suffix=".mp4")
            os.close(fd)
            subprocess.run(
                ["ffmpeg", "-loglevel", "error", "-y", "-stream_loop", str(loops - 1), "-i", str(video),
                 "-c", "copy", name],
                check=True,
            )
            video = self._tmp_video = Path(name)
        self.video = video
        self.port = port or free_port()
        self.mount = mount
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="roadeye-rtsp-", suffix=".log")[1])

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 15.0) -> RtspServer:
        if self.running:
            return self
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(RTSP_SCRIPT), "--port", str(self.port), "--mount", self.mount,
             str(self.video)],
            stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT, env=env,  # noqa: SIM115
        )
        try:
            wait_port("127.0.0.1", self.port, timeout, self.proc)
        except ServiceError as exc:
            raise ServiceError(f"RTSP server failed: {exc}\n{self.log_path.read_text()[-2000:]}") from exc
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        _stop_proc(self.proc, sig)
        self.proc = None

    def close(self) -> None:
        self.stop()
        for p in (self.log_path, self._tmp_video):
            if p is not None:
                with contextlib.suppress(OSError):
                    p.unlink()

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_test_clip(path: Path, seconds: float = 3.0, fps: int = 10, size: tuple[int, int] = (320, 240)) -> Path:
    """A small H.264 MP4 (moving box + frame counter) via ffmpeg, for decode/RTSP tests."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise ServiceError("ffmpeg not found: install the Debian package 'ffmpeg'")
    w, h = size
    subprocess.run(
        [ffmpeg, "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc2=size={w}x{h}:rate={fps}:duration={seconds}",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", str(fps), "-bf", "0", str(path)],
        check=True,
    )
    return path


if __name__ == "__main__":  # manual smoke: python -m tests.services
    with MosquittoBroker() as b:
        print("mosquitto", b.port)
    with PostgresServer() as pg:
        print("postgres", pg.url())
    sys.exit(0)
