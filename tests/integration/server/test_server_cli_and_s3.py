"""`roadeye server` admin commands (db upgrade, adduser, register-device, export-reviews,
verify with tampering) and the S3 evidence backend against moto's real HTTP server."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from edge.event import event_topic
from server.cli import server
from server.db.engine import Database
from server.evidence_store import LocalEvidenceStore, S3EvidenceStore
from server.ingest import Ingestor, Outcome
from server.sample import SampleDevice, make_message
from server.services import verify_all
from tests.services import free_port

pytestmark = pytest.mark.services


@pytest.fixture
def datadir(tmp_path: Path) -> Path:
    return tmp_path / "srv"


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    res = CliRunner().invoke(server, list(args), input=input, catch_exceptions=False)
    return res.exit_code, res.output


def test_admin_commands_and_verify(datadir: Path, tmp_path: Path) -> None:
    code, out = run("db", "upgrade", "--data-dir", str(datadir))
    assert code == 0 and "revision 0002" in out
    code, out = run("adduser", "chief", "--role", "admin", "--password-stdin", "--data-dir", str(datadir),
                    input="long-enough-pw\n")
    assert code == 0 and "created admin 'chief'" in out
    code, out = run("adduser", "chief", "--password-stdin", "--data-dir", str(datadir), input="long-enough-pw\n")
    assert code == 1 and "already exists" in out
    code, out = run("adduser", "bob", "--password-stdin", "--data-dir", str(datadir), input="short\n")
    assert code == 1 and "at least 8" in out

    dev = SampleDevice()
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    code, out = run("register-device", dev.device_id, "--public-key", str(bad), "--data-dir", str(datadir))
    assert code == 1 and "not a PEM public key" in out
    pem = tmp_path / "dev.pub"
    pem.write_text(dev.public_pem)
    code, out = run("register-device", dev.device_id, "--public-key", str(pem), "--site", dev.site_id,
                    "--data-dir", str(datadir))
    assert code == 0 and '"active": true' in out

    db = Database(f"sqlite:///{(datadir / 'roadeye.db').resolve()}")
    store = LocalEvidenceStore(datadir / "evidence")
    ing = Ingestor(db, store)
    msgs = [make_message(dev, seed=i)[0] for i in range(3)]
    for m in msgs:
        assert ing.ingest(event_topic(dev.site_id, dev.camera_id), m.to_bytes()) == Outcome.STORED
    code, out = run("verify", "--data-dir", str(datadir))
    assert code == 0 and '"ok": true' in out and '"evidence_files": 9' in out

    # tamper 1: rewrite an evidence file on disk
    sha = msgs[0].event.evidence[0].sha256
    path = store.path_for(sha)
    os.chmod(path, 0o644)
    path.write_bytes(b"\xff\xd8 doctored image")
    # tamper 2: edit the signed JSON in the database (plate changed)
    with db.engine.begin() as conn:
        ev1 = msgs[1].event
        assert ev1.plate is not None
        conn.execute(text("UPDATE events SET event_json = replace(event_json, :a, :b) WHERE event_id = :i"),
                     {"a": ev1.plate.text, "b": "京A00000", "i": ev1.event_id})
        # tamper 3: edit an indexed column only
        conn.execute(text("UPDATE events SET confidence = 0.99 WHERE event_id = :i"), {"i": msgs[2].event.event_id})
    code, out = run("verify", "--data-dir", str(datadir))
    assert code == 1 and '"ok": false' in out
    assert f"evidence overview {sha} was altered" in out
    assert f"event {ev1.event_id}: signature does not verify" in out
    assert f"event {msgs[2].event.event_id}: column confidence = 0.99" in out

    out_csv = tmp_path / "reviews.csv"
    code, out = run("export-reviews", "--out", str(out_csv), "--data-dir", str(datadir))
    assert code == 0
    assert out_csv.read_text().splitlines() == ["event_id,camera_id,site_id,violation,confidence,decision,reviewed_at"]
    db.dispose()


def test_run_options_are_validated(datadir: Path) -> None:
    code, out = run("collect", "--data-dir", str(datadir), "--register-device-key", "edge-1")
    assert code == 2 and "DEVICE_ID=PEM_PATH" in out
    code, out = run("web", "--data-dir", str(datadir), "--admin", "nopassword")
    assert code == 2 and "USER:PASSWORD" in out
    code, out = run("collect", "--data-dir", str(datadir), "--group", "a/b")
    assert code == 2 and "bad MQTT option: group" in out
    code, out = run("web", "--data-dir", str(datadir), "--http-port", "70000")
    assert code == 2 and "bad HTTP option: port" in out


@pytest.fixture
def s3() -> Iterator[S3EvidenceStore]:
    """moto's S3 as a real HTTP server on loopback, used through boto3 like any S3 service."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    srv.start()
    try:
        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
        client.create_bucket(Bucket="evidence")
        yield S3EvidenceStore("evidence", prefix="roadeye", client=client)
    finally:
        srv.stop()


def test_s3_evidence_store(s3: S3EvidenceStore, tmp_path: Path) -> None:
    data = b"\xff\xd8 some jpeg"
    sha = hashlib.sha256(data).hexdigest()
    assert not s3.exists(sha)
    assert s3.put(sha, data, "image/jpeg") is True and s3.put(sha, data) is False
    assert s3.get(sha) == data and s3.exists(sha)
    assert s3.key_for(sha) == f"roadeye/{sha[:2]}/{sha[2:4]}/{sha}"
    head = s3.client.head_object(Bucket="evidence", Key=s3.key_for(sha))
    assert head["ContentType"] == "image/jpeg"
    with pytest.raises(KeyError):
        s3.get("0" * 64)
    with pytest.raises(ValueError, match="hash to"):
        s3.put("1" * 64, data)
    with pytest.raises(ValueError, match="64 lower-case hex"):
        s3.get("../../other-bucket/key")
    s3.sync()  # acknowledged PUTs are durable: nothing to flush
    other = b"to be purged"
    other_sha = hashlib.sha256(other).hexdigest()
    assert s3.put_many([(other_sha, other, "image/jpeg")], durable=False) == 1
    assert s3.delete(other_sha) is True and not s3.exists(other_sha) and s3.delete(other_sha) is False
    with pytest.raises(ValueError, match="64 lower-case hex"):
        s3.delete("../../other-bucket/key")
    # the collector's ingest path on S3, then a full verification
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    dev = SampleDevice()
    from server.db.models import Device

    with db.session() as s:
        s.add(Device(device_id=dev.device_id, public_key_pem=dev.public_pem, site_id=dev.site_id))
    ing = Ingestor(db, s3)
    msg, blobs = make_message(dev, seed=5)
    assert ing.ingest(event_topic(dev.site_id, dev.camera_id), msg.to_bytes()) == Outcome.STORED
    assert set(s3.iter_ids()) == {sha, *blobs}
    with db.session() as s:
        rep = verify_all(s, s3)
    assert rep.ok and rep.evidence_files == 3
    db.dispose()


def test_web_command_serves(tmp_path: Path) -> None:
    """`roadeye server web` alone: migrations run, the admin exists, pages and probes answer."""
    import subprocess
    import sys

    import httpx

    from tests.services import wait_port

    port = free_port()
    repo = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "server", "web", "--data-dir", str(tmp_path / "w"),
                             "--http-port", str(port), "--admin", "boss:boss-password-1"],
                            cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port("127.0.0.1", port, 60, proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            assert c.get("/healthz").json() == {"ok": True, "database": "ok"}
            assert c.get("/login").status_code == 200
            token = c.get("/api/auth/session").json()["csrf_token"]
            r = c.post("/api/auth/login", json={"username": "boss", "password": "boss-password-1"},
                       headers={"X-CSRF-Token": token})
            assert r.status_code == 200 and r.json()["user"]["role"] == "admin"
            assert c.get("/api/events").json()["total"] == 0
    finally:
        proc.terminate()
        proc.wait(20)
    assert (tmp_path / "w" / "roadeye.db").exists()
    assert oct((tmp_path / "w" / "session.key").stat().st_mode)[-3:] == "600"


def test_s3_store_from_url_and_environment(s3: S3EvidenceStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--evidence-dir s3://bucket/prefix` with the endpoint and keys from AWS_* variables
    (how MinIO/Ceph deployments configure it); also reopenable in validation workers."""
    from server.evidence_store import open_store

    endpoint = s3.client.meta.endpoint_url
    for k, v in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    store = open_store("s3://evidence/from-env")
    assert isinstance(store, S3EvidenceStore) and store.reopen_spec() == "s3://evidence/from-env"
    data = b"evidence via env config"
    sha = hashlib.sha256(data).hexdigest()
    assert store.put_many([(sha, data, "image/jpeg")]) == 1
    assert s3.client.get_object(Bucket="evidence", Key=f"from-env/{sha[:2]}/{sha[2:4]}/{sha}")["Body"].read() == data
    assert s3.reopen_spec() is None  # a hand-made client cannot be rebuilt in another process
    with pytest.raises(ValueError, match="needs a bucket"):
        open_store("s3://")
