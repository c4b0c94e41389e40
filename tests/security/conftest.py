"""Fixtures shared by the security tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecflow_lab.security import generate_keypair


@pytest.fixture
def keydir(tmp_path: Path) -> Path:
    """The service owner's keys: server + client keypairs (0600 secrets, 0700 directory)."""
    d = tmp_path / "keys"
    generate_keypair("server", d)
    generate_keypair("client", d)
    return d
