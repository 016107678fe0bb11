"""A backfill through Dagster's own CLI (`dagster job backfill`) over two days, one of which fails validation:
the good day lands end to end, the bad day stops at its failed check and stays blocked, and the summary says so."""

from __future__ import annotations

import sys
import time

import dagster as dg
import pytest

from rlx_pipeline import gate
from rlx_pipeline.orchestration.backfills import backfill_summary, format_summary
from rlx_pipeline.settings import Settings
from rlx_pipeline_tests.conftest import SYMBOL
from rlx_pipeline_tests.operations_servers import deployment

GOOD, BAD = "2024-08-09", "2024-08-10"


@pytest.mark.slow
def test_backfill_completes_good_days_and_blocks_bad_ones(tmp_path, monkeypatch):
    from rlx_pipeline.simulator import SimConfig, faults, simulate

    deployed = deployment(tmp_path)
    home = deployed.home
    layout = Settings.from_env({"RLX_DATA_DIR": str(deployed.data)}).layout
    for day in (GOOD, BAD):
        truth = simulate(SimConfig(symbol=SYMBOL, start=f"{day}T00:00:00Z", duration_s=30, seed=3))
        # the bad day's trade sizes are scaled: the K-S check of validation fails and the gate closes
        tables = faults.shift_trade_sizes(truth.lake_tables(), 1.6) if day == BAD else None
        truth.write_lake(layout.lake_root, tables=tables)
        truth.write_capture(layout.capture_dir / "imported" / f"sim-{day}.jsonl.zst")

    keys = [f"{GOOD}|{SYMBOL}", f"{BAD}|{SYMBOL}"]
    cmd = [sys.executable, "-m", "dagster", "job", "backfill", "-m", "rlx_pipeline.definitions"]
    proc = deployed.run(*cmd, "-j", "daily_pipeline", "--partitions", ",".join(keys), "--noprompt")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        (backfill,) = instance.get_backfills()
        deadline = time.monotonic() + 300
        while True:  # the runs go on in their own processes
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill.backfill_id}))
            if len(runs) == 2 and all(r.is_finished for r in runs):
                break
            assert time.monotonic() < deadline, [r.status for r in runs]
            time.sleep(1)
        rows = {r.partition: r for r in backfill_summary(instance, backfill.backfill_id)}
        print(format_summary(list(rows.values())))

        good, bad = rows[keys[0]], rows[keys[1]]
        assert good.status == "SUCCESS" and (good.failed_checks, good.failed_steps, good.blocked) == (
            [],
            [],
            [],
        )
        assert set(good.materialized) == {
            "lake_trades", "lake_book", "lake_book_delta", "golden_samples",
            "validation_report", "unified_stream", "fidelity_report",
        }  # fmt: skip
        assert bad.status == "FAILURE"
        assert "validation_report.validation_ks" in bad.failed_checks, bad.failed_checks
        assert "unified_stream" not in bad.materialized
        assert {"unified_stream", "fidelity_report"} <= set(bad.blocked), bad.blocked
        for asset, parts in (("fidelity_report", {keys[0]}), ("unified_stream", {keys[0]})):
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == parts
    assert layout.unified(GOOD, SYMBOL).is_file() and layout.unified_book(GOOD, SYMBOL).is_file()
    assert not layout.unified(BAD, SYMBOL).exists() and not layout.unified_book(BAD, SYMBOL).exists()
    with pytest.raises(gate.GateClosed):  # the bad day stays blocked for later runs too
        gate.require_passed(layout, BAD, SYMBOL)
