"""Device keys: keygen writes a 0600 private PEM + public PEM that verify each other."""

from __future__ import annotations

import stat
from pathlib import Path

from click.testing import CliRunner

from edge.commands import edge
from edge.keys import load_private_key, load_public_key


def test_keygen_cli(tmp_path: Path) -> None:
    res = CliRunner().invoke(edge, ["keygen", "--out", str(tmp_path / "k"), "--device-id", "box-01"])
    assert res.exit_code == 0, res.output
    priv, pub = tmp_path / "k/box-01.key", tmp_path / "k/box-01.pub"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert priv.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    k, p = load_private_key(priv), load_public_key(pub)
    p.verify(k.sign(b"x"), b"x")
    # refuses to overwrite a device key
    res = CliRunner().invoke(edge, ["keygen", "--out", str(tmp_path / "k"), "--device-id", "box-01"])
    assert res.exit_code != 0 and "already exists" in res.output
    res = CliRunner().invoke(edge, ["keygen", "--out", str(tmp_path / "k"), "--device-id", "bad id"])
    assert res.exit_code != 0
