"""Fixtures of the fault suite: a device key pair and a per-test scratch layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.faults_helpers import DeviceKeys, make_device


@pytest.fixture
def device(tmp_path: Path) -> DeviceKeys:
    return make_device(tmp_path / "keys", "fault-box")
