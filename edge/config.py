"""The one YAML file per edge box: device, cameras, models, broker, outbox, metrics.

Every model forbids unknown keys, so a typo in a hand-edited file fails at start-up with
the dotted key path (e.g. `cameras.0.analysis_fps: ...`) instead of silently running on a
default. Relative paths are resolved against the config file's folder, so a config and
its camera YAMLs / keys can be moved together.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge.camera import CalibrationFileError, CameraCalibration, ViolationThreshold, load_camera

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class ConfigError(ValueError):
    """The box config is unreadable or invalid; the message names the file and key path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DecoderBackend(StrEnum):
    OPENCV = "opencv"
    PYAV = "pyav"
    FFMPEG = "ffmpeg"


class DeviceConfig(_Strict):
    id: Identifier = Field(description="Device id; also the key_id of its event signatures.")
    site: Identifier = Field(description="Site id used in MQTT topics.")
    key_path: Path | None = Field(
        default=None, description="Ed25519 private key (PEM) that signs events; None: events unsigned."
    )
    clock_source: str = Field(default="unknown", description="ntp | ptp | gps | rtc | unknown (stated in events).")
    clock_synchronized: bool = Field(default=False, description="Whether the clock source reports lock.")


class CameraConfig(_Strict):
    id: Identifier = Field(description="Camera id (topic + events).")
    source: str = Field(description="rtsp://... URL, a video file path, or a V4L2 device (/dev/video0).")
    decoder: DecoderBackend = Field(default=DecoderBackend.OPENCV, description="opencv | pyav | ffmpeg.")
    hwaccel: str | None = Field(
        default=None, description="FFmpeg -hwaccel value for the ffmpeg decoder (e.g. cuda, vaapi)."
    )
    analysis_fps: float = Field(default=5.0, gt=0, le=120, description="Frames analysed per second.")
    calibration: Path | None = Field(
        default=None, description="Camera YAML (zones, thresholds); None: whole frame, defaults."
    )
    open_timeout_s: float = Field(default=10.0, gt=0, description="RTSP open timeout.")
    read_timeout_s: float = Field(default=5.0, gt=0, description="RTSP read timeout before reconnecting.")
    reconnect_max_s: float = Field(default=30.0, gt=0, description="Cap of the exponential reconnect backoff.")


Precision = Literal["auto", "fp32", "int8"]


class PrecisionConfig(_Strict):
    """Which weights of each detector to load: the float file or its INT8 twin.

    int8: the quantized <name>.int8.onnx beside the detector file (`roadeye models quantize`);
    fp32: the file as given; auto: int8 where the models run on the CPU provider and the twin
    exists, else fp32 (GPU boxes run TensorRT FP16 instead). Per model because the twins do not
    pay off alike: on CPU the vehicles and occupants twins are 1.24-1.45x faster at equal
    accuracy, while the plates twin is no faster and loses EU/US plates (models/cards/plates.md),
    so plates default to fp32.
    """

    vehicles: Precision = Field(default="auto", description="Vehicle detector weights.")
    plates: Precision = Field(default="fp32", description="Plate detector weights (its INT8 twin is no "
                                                          "faster on CPU and less accurate: see its card).")
    occupants: Precision = Field(default="auto", description="Occupants detector weights.")

    @model_validator(mode="before")
    @classmethod
    def _one_word_for_all(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"vehicles": v, "plates": v, "occupants": v}
        return v


class ModelsConfig(_Strict):
    vehicles: Path = Field(default=Path("models/vehicles.onnx"), description="Vehicle + windshield detector.")
    plates: Path | None = Field(default=Path("models/plates.onnx"), description="Plate detector on vehicle crops.")
    occupants: Path = Field(default=Path("models/occupants.onnx"), description="Occupants on windshield crops.")
    plate_reader: Path | None = Field(default=Path("models/plate_reader.onnx"), description="Plate text reader.")
    providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        description="onnxruntime providers in preference order; CPU is always the fallback.",
    )
    cpu_threads: int | None = Field(default=None, ge=1, le=256,
                                    description="onnxruntime intra-op threads per model on the CPU provider "
                                                "(None: one per physical core).")
    cpu_spin: bool = Field(default=False,
                           description="Let onnxruntime's CPU threads busy-wait between operators: lower latency "
                                       "on an otherwise idle box, but it starves the decode threads.")
    gpu_device: int = Field(default=0, ge=0, description="CUDA / TensorRT device index.")
    trt_cache_dir: Path | None = Field(
        default=Path("var/edge/trt-cache"),
        description="TensorRT engine + timing cache (first start builds engines for minutes; later ones "
                    "load them); None: no cache.")
    trt_fp16: bool = Field(default=True, description="Let TensorRT run in FP16.")
    precision: PrecisionConfig = Field(
        default_factory=PrecisionConfig,
        description="Detector weights per model (auto / fp32 / int8); one word sets all three, e.g. "
                    "`precision: fp32`. The plate reader always runs in float.")
    vehicle_conf: float = Field(default=0.35, ge=0, le=1, description="Vehicle detection threshold.")
    plate_conf: float = Field(default=0.35, ge=0, le=1, description="Plate detection threshold.")
    occupant_conf: float = Field(default=0.25, ge=0, le=1, description="Occupant detection threshold.")


class BrokerConfig(_Strict):
    host: str = Field(default="127.0.0.1", description="MQTT broker host.")
    port: int = Field(default=1883, ge=1, le=65535)
    tls: bool = Field(default=False, description="Use TLS.")
    ca_cert: Path | None = Field(default=None, description="CA bundle for TLS (None: system CAs).")
    client_cert: Path | None = None
    client_key: Path | None = None
    username: str | None = None
    password: str | None = None
    client_id: str | None = Field(default=None, description="MQTT client id (default: roadeye-edge-<device>).")
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    heartbeat_s: float = Field(default=30.0, gt=0, description="Heartbeat period.")
    max_inflight: int = Field(default=20, ge=1, le=1000, description="Un-acked QoS 1 messages at once.")
    require_receipt: bool = Field(
        default=True,
        description="Keep each event until a collector's storage receipt (roadeye/v1/<site>/<device>/receipts) "
                    "names it, not just until the broker's PUBACK; resend when none comes in time. "
                    "Turn off only for a broker without a roadeye collector behind it.")
    receipt_timeout_s: float = Field(
        default=60.0, gt=0, le=86400,
        description="Resend an event PUBACKed this long ago without a receipt; doubles per resend (max 32x).")


class OutboxConfig(_Strict):
    path: Path = Field(default=Path("var/edge/outbox.sqlite3"), description="SQLite outbox file.")
    max_bytes: int = Field(default=2 * 1024**3, gt=0, description="Alarm when pending payloads exceed this.")
    max_events: int = Field(default=100_000, gt=0, description="Alarm when pending events exceed this.")


class EdgeConfig(_Strict):
    device: DeviceConfig
    cameras: list[CameraConfig] = Field(min_length=1)
    models: ModelsConfig = Field(default_factory=lambda: ModelsConfig.model_validate({}))
    broker: BrokerConfig | None = Field(default=None, description="None: no publishing (replay to file).")
    outbox: OutboxConfig = Field(default_factory=lambda: OutboxConfig.model_validate({}))
    metrics_port: int | None = Field(default=None, ge=0, le=65535, description="Prometheus port; None: off.")
    base_dir: Path = Field(default=Path("."), exclude=True, description="Folder relative paths resolve against.")

    @model_validator(mode="after")
    def _unique_cameras(self) -> EdgeConfig:
        ids = [c.id for c in self.cameras]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"camera ids must be unique, repeated: {sorted(dup)}")
        return self

    def resolve(self, p: Path | None) -> Path | None:
        if p is None:
            return None
        p = p.expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    def calibration_for(self, cam: CameraConfig, image_size: tuple[int, int] | None = None) -> CameraCalibration:
        path = self.resolve(cam.calibration)
        if path is None:
            return CameraCalibration(camera_id=cam.id, image_size=image_size or (0, 0))
        try:
            cal = load_camera(path)
        except CalibrationFileError as exc:
            raise ConfigError(f"cameras[{cam.id}].calibration: {exc}") from exc
        return cal


def _format(exc: ValidationError) -> str:
    return "; ".join(
        (".".join(str(p) for p in e["loc"]) or "<root>") + ": " + e["msg"] for e in exc.errors()
    )


def parse_config(raw: Any, base_dir: Path = Path("."), source: str = "<config>") -> EdgeConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(raw).__name__}")
    try:
        cfg = EdgeConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_format(exc)}") from exc
    return cfg.model_copy(update={"base_dir": base_dir})


def load_config(path: str | Path) -> EdgeConfig:
    """Load and validate the box config; errors name the file and the bad key path."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    cfg = parse_config(raw, base_dir=path.resolve().parent, source=str(path))
    for cam in cfg.cameras:  # fail at start-up, not when the first violation is decided
        cfg.calibration_for(cam)
    return cfg


def default_threshold(cal: CameraCalibration, violation: str) -> ViolationThreshold:
    return cal.thresholds.get(violation) or ViolationThreshold.model_validate({})


def config_hash(cal: CameraCalibration, extra: dict[str, Any] | None = None) -> str:
    """SHA-256 of the canonical JSON of what decides events (calibration + thresholds + extras)."""
    body = {"camera": cal.model_dump(mode="json"), "extra": extra or {}}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
