"""Shared fixtures: the Prefect test server (one per session) and the real-data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("WANDB_MODE", "offline")

ANIME5K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "anime-5k"


@pytest.fixture(scope="session")
def anime5k_dir() -> Path:
    if not (ANIME5K / "anime_history.dat").is_file():
        pytest.skip(f"real data not present at {ANIME5K}")
    return ANIME5K


@pytest.fixture(scope="session")
def prefect_server():
    """A real temporary Prefect API (SQLite) for flow tests, started once."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=240):
        yield
