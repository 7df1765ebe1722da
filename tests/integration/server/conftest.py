"""Fixtures for the server's integration tests: each storage test runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from server.db.engine import Database
from server.db.models import Device
from server.evidence_store import LocalEvidenceStore
from server.ingest import Ingestor
from server.sample import SampleDevice


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'roadeye.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    d = Database(db_url)
    yield d
    d.dispose()


@pytest.fixture
def store(tmp_path: Path) -> LocalEvidenceStore:
    return LocalEvidenceStore(tmp_path / "evidence")


@pytest.fixture
def device() -> SampleDevice:
    return SampleDevice()


def register(db: Database, dev: SampleDevice, site: str | None = None) -> None:
    with db.session() as s:
        s.add(Device(device_id=dev.device_id, public_key_pem=dev.public_pem, site_id=site or dev.site_id))


@pytest.fixture
def ingestor(db: Database, store: LocalEvidenceStore, device: SampleDevice) -> Ingestor:
    register(db, device)
    return Ingestor(db, store, key_ttl_s=0.0)


# -- HTTP ------------------------------------------------------------------------------
from fastapi.testclient import TestClient  # noqa: E402

from server.auth import create_user  # noqa: E402
from server.config import ServerConfig, WebSettings  # noqa: E402

PASSWORD = "correct horse battery"


def make_client(db: Database, store: LocalEvidenceStore, data_dir: Path, second_stage: bool = False) -> TestClient:
    from server.api.app import create_app

    cfg = ServerConfig(data_dir=data_dir, db_url=db.url,
                       web=WebSettings(second_stage_review=second_stage))
    return TestClient(create_app(cfg, db, store), base_url="http://testserver")


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log in like the browser does: fetch a CSRF token, post credentials; returns the new token."""
    token = client.get("/api/auth/session").json()["csrf_token"]
    r = client.post("/api/auth/login", json={"username": username, "password": password},
                    headers={"X-CSRF-Token": token})
    assert r.status_code == 200, r.text
    new = r.json()["csrf_token"]
    client.headers["X-CSRF-Token"] = new
    return str(new)


_HASH: list[str] = []


@pytest.fixture
def users(db: Database) -> dict[str, str]:
    """Four users; argon2 is slow on purpose, so the hash is computed once per test session."""
    from server.auth import hash_password
    from server.db.models import User

    if not _HASH:
        _HASH.append(hash_password(PASSWORD))
    with db.session() as s:
        create_user(s, "admin", PASSWORD, "admin")
        for name, role in (("rev1", "reviewer"), ("rev2", "reviewer"), ("view", "viewer")):
            s.add(User(username=name, password_hash=_HASH[0], role=role, active=True))
    return {"admin": "admin", "rev1": "reviewer", "rev2": "reviewer", "view": "viewer"}
