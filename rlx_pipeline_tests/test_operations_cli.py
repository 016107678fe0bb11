"""Dagster's own CLI on the pipeline as a person runs it: `dagster asset materialize` follows RLX_EXECUTOR, and a
failure says what went wrong, where, and what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from rlx_pipeline.settings import Settings
from rlx_pipeline.simulator import SimConfig, simulate
from rlx_pipeline_tests.conftest import DATE, PARTITION_KEY, SYMBOL
from rlx_pipeline_tests.operations_servers import ROOT, SQLITE_DAGSTER_YAML


def _materialize(tmp_path: Path, select: str, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(SQLITE_DAGSTER_YAML.format(base=home / "storage"))
    cmd = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "rlx_pipeline.definitions"]
    proc = subprocess.run(
        [*cmd, "--select", select, "--partition", PARTITION_KEY],
        cwd=ROOT,
        env={**os.environ, "DAGSTER_HOME": str(home), "RLX_DATA_DIR": str(data), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, home


def _write_lake_day(data: Path) -> None:
    truth = simulate(SimConfig(symbol=SYMBOL, start=f"{DATE}T00:00:00Z", duration_s=20, seed=4))
    truth.write_lake(Settings.from_env({"RLX_DATA_DIR": str(data)}).layout.lake_root)


def test_asset_materialize_runs_every_step_in_one_process_with_in_process(tmp_path):
    _write_lake_day(tmp_path / "data")
    proc, home = _materialize(tmp_path, "lake_trades,lake_book,golden_samples", RLX_EXECUTOR="in_process")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        steps = [
            e.dagster_event
            for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
            if e.dagster_event
        ]
        run_start = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_START)[0].dagster_event
    assert {s.step_key for s in steps} >= {"lake_trades", "lake_book", "golden_samples"}
    assert {s.pid for s in steps} == {run_start.pid}  # every step in the run's own process
