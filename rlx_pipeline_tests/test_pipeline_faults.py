"""The whole graph through Dagster on simulated days: a clean day passes everything at 100% fidelity, and each
injected fault fails exactly the check meant for it, with reconstruction blocked in the same and later runs."""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import pytest

from rlx_pipeline.orchestration.assets import acquisition, fidelity, golden, reconstruction, validation
from rlx_pipeline.orchestration.resources import build_resources
from rlx_pipeline.settings import Settings
from rlx_pipeline.simulator import SimConfig, faults, simulate
from rlx_pipeline_tests.conftest import DATE, PARTITION_KEY, SHORT_DAY_HOURS, SYMBOL

_STAGES = (acquisition, golden, validation, reconstruction, fidelity)
ASSETS = [a for m in _STAGES for a in m.assets]
ALL = ASSETS + [c for m in _STAGES for c in m.checks]
OVERRIDE = {"ops": {"unified_stream": {"config": {"override_validation_gate": True}}}}
ACCEPT = {"config": {"accept_failed_check": True}}


@pytest.fixture(scope="module")
def truth():
    return simulate(SimConfig(symbol=SYMBOL, start=f"{DATE}T00:00:00Z", duration_s=90, seed=21))


def _run(settings, selection=None, run_config=None):
    return dg.materialize(
        ALL,
        selection=selection,
        partition_key=PARTITION_KEY,
        resources=build_resources(settings),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        run_config=run_config,
    )


def _run_past_checks(settings) -> None:
    """Every asset in a run of its own (a failed check fails only its step), failed lake builds accepted and the
    gate overridden: a faulty day measured downstream, as a person deciding to look past its checks would."""
    for asset in [a.key.to_user_string() for a in ASSETS]:
        if asset.startswith("lake_"):
            config = {"ops": {asset: ACCEPT}}
        else:
            config = OVERRIDE if asset == "unified_stream" else None
        _run(settings, selection=[asset], run_config=config)


def _prepare(truth, layout, tables=None, capture_lines=None):
    truth.write_lake(layout.lake_root, tables=tables)
    path = layout.capture_dir / "imported" / "sim.jsonl.zst"
    if capture_lines is None:
        truth.write_capture(path)
    else:
        from rlx_pipeline.formats.capture_file import write_capture

        write_capture(path, capture_lines)


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _skipped(result) -> set[str]:
    """Assets whose step never started: blocked by a failed upstream step or check."""
    started = {e.step_key for e in result.all_events if e.is_step_start}
    return {"golden_samples", "validation_report", "unified_stream", "fidelity_report"} - started


def _fidelity(layout) -> dict:
    return json.loads((layout.report_dir("fidelity", DATE, SYMBOL) / "report.json").read_text())


def test_clean_day_passes_everything_at_full_fidelity(truth, settings, layout):
    _prepare(truth, layout)
    result = _run(settings)
    assert result.success
    checks = _checks(result)
    assert all(checks.values()), checks
    assert len(checks) == 11
    report = _fidelity(layout)
    assert report["score"] == 1.0
    assert report["trade_id_kind"] == "trade ids"
    comps = report["components"]
    assert comps["trades_golden_in_recon"]["total"] == len(truth.market.trades)
    assert comps["book_topN"]["total"] == len(truth.market.depth)


def test_shifted_trade_sizes_fail_ks_and_block_reconstruction(truth, settings, layout):
    _prepare(truth, layout, tables=faults.shift_trade_sizes(truth.lake_tables(), 1.6))
    result = _run(settings)
    checks = _checks(result)
    assert checks["validation_ks"] is False
    # a power-law exponent is scale-free: multiplying every size keeps alpha, so the tail check passes
    assert checks["validation_tail"] and checks["validation_gaps"] and checks["validation_origin_time"]
    assert "unified_stream" in _skipped(result)
    assert not layout.unified(DATE, SYMBOL).exists() and not layout.unified_book(DATE, SYMBOL).exists()

    # a later run of reconstruction alone is refused by the persisted verdict ...
    later = _run(settings, selection=["unified_stream"])
    assert not later.success
    failure = next(e for e in later.all_events if e.is_step_failure)
    user = failure.step_failure_data.user_failure_data  # a dagster.Failure saying what to do
    assert user.metadata["error"].value == "GateClosed"
    text = user.description
    assert "validation failed" in text and "validation_ks" in text
    # ... unless a person overrides it, which is recorded
    forced = _run(settings, selection=["unified_stream"], run_config=OVERRIDE)
    assert forced.success
    mat = forced.get_asset_materialization_events()[0].materialization
    assert mat.metadata["gate_overridden"].value is True


def test_dropped_delta_messages_fail_gaps_exactly(truth, settings, layout):
    tables, gone = faults.drop_delta_messages(truth.lake_tables(), 3, seed=1)
    _prepare(truth, layout, tables=tables)
    result = _run(settings)
    checks = _checks(result)
    assert checks["validation_gaps"] is False
    assert checks["validation_ks"] and checks["validation_tail"] and checks["validation_origin_time"]
    report = json.loads((layout.report_dir("validation", DATE, SYMBOL) / "report.json").read_text())
    assert report["gaps"]["lake_missing_messages"] == 3
    assert report["gaps"]["first_missing_update_ids"] == gone
    assert "unified_stream" in _skipped(result)


def test_zero_origin_times_fail_origin_time(truth, settings, layout):
    _prepare(truth, layout, tables=faults.zero_origin_times(truth.lake_tables(), 10))
    checks = _checks(_run(settings))
    # the acquisition check catches it first (blocking), so validation never runs on it
    assert checks["lake_trades_ok"] is False
    assert "validation_origin_time" not in checks


def test_a_missing_trade_lowers_only_the_trade_component_by_one(truth, settings, layout):
    tables, gone = faults.drop_trades(truth.lake_tables(), 1, seed=2)
    _prepare(truth, layout, tables=tables)
    # the lake check (trade id gaps) and validation both catch it; run past them to measure fidelity
    assert _checks(_run(settings))["lake_trades_ok"] is False
    _run_past_checks(settings)
    validation = json.loads((layout.report_dir("validation", DATE, SYMBOL) / "report.json").read_text())
    assert validation["gaps"]["trade_ids_missing"] == 1
    comps = _fidelity(layout)["components"]
    n = len(truth.market.trades)
    assert comps["trades_golden_in_recon"] == {"matched": n - 1, "total": n, "value": (n - 1) / n}
    assert comps["trades_recon_in_golden"]["value"] == 1.0
    assert comps["book_topN"]["value"] == 1.0 and comps["book_ticker"]["value"] == 1.0


def _best_bid_row(truth, tables) -> int:
    """A delta row that sets the best bid of its message (so top 1 must show the fault)."""
    deltas = tables["book_delta_v2"]
    seq, price = deltas["sequence_number"].to_numpy(), deltas["price"].to_numpy()
    bid, size = deltas["side_is_bid"].to_numpy(), deltas["size"].to_numpy()
    tick = truth.market.tick / 1e8
    for i, (u, _, bids, _) in enumerate(truth.iter_books()):  # live dicts: use them as they go
        if i < 50:
            continue
        best = max(bids) * tick
        hit = np.flatnonzero((seq == u) & bid & (size > 0) & np.isclose(price, best, rtol=0, atol=tick / 4))
        if len(hit):
            return int(hit[0])
    raise AssertionError("no message sets its best bid")


def test_an_altered_delta_size_lowers_the_book_components(truth, settings, layout):
    tables = truth.lake_tables()
    tables, _ = faults.alter_delta_size(tables, factor=3.0, rows=[_best_bid_row(truth, tables)])
    _prepare(truth, layout, tables=tables)
    _run_past_checks(settings)
    comps = _fidelity(layout)["components"]
    assert comps["trades_golden_in_recon"]["value"] == 1.0
    assert comps["book_top1"]["value"] < 1.0
    assert comps["book_topN"]["matched"] <= comps["book_top1"]["matched"]


def test_a_silent_gap_in_the_capture_fails_golden_integrity(truth, settings, layout):
    lines, _ = faults.drop_depth_frames(list(truth.capture_lines()), 1, seed=3)
    _prepare(truth, layout, capture_lines=lines)
    result = _run(settings)
    checks = _checks(result)
    assert checks["golden_integrity"] is False
    assert "validation_report" in _skipped(result)


def test_a_day_without_golden_samples_runs_lake_only_and_says_so(truth, settings, layout):
    truth.write_lake(layout.lake_root)
    result = _run(settings)
    checks = _checks(result)
    assert checks["golden_coverage"] is False  # a warning: it does not block
    assert checks["validation_gaps"] and checks["validation_origin_time"]
    report = json.loads((layout.report_dir("validation", DATE, SYMBOL) / "report.json").read_text())
    ks = next(c for c in report["checks"] if c["name"] == "ks")
    assert ks["checked"] is False and "no golden samples" in ks["detail"]
    assert layout.unified(DATE, SYMBOL).exists() and layout.unified_book(DATE, SYMBOL).exists()
    assert checks["fidelity_ok"] is False
    assert _fidelity(layout)["measurable"] is False


def test_dropped_delta_messages_show_as_missing_update_ids_in_fidelity(truth, tmp_path, layout):
    tables, gone = faults.drop_delta_messages(truth.lake_tables(), 3, seed=1)
    _prepare(truth, layout, tables=tables)
    # three gaps in 90 s put ~30% of this short day in invalid intervals: let the stream be served to measure it
    _run_past_checks(
        Settings.from_env(
            {"RLX_DATA_DIR": str(layout.root), "RLX_LAKE_MIN_HOURS": SHORT_DAY_HOURS, "RLX_GAP_RATE_MAX": "1"}
        )
    )
    report = _fidelity(layout)
    assert report["golden_update_ids_missing_in_recon"] == 3
    assert report["recon_update_ids_not_in_golden"] == 0
    # every message the lake has is compared: valid states in the gated figure, the flagged ones apart
    assert report["flagged_not_wrong"]["total"] > 0
    assert (
        report["components"]["book_topN"]["total"] + report["flagged_not_wrong"]["total"]
        == len(truth.market.depth) - 3
    )
    assert report["components"]["trades_golden_in_recon"]["value"] == 1.0


def test_shifted_trade_times_show_in_timing_only(truth, settings, layout):
    tables, ids = faults.shift_trade_times(truth.lake_tables(), 5, seconds=2.0, seed=4)
    _prepare(truth, layout, tables=tables)
    _run_past_checks(settings)
    report = _fidelity(layout)
    timing = report["timing_ms"]["origin_minus_golden_trade_time"]
    assert timing["max"] == 2000.0 and timing["nonzero"] == 5
    assert report["components"]["trades_golden_in_recon"]["value"] == 1.0


def test_reordered_depth_frames_in_the_capture_are_silent_gaps(truth, settings, layout):
    lines, moved = faults.reorder_frames(list(truth.capture_lines()), 2, seed=5)
    _prepare(truth, layout, capture_lines=lines)
    result = _run(settings)
    assert _checks(result)["golden_integrity"] is False
    golden = json.loads((layout.report_dir("golden", DATE, SYMBOL) / "coverage.json").read_text())
    # each swapped pair breaks continuity three times: into the later frame, back to the earlier, and on
    assert golden["silent_gaps"] == 6 and len(moved) == 2
    assert "validation_report" in _skipped(result)


def test_reordered_delta_messages_in_the_lake_fail_the_sequence_check(truth, settings, layout):
    tables, firsts = faults.reorder_delta_messages(truth.lake_tables(), 2, seed=6)
    assert tables["book_delta_v2"].num_rows == truth.lake_tables()["book_delta_v2"].num_rows
    _prepare(truth, layout, tables=tables)
    result = _run(settings)
    checks = _checks(result)
    assert checks["lake_book_delta_ok"] is False and checks["lake_book_ok"] and checks["lake_trades_ok"]
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == "lake_book_delta_ok")
    assert "sequence_never_decreases=2" in evaluation.description  # one decrease per swapped pair
    assert _skipped(result) == {"validation_report", "unified_stream", "fidelity_report"}


def test_a_missing_day_fails_acquisition_naming_the_file(truth, settings, layout):
    _prepare(truth, layout)
    gone = faults.remove_day(layout.lake_root, SYMBOL, DATE)
    assert sorted(p.parts[-5] for p in gone) == ["book", "book_delta_v2", "trades"]
    result = _run(settings)
    failures = {e.step_key: e.step_failure_data for e in result.all_events if e.is_step_failure}
    assert set(failures) == {"lake_book", "lake_trades"}  # lake_book_delta waits on lake_book
    user = failures["lake_trades"].user_failure_data  # a dagster.Failure naming the file and what to do
    assert user.metadata["error"].value == "LakeMissingDay" and user.metadata["table"].value == "trades"
    path = layout.lake_root / "market-data/cryptofeed/trades/exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-09"
    assert user.description.startswith(
        f"Crypto Lake day missing (trades) for partition 2024-08-09|BTC-USDT: no file at {path}/1.snappy.parquet. "
        "What to do: "
    )
    assert _skipped(result) == {"validation_report", "unified_stream", "fidelity_report"}


def test_quotes_compare_lake_book_rows_with_the_golden_ticker_at_the_same_update_id(settings, layout):
    """Quoted spread and top-level depth: D = 0 on a faithful day; doubled best-bid sizes fail only that metric."""
    import pyarrow as pa

    dense = simulate(
        SimConfig(symbol=SYMBOL, start=f"{DATE}T00:00:00Z", duration_s=90, seed=21, book_snapshot_every_s=1)
    )
    _prepare(dense, layout)
    _run(settings)
    report = json.loads((layout.report_dir("validation", DATE, SYMBOL) / "report.json").read_text())
    ks = {k["metric"]: k for k in report["ks"]}
    assert ks["quoted_spread"]["d"] == 0.0 and ks["top_level_depth"]["d"] == 0.0
    rows = report["scan"]["lake_book_rows_with_golden_ticker"]
    assert rows == ks["quoted_spread"]["n_hist"] == ks["quoted_spread"]["n_golden"] >= 80

    tables = dense.lake_tables()
    book = tables["book"]
    i = book.schema.get_field_index("bid_0_size")
    doubled = pa.array(book["bid_0_size"].to_numpy() * 2)
    _prepare(dense, layout, tables={**tables, "book": book.set_column(i, "bid_0_size", doubled)})
    result = _run(settings)
    assert _checks(result)["validation_ks"] is False
    report = json.loads((layout.report_dir("validation", DATE, SYMBOL) / "report.json").read_text())
    over = [k["metric"] for k in report["ks"] if k["d"] > settings.thresholds.ks_d_max]
    assert over == ["top_level_depth"]
