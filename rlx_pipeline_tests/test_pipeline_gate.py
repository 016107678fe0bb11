"""The gate across runs, through Dagster on simulated days: a verdict holds only for the inputs it judged, a failed
check of any upstream asset closes the gate in later runs, a build is served only after its checks pass, a crashed
validation leaves the gate closed, and the read API refuses (or skips) a day its checks do not vouch for."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from rlx_pipeline import gate
from rlx_pipeline.book import UnverifiedDay, iter_batches, read_book, read_unified
from rlx_pipeline.orchestration.assets import validation
from rlx_pipeline.orchestration.resources import build_resources
from rlx_pipeline.simulator import SimConfig, faults, simulate
from rlx_pipeline_tests.conftest import DATE, SYMBOL
from rlx_pipeline_tests.test_pipeline_faults import ALL, OVERRIDE

DAY2 = "2024-08-10"


@pytest.fixture(scope="module")
def truth():
    return simulate(SimConfig(symbol=SYMBOL, start=f"{DATE}T00:00:00Z", duration_s=90, seed=21))


def _run(settings, selection=None, run_config=None, date=DATE):
    return dg.materialize(
        ALL,
        selection=selection,
        partition_key=f"{date}|{SYMBOL}",
        resources=build_resources(settings),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        run_config=run_config,
    )


def _publish(sim, layout, tables=None, capture="sim.jsonl.zst"):
    sim.write_lake(layout.lake_root, tables=tables)
    path = layout.capture_dir / "imported" / capture
    if not path.exists():
        sim.write_capture(path)


def _evaluation(result, name):
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


def _failure(result) -> str:
    failure = next(e for e in result.all_events if e.is_step_failure)
    user = failure.step_failure_data.user_failure_data  # a domain error, as the dagster.Failure a person sees
    if user is not None and "error" in user.metadata:
        return f"{user.metadata['error'].value}: {user.description}"
    err = failure.step_failure_data.error
    cause = f"\n{err.cause.cls_name}: {err.cause.message}" if err.cause else ""
    return f"{err.cls_name}: {err.message}{cause}"


def _served(layout, date=DATE) -> tuple[bytes, bytes]:
    return layout.unified(date, SYMBOL).read_bytes(), layout.unified_book(date, SYMBOL).read_bytes()


def test_a_stale_verdict_after_a_failed_acquisition_check_keeps_the_gate_closed(truth, settings, layout):
    _publish(truth, layout)
    assert _run(settings).success
    good, staged = _served(layout), layout.staged("trades", DATE, SYMBOL)
    staged_good = staged.read_bytes()

    # Crypto Lake re-publishes the day with 5 trades missing: the full run fails at lake_trades_ok ...
    tables, _ = faults.drop_trades(truth.lake_tables(), 5, seed=4)
    _publish(truth, layout, tables)
    failed = _run(settings)
    assert not failed.success
    check = _evaluation(failed, "lake_trades_ok")
    assert check.passed is False and "trade_id" in check.description
    # ... its build is kept aside (path in the check's metadata), the served staged table is the good one
    rejected = Path(check.metadata["rejected_path"].value)
    assert rejected.parent.parent.name == "rejected" and rejected.parents[2] == staged.parent
    assert pq.read_metadata(rejected).num_rows == pq.read_metadata(staged).num_rows - 5
    assert staged.read_bytes() == staged_good

    # a later run of unified_stream alone (a retry, automation) is refused, naming the failed check
    later = _run(settings, selection=["unified_stream"])
    assert not later.success
    text = _failure(later)
    assert "GateClosed: " in text and "lake_trades.lake_trades_ok failed" in text
    assert "override_validation_gate" in text
    assert _served(layout) == good  # the good stream is still served ...
    with pytest.raises(UnverifiedDay, match=f"{DATE}\\|{SYMBOL} is not verified: .*lake_trades_ok"):
        read_unified(layout.root, SYMBOL, DATE)  # ... but not read as verified while its day's check fails

    # the day is re-published good: the lake check passes, the served staged table is the same content
    _publish(truth, layout)
    assert _run(settings).success
    assert staged.read_bytes() == staged_good and _served(layout) == good
    assert read_unified(layout.root, SYMBOL, DATE).collect().height > 0


def test_inputs_changed_since_validation_close_the_gate_until_validation_runs_again(truth, settings, layout):
    _publish(truth, layout)
    assert _run(settings).success
    good = _served(layout)
    # new lake data that passes the acquisition checks (but not validation: sizes scaled) is staged alone
    _publish(truth, layout, faults.shift_trade_sizes(truth.lake_tables(), 1.6))
    assert _run(settings, selection=["lake_trades"]).success
    later = _run(settings, selection=["unified_stream"])
    assert not later.success
    assert "staged/trades changed since validation judged it" in _failure(later)
    assert _served(layout) == good
    # the thresholds the verdict judged with are part of what it vouches for
    _publish(truth, layout)
    assert _run(settings, selection=["lake_trades", "validation_report"]).success
    looser = settings.__class__.from_env({"RLX_DATA_DIR": str(settings.data_dir), "RLX_KS_D_MAX": "0.5"})
    assert "RLX_KS_D_MAX is 0.5 now but validation judged" in _failure(
        _run(looser, selection=["unified_stream"])
    )
    assert _run(settings, selection=["unified_stream"]).success

    # validation judges new tables (every check passes) while the stream served was built from the previous ones:
    # the read API does not pass it off as verified until it is rebuilt
    tables = truth.lake_tables()
    received = pc.add(tables["trades"].column("receipt_timestamp"), 1_000_000)  # 1 ms later: other content
    i = tables["trades"].schema.get_field_index("receipt_timestamp")
    tables["trades"] = tables["trades"].set_column(i, "receipt_timestamp", received)
    _publish(truth, layout, tables)
    assert _run(settings, selection=["lake_trades", "validation_report"]).success
    with pytest.raises(UnverifiedDay, match="built from other staged tables than the latest verdict judged"):
        read_unified(layout.root, SYMBOL, DATE)
    assert _run(settings, selection=["unified_stream"]).success
    assert read_unified(layout.root, SYMBOL, DATE).collect().height > 0


def _alter_late_snapshot(tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """A deep level of a later `book` snapshot disagrees with the deltas (lake and validation checks still pass:
    only the top of book is compared with the golden ticker), so the reconstruction's self-consistency fails."""
    book = tables["book"]
    col = book.column("bid_10_size").to_numpy(zero_copy_only=False).copy()
    col[5] *= 2
    i = book.schema.get_field_index("bid_10_size")
    return {**tables, "book": book.set_column(i, "bid_10_size", pa.array(col, book.schema.field(i).type))}


def test_a_failed_rebuild_leaves_the_previous_stream_served_and_the_read_api_refuses_the_day(
    truth, settings, layout
):
    _publish(truth, layout)
    assert _run(settings).success
    day2 = simulate(SimConfig(symbol=SYMBOL, start=f"{DAY2}T00:00:00Z", duration_s=60, seed=22))
    _publish(day2, layout, capture="day2.jsonl.zst")
    assert _run(settings, date=DAY2).success
    good = _served(layout)
    both = read_unified(layout.root, SYMBOL, DATE, DAY2).collect()
    only_day2 = read_unified(layout.root, SYMBOL, DAY2).collect()

    _publish(truth, layout, _alter_late_snapshot(truth.lake_tables()))
    result = _run(settings)
    assert not result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["validation_ks"] and checks["validation_gaps"] and checks["unified_stream_ok"] is False
    check = _evaluation(result, "unified_stream_ok")
    assert check.metadata["snapshot_mismatches"].value == 1
    assert "fidelity_report" not in {e.step_key for e in result.all_events if e.is_step_start}
    # the failed build is kept aside with both its files; the previous build stays served and readable
    rejected = Path(check.metadata["rejected_path"].value)
    assert rejected.parent == layout.unified(DATE, SYMBOL).parent / "rejected"
    assert {p.name for p in rejected.iterdir()} == {
        "events.parquet",
        "book.parquet",
        "invalid_intervals.parquet",
    }
    assert _served(layout) == good
    mat = result.asset_materializations_for_node("unified_stream")[0].metadata
    assert mat["served"].value is False and mat["path"].value == str(rejected / "events.parquet")

    # the read API refuses the failed day, naming it and its failed check ...
    for read in (
        lambda **kw: read_unified(layout.root, SYMBOL, DATE, DAY2, **kw).collect(),
        lambda **kw: list(iter_batches(layout.root, SYMBOL, DATE, DAY2, **kw)),
        lambda **kw: read_book(layout.root, SYMBOL, DATE, DAY2, **kw).collect(),
    ):
        with pytest.raises(
            UnverifiedDay, match=f"{DATE}\\|{SYMBOL} is not verified: unified_stream.unified_stream_ok"
        ):
            read()
    # ... or skips it with a warning, by the caller's choice; the other day is read as before
    with pytest.warns(UserWarning, match=f"{DATE}\\|{SYMBOL} is not verified: .*self-consistency.*: skipped"):
        skipped = read_unified(layout.root, SYMBOL, DATE, DAY2, on_unverified="skip").collect()
    assert skipped.equals(only_day2) and 0 < skipped.height < both.height
    with pytest.warns(UserWarning, match="read anyway"):
        assert read_unified(layout.root, SYMBOL, DATE, DAY2, on_unverified="include").collect().equals(both)


def test_a_crashed_validation_leaves_the_gate_closed(truth, settings, layout, monkeypatch):
    _publish(truth, layout)
    assert _run(settings).success
    good = _served(layout)

    def crash(*args, **kwargs):
        raise OSError("disk vanished in the middle of the scan")

    monkeypatch.setattr(validation, "validate_day", crash)  # the crash: outside the gate under test
    crashed = _run(settings, selection=["validation_report"])
    assert not crashed.success and "disk vanished" in _failure(crashed)
    verdict = gate.read_verdict(layout, DATE, SYMBOL)
    assert verdict.status == gate.PENDING and verdict.run_id == crashed.run_id

    later = _run(settings, selection=["unified_stream"])
    assert not later.success
    assert (
        f"validation of {DATE}|{SYMBOL} started at {verdict.created_at} (run {crashed.run_id}) and has not finished"
        in _failure(later)
    )
    assert _served(layout) == good
    with pytest.raises(UnverifiedDay, match="has not finished"):
        read_unified(layout.root, SYMBOL, DATE)

    # the override still opens the gate, is recorded, and the read API says the build passed a closed gate
    forced = _run(settings, selection=["unified_stream"], run_config=OVERRIDE)
    assert forced.success
    assert (
        forced.asset_materializations_for_node("unified_stream")[0].metadata["gate_overridden"].value is True
    )
    served = json.loads(gate.served_path(layout, DATE, SYMBOL).read_text())
    assert served["overridden"] is True and "has not finished" in served["overridden_reasons"][0]
    monkeypatch.undo()
    assert _run(settings, selection=["validation_report"]).success
    with pytest.raises(UnverifiedDay, match="built past a closed gate"):
        read_unified(layout.root, SYMBOL, DATE)
    assert _run(settings, selection=["unified_stream"]).success  # rebuilt behind an open gate: verified again
    assert read_unified(layout.root, SYMBOL, DATE).collect().height > 0
