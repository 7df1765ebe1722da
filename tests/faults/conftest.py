"""Fixtures of the fault suite: a device key pair, a per-test scratch layout, and `owned`, which
stops what a case started (tests/faults/faults_helpers.py Owned)."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.faults.faults_helpers import DeviceKeys, Owned, make_device


@pytest.fixture
def device(tmp_path: Path) -> DeviceKeys:
    return make_device(tmp_path / "keys", "fault-box")


@pytest.fixture
def owned() -> Iterator[Owned]:
    """`x = owned(x)` for each collector, edge, store, broker client... the case starts; all are
    stopped newest-first when the case's body ends, pass or fail (see the hook below)."""
    with Owned() as o:
        yield o


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Stop the case's owned things as soon as its body ends, as the try/finally in the body did:
    before fixture teardown stops the broker or database they use, whatever order the fixtures
    were requested in (fixture teardown alone would follow that order)."""
    try:
        return (yield)
    finally:
        o = getattr(item, "funcargs", {}).get("owned")
        if isinstance(o, Owned):
            o.close()
