"""Shared pytest fixtures: real services on loopback (see tests/services.py) and paths."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.services import MosquittoBroker, PostgresServer, RtspServer  # noqa: E402

ARTIFACTS = REPO / "tests" / "artifacts"


def datasets_root() -> Path:
    """Real datasets (never copied into the repo): $ROADEYE_DATASETS or ../shared/datasets."""
    return Path(os.environ.get("ROADEYE_DATASETS", REPO.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def datasets() -> Path:
    root = datasets_root()
    if not root.is_dir():
        pytest.skip(f"real datasets not found at {root} (set ROADEYE_DATASETS)")
    return root


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


# -- mosquitto ---------------------------------------------------------------------------
@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., MosquittoBroker]]:
    """Make customised real brokers: broker_factory(tls=True, passwords={...}, acl="...")."""
    made: list[MosquittoBroker] = []

    def make(**kwargs: object) -> MosquittoBroker:
        b = MosquittoBroker(tmp_path / f"mqtt-{len(made)}", **kwargs)  # type: ignore[arg-type]
        made.append(b)
        return b.start()

    yield make
    for b in made:
        b.stop(signal.SIGKILL if b.running else signal.SIGTERM)


@pytest.fixture
def mosquitto(broker_factory: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    """A fresh real mosquitto (persistence on, max_queued_messages set) on a free port."""
    return broker_factory()


# -- PostgreSQL --------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    # Own temp dir under /tmp: as root the server runs as 'postgres', which cannot enter
    # pytest's private tmp tree.
    pg = PostgresServer()
    pg.start()
    yield pg
    pg.close()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """SQLAlchemy URL of a fresh, empty database on the session's real PostgreSQL."""
    return postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")


# -- RTSP --------------------------------------------------------------------------------
@pytest.fixture
def rtsp_server_factory() -> Iterator[Callable[..., RtspServer]]:
    made: list[RtspServer] = []

    def make(video: Path, **kwargs: object) -> RtspServer:
        s = RtspServer(Path(video), **kwargs)  # type: ignore[arg-type]
        made.append(s)
        return s.start()

    yield make
    for s in made:
        s.close()
