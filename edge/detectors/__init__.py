"""Detector registry: builds the cascade's models from the box config.

Each model is an ONNX file; which runtime class loads it follows from its role (YOLO
detectors vs the CTC plate reader). Provider choice and CPU fallback are logged per model,
and each loaded model yields a `ModelRef` (name and version from the ONNX metadata,
SHA-256 of the file) that every event carries.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.event import ModelRef

log = logging.getLogger(__name__)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_ref(path: str | Path, metadata: dict[str, str] | None = None) -> ModelRef:
    p = Path(path)
    meta = metadata or {}
    name = (meta.get("roadeye_model") or p.stem)[:64]
    version = (meta.get("version") or "unversioned")[:64]
    return ModelRef(name=name, version=version, sha256=file_sha256(p))


#: an onnxruntime provider: its name, or (name, options) as InferenceSession accepts it
Provider = str | tuple[str, dict[str, str]]


def provider_name(p: Provider) -> str:
    return p if isinstance(p, str) else p[0]


def provider_options(names: list[str], trt_cache_dir: Path | None = None, trt_fp16: bool = True,
                     device_id: int = 0) -> list[Provider]:
    """Options per GPU provider. TensorRT builds an engine per model and input shape on first
    use (minutes on a roadside box): the engine and timing caches on disk make every later
    start take seconds. FP16 halves TensorRT's latency on these small detectors."""
    out: list[Provider] = []
    for name in names:
        if name == "TensorrtExecutionProvider":
            opts = {"device_id": str(device_id), "trt_fp16_enable": str(trt_fp16)}
            if trt_cache_dir is not None:
                Path(trt_cache_dir).mkdir(parents=True, exist_ok=True)
                opts |= {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(trt_cache_dir),
                         "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(trt_cache_dir)}
            out.append((name, opts))
        elif name == "CUDAExecutionProvider":
            out.append((name, {"device_id": str(device_id)}))
        else:
            out.append(name)
    return out


def with_cpu_fallback(providers: list[Provider]) -> list[Provider]:
    """Keep the requested providers this onnxruntime build has, always ending with CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    chosen = [p for p in providers if provider_name(p) in available]
    missing = [provider_name(p) for p in providers if provider_name(p) not in available]
    if missing:
        log.warning("execution providers %s are not available in this onnxruntime build (have %s); "
                    "falling back to %s", missing, available,
                    [*map(provider_name, chosen), "CPUExecutionProvider"])
    if "CPUExecutionProvider" not in map(provider_name, chosen):
        chosen.append("CPUExecutionProvider")
    return chosen


def session_options(threads: int | None = None, spin: bool = False) -> Any:
    """onnxruntime CPU session options shared by every model.

    Spinning is off by default: onnxruntime's intra-op threads otherwise busy-wait between
    operators, which steals the cores the decode thread needs; in back-to-back runs on the 2-core
    build box at load ~8 (noisy), a 2-thread session ran the vehicles model in 108 ms with
    spinning and 22 ms without. `threads` None keeps onnxruntime's default (one per physical core)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return opts


def detector_weights(path: Path, precision: str, on_cpu: bool) -> Path:
    """Which file of a detector to load for `precision` (see ModelsConfig.precision)."""
    q = path.with_name(f"{path.stem}.int8.onnx")
    if precision == "fp32" or path.name.endswith(".int8.onnx"):
        return path
    if precision == "int8":
        if not q.is_file():
            raise FileNotFoundError(f"models.precision is int8 but {q} does not exist "
                                    f"(make it with `roadeye models quantize`, or set precision: fp32)")
        return q
    if precision != "auto":
        raise ValueError(f"models.precision must be auto, fp32 or int8, got {precision!r}")
    return q if on_cpu and q.is_file() else path


def stale_twin(twin_metadata: dict[str, str], float_path: Path) -> str | None:
    """Why an INT8 twin does not belong to the float file beside it, or None if it does.

    `roadeye models quantize` records the float file's sha256; a twin left over from an earlier
    release would otherwise run silently with other weights than the ones the card describes.
    """
    recorded = twin_metadata.get("quantized_from_sha256")
    if not recorded:
        return "records no quantized_from_sha256"
    if recorded != file_sha256(float_path):
        return f"was quantized from another {float_path.name} (sha256 {recorded[:12]}...)"
    return None


@dataclass
class LoadedModels:
    vehicles: Any
    plates: Any | None
    occupants: Any | None
    plate_reader: Any | None
    refs: list[ModelRef]


def load_models(vehicles: Path, occupants: Path | None, plates: Path | None, plate_reader: Path | None,
                providers: list[str], vehicle_conf: float = 0.35, plate_conf: float = 0.35,
                occupant_conf: float = 0.25, threads: int | None = None, spin: bool = False,
                trt_cache_dir: Path | None = None, trt_fp16: bool = True, device_id: int = 0,
                precision: str | Mapping[str, str] = "fp32") -> LoadedModels:
    """Load (and warm up) every model; a missing required file is a clear error.

    `precision` is one word for every detector or a {"vehicles"|"plates"|"occupants": word}
    mapping (a detector it leaves out runs fp32); see `detector_weights`.
    """
    from edge.detectors.plate_reader import OnnxPlateReader
    from edge.detectors.yolo import OnnxYoloDetector

    provs = with_cpu_fallback(provider_options(providers, trt_cache_dir, trt_fp16, device_id))
    refs: list[ModelRef] = []

    on_cpu = provider_name(provs[0]) == "CPUExecutionProvider"

    def yolo(role: str, given: Path, conf: float) -> Any:
        word = precision if isinstance(precision, str) else precision.get(role, "fp32")
        path = detector_weights(Path(given), word, on_cpu)
        det = OnnxYoloDetector(path, providers=provs, conf=conf, threads=threads, spin=spin)
        if path != Path(given) and (why := stale_twin(det.metadata, Path(given))):
            if word == "int8":
                raise ValueError(f"{path} {why}: re-run `roadeye models quantize`, or set "
                                 f"models.precision.{role}: fp32")
            log.warning("%s %s: running the float %s instead", path.name, why, Path(given).name)
            path = Path(given)
            det = OnnxYoloDetector(path, providers=provs, conf=conf, threads=threads, spin=spin)
        log.info("%s runs on %s", path.name, det.provider)
        refs.append(model_ref(path, det.metadata))
        return det

    if not Path(vehicles).is_file():
        raise FileNotFoundError(f"vehicles model not found: {vehicles}")
    v = yolo("vehicles", vehicles, min(vehicle_conf, 0.1))  # low boxes feed ByteTrack's second stage
    # low-confidence straps and phones are kept (as "undecided" evidence for the rules);
    # people are filtered at occupant_conf in the cascade
    o = (yolo("occupants", occupants, min(occupant_conf, 0.1))
         if occupants is not None and Path(occupants).is_file() else None)
    if occupants is not None and o is None:
        log.warning("occupants model %s not found: no seat-belt / phone decisions will be made", occupants)
    p = yolo("plates", plates, plate_conf) if plates is not None and Path(plates).is_file() else None
    if plates is not None and p is None:
        log.warning("plates model %s not found: events will carry no plate", plates)
    r = None
    if p is not None and plate_reader is not None and Path(plate_reader).is_file():
        r = OnnxPlateReader(plate_reader, providers=provs, threads=threads, spin=spin)
        log.info("%s runs on %s", Path(plate_reader).name, r.provider)
        refs.append(model_ref(plate_reader, r.metadata))
    elif plate_reader is not None:
        log.warning("plate reader %s not loaded: plates will be boxed but not read", plate_reader)
    return LoadedModels(v, p, o, r, refs)
