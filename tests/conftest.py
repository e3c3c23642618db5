"""Shared fixtures. Fixture modules of each area are registered in `pytest_plugins`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EMOEDGE_DATA", REPO.parent / "shared" / "data"))

pytest_plugins: list[str] = [
    "tests.tiny_corpora",
    "tests.fixtures_mqtt",
    "tests.fixtures_export",
    "tests.fixtures_daemon",
]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (or $EMOEDGE_DATA); skips the test with the reason when it is absent."""
    if not (SHARED_DATA / "ravdess").is_dir() or not (SHARED_DATA / "fer2013").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (ravdess/ and fer2013/ needed)")
    return SHARED_DATA
