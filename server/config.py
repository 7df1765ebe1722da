"""Server settings (CLI flags map onto these models; unknown keys are errors)."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from edge.event import MAX_MESSAGE_BYTES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttSettings(_Strict):
    host: str = Field(default="127.0.0.1", description="Broker host.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port (8883 usually for TLS).")
    username: str | None = Field(default=None, description="Broker user name.")
    password: str | None = Field(default=None, description="Broker password.")
    tls_ca: Path | None = Field(default=None, description="CA certificate; enables TLS when set.")
    group: str = Field(default="collectors", pattern=r"^[A-Za-z0-9_-]{1,64}$",
                       description="Shared-subscription group: collectors in one group split the load.")
    client_id: str | None = Field(
        default=None, description="Stable MQTT client id; the persistent session is keyed on it. "
        "Default: roadeye-collector-<group>-<hostname>.")
    session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0,
                                  description="How long the broker keeps our session while we are away.")
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    receive_maximum: int = Field(default=100, ge=1, le=65535,
                                 description="Unacknowledged messages in flight to us at once.")

    def resolved_client_id(self) -> str:
        return self.client_id or f"roadeye-collector-{self.group}-{socket.gethostname()}"[:64]


class CollectorSettings(_Strict):
    batch_max: int = Field(default=32, ge=1, le=1000, description="Messages per group commit.")
    batch_linger_s: float = Field(default=0.005, ge=0, le=1, description="Wait this long to fill a batch.")
    max_message_bytes: int = Field(default=MAX_MESSAGE_BYTES, gt=0, description="Larger messages are dead-lettered.")
    retry_max_s: float = Field(default=30.0, gt=0, description="Backoff ceiling while storage is down.")
    workers: int = Field(default=0, ge=0, le=64, description="Validation processes (0 = validate in the collector "
                         "process; the CLI defaults to one per core, at most 4).")
    intake_max_messages: int = Field(default=500, ge=1, description="Messages held in memory (received, not yet "
                                     "stored). Beyond it QoS 0 messages are dropped and QoS 1 ones wait in the "
                                     "broker (the collector stops reading).")
    intake_max_bytes: int = Field(default=64 * 1024 * 1024, gt=0, description="The same bound in payload bytes.")
    intake_wait_s: float = Field(default=5.0, gt=0, le=60, description="Longest wait for room per QoS 1 message "
                                 "(keeps keep-alives flowing during a storage outage).")
    receipts: bool = Field(default=True, description="Publish a storage Receipt per (site, device) after each "
                           "group commit on roadeye/v1/<site>/<device>/receipts (QoS 1).")


class WebSettings(_Strict):
    host: str = Field(default="127.0.0.1", description="HTTP bind address.")
    port: int = Field(default=8080, ge=0, le=65535, description="HTTP port (0 = any free port).")
    second_stage_review: bool = Field(
        default=False, description="Require a second reviewer before an event is final.")
    cookie_secure: bool = Field(default=False, description="Mark cookies Secure (set when served over HTTPS).")
    session_max_age_s: int = Field(default=12 * 3600, gt=0, description="Session lifetime.")
    claim_s: int = Field(default=300, gt=0, description="How long a queue item stays reserved for one reviewer.")


class ServerConfig(_Strict):
    data_dir: Path = Field(default=Path("var/server"), description="Where the SQLite file, keys and evidence live.")
    db_url: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite:///<data_dir>/roadeye.db.")
    evidence: str | None = Field(default=None, description="Evidence store: a directory or s3://bucket/prefix.")
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    collector: CollectorSettings = Field(default_factory=CollectorSettings)
    web: WebSettings = Field(default_factory=WebSettings)

    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{(self.data_dir / 'roadeye.db').resolve()}"

    def evidence_spec(self) -> str:
        return self.evidence or str(self.data_dir / "evidence")

    def session_secret(self) -> bytes:
        """A per-installation secret kept in the data dir (0600), so restarts keep sessions."""
        env = os.environ.get("ROADEYE_SESSION_SECRET")
        if env:
            return env.encode()
        path = self.data_dir / "session.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".session.key.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)  # atomic and first-wins when `run` and `web` start together
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        return path.read_text().strip().encode()
