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
