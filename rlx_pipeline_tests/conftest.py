"""Shared fixtures. Every test writes under its own tmp_path; servers bind 127.0.0.1 on port 0."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rlx_pipeline.layout import DataLayout
from rlx_pipeline.settings import Settings

pytest_plugins = ["rlx_pipeline_tests.lake_fixtures"]

REAL_SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "real-samples"

# The default partitions (RLX_SYMBOLS unset): tests use these keys.
DATE = "2024-08-09"
SYMBOL = "BTC-USDT"
PARTITION_KEY = f"{DATE}|{SYMBOL}"

# Simulated and real sample days last minutes, not the 23 hours a published Crypto Lake day must cover: the tests
# (and the Dagster subprocesses they start, which inherit this environment) say so explicitly.
SHORT_DAY_HOURS = "1"
os.environ["RLX_LAKE_MIN_HOURS"] = SHORT_DAY_HOURS


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"RLX_DATA_DIR": str(tmp_path / "data"), "RLX_LAKE_MIN_HOURS": SHORT_DAY_HOURS})


@pytest.fixture
def layout(settings: Settings) -> DataLayout:
    return settings.layout


@pytest.fixture
def rlx(settings: Settings):
    from rlx_pipeline.orchestration.resources import RlxSettings

    return RlxSettings.from_settings(settings)


@pytest.fixture
def real_samples() -> Path:
    if not REAL_SAMPLES.is_dir():
        pytest.skip(f"real samples not found at {REAL_SAMPLES}")
    return REAL_SAMPLES
