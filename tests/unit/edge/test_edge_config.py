"""Box config: valid files load, bad keys fail naming the key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from edge.commands import edge
from edge.config import ConfigError, load_config

GOOD = {
    "device": {"id": "box-01", "site": "hefei-s1", "key_path": "keys/box-01.key"},
    "cameras": [{"id": "cam1", "source": "rtsp://10.0.0.5/stream", "analysis_fps": 5,
                 "calibration": "cam1.camera.yaml"}],
    "models": {"providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]},
    "broker": {"host": "mqtt.example", "port": 8883, "tls": True, "username": "box-01", "password": "x"},
    "outbox": {"path": "var/outbox.sqlite3", "max_bytes": 1000000},
    "metrics_port": 9108,
}
CAMERA = {"camera_id": "cam1", "image_size": [4096, 2160],
          "zones": {"capture": [[0, 1000], [4096, 1000], [4096, 2160], [0, 2160]]},
          "thresholds": {"no_seatbelt": {"min_confidence": 0.6, "k": 4, "n": 8, "min_driver_px": 64}}}


def write(tmp_path: Path, cfg: dict, camera: dict | None = None) -> Path:
    (tmp_path / "cam1.camera.yaml").write_text(yaml.safe_dump(camera or CAMERA))
    p = tmp_path / "box.yaml"
    p.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return p


def test_good_config_resolves_relative_paths_and_thresholds(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.resolve(cfg.device.key_path) == tmp_path / "keys/box-01.key"
    cal = cfg.calibration_for(cfg.cameras[0])
    assert cal.thresholds["no_seatbelt"].k == 4
    assert cfg.broker is not None and cfg.broker.tls


@pytest.mark.parametrize(("mutate", "needle"), [
    (lambda c: c["cameras"][0].update(analysis_fps=0), "cameras.0.analysis_fps"),
    (lambda c: c["cameras"][0].update(decoder="gstreamer"), "cameras.0.decoder"),
    (lambda c: c["broker"].update(prot=1883), "broker.prot"),
    (lambda c: c["device"].update(id="bad id!"), "device.id"),
    (lambda c: c.update(cameras=[]), "cameras"),
    (lambda c: c.update(cameras=[c["cameras"][0], c["cameras"][0]]), "camera ids must be unique"),
    (lambda c: c.pop("device"), "device"),
])
def test_bad_key_is_named(tmp_path: Path, mutate, needle: str) -> None:  # type: ignore[no-untyped-def]
    import copy

    cfg = copy.deepcopy(GOOD)
    mutate(cfg)
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, cfg))
    assert needle in str(ei.value)
    assert "box.yaml" in str(ei.value)


def test_bad_camera_yaml_is_named(tmp_path: Path) -> None:
    msg = r"cameras\[cam1\].calibration.*thresholds.no_seatbelt.*k \(9\) must not exceed n"
    with pytest.raises(ConfigError, match=msg):
        load_config(write(tmp_path, GOOD, {**CAMERA, "thresholds": {"no_seatbelt": {"k": 9, "n": 8}}}))


def test_check_config_cli(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD)
    res = CliRunner().invoke(edge, ["check-config", str(p)])
    # models and key do not exist in tmp_path: named, exit 1
    assert res.exit_code == 1
    assert "models.vehicles: file not found" in res.output
    assert "device.key_path" in res.output
    bad = write(tmp_path, {**GOOD, "metrics_prot": 1})
    res = CliRunner().invoke(edge, ["check-config", str(bad)])
    assert res.exit_code != 0 and "metrics_prot" in res.output


def test_shipped_example_config_is_valid() -> None:
    import edge

    path = Path(edge.__file__).with_name("box.example.yaml")
    from edge.config import parse_config

    cfg = parse_config(yaml.safe_load(path.read_text()), path.parent, str(path))
    assert cfg.cameras[0].analysis_fps == 5
    assert cfg.broker is not None and cfg.broker.tls
