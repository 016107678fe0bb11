"""The day catalog (status CLI, read_catalog, the day_catalog asset) and the exports: a simulated day exported to
hftbacktest replays, in hftbacktest's own backtest loop, to the unified stream's book and trades; the Tardis export
run through hftbacktest's own Tardis converter gives the same array as the direct export."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rlx_pipeline import catalog, gate
from rlx_pipeline.cli import main
from rlx_pipeline.export import export_hftbacktest, export_tardis
from rlx_pipeline.export import hftbacktest_npz as npz
from rlx_pipeline.settings import Settings
from rlx_pipeline_tests.conftest import SHORT_DAY_HOURS
from rlx_pipeline_tests.hftbacktest_replay import compare

SYMBOL = "BTC-USDT"
PASSED, NEVER, FAILED = "2024-08-09", "2024-08-10", "2024-08-11"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A simulated 5-minute day (lake + capture) through the whole pipeline (usable), a day never run, a day whose
    validation failed."""
    import dagster as dg

    from rlx_pipeline.orchestration.assets import acquisition, fidelity, golden, reconstruction, validation
    from rlx_pipeline.orchestration.resources import build_resources
    from rlx_pipeline.simulator import SimConfig, simulate

    root = tmp_path_factory.mktemp("data")
    settings = Settings.from_env({"RLX_DATA_DIR": str(root), "RLX_LAKE_MIN_HOURS": SHORT_DAY_HOURS})
    layout = settings.layout
    truth = simulate(SimConfig(symbol=SYMBOL, start=f"{PASSED}T00:00:00Z", duration_s=300, seed=9))
    truth.write_lake(layout.lake_root)
    truth.write_capture(layout.capture_dir / "imported" / "sim.jsonl.zst")
    stages = (acquisition, golden, validation, reconstruction, fidelity)
    result = dg.materialize(
        [a for m in stages for a in m.assets] + [c for m in stages for c in m.checks],
        partition_key=f"{PASSED}|{SYMBOL}",
        resources=build_resources(settings),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert result.success
    gate.write_verdict(layout, gate.Verdict(FAILED, SYMBOL, False, ["validation_gaps", "validation_ks"]))
    counts = pl.read_parquet(layout.unified(PASSED, SYMBOL), columns=["event_type"])[
        "event_type"
    ].value_counts()
    by_type = dict(counts.iter_rows())
    book_rows = pq.read_metadata(layout.unified_book(PASSED, SYMBOL)).num_rows
    assert by_type[1] > 10_000
    return root, layout, {"delta": by_type[1], "trade": by_type[2], "book_rows": book_rows}


def _has_validity_flags(layout) -> bool:
    return "book_valid" in pq.read_schema(layout.unified_book(PASSED, SYMBOL)).names


def _status(root, *args):
    return CliRunner().invoke(main, ["status", "--data-dir", str(root), "--symbol", SYMBOL, *args])


def test_status_reports_a_passing_a_never_run_and_a_failed_day(data):
    root, layout, res = data
    r = _status(root, "--start", PASSED, "--end", FAILED)
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("2024-")]
    build = (layout.unified(PASSED, SYMBOL).parent / "events.parquet").exists() and catalog.day_status(
        layout, PASSED, SYMBOL
    ).build
    fid = catalog.day_status(layout, PASSED, SYMBOL).fidelity
    assert fid is not None and fid >= 0.999
    assert lines[0].startswith(f"{PASSED} BTC-USDT     usable            build={build} fidelity={fid:.3%}")
    # no invalid interval: 0.00% once the stream carries validity flags, "-" for a stream from before them
    invalid = "0.00%" if _has_validity_flags(layout) else "-"
    assert lines[0].endswith(
        f"invalid={invalid} golden=0.42%"
    )  # the capture touches 6 of the day's 1,440 minutes
    assert lines[1].startswith(f"{NEVER} BTC-USDT     not run") and "no validation verdict" in lines[1]
    assert (
        lines[2].startswith(f"{FAILED} BTC-USDT     failed")
        and "failed: validation_gaps, validation_ks" in lines[2]
    )
    assert "1 of 3 day(s) usable" in r.output
    ok = _status(root, "--start", PASSED, "--end", PASSED)
    assert ok.exit_code == 0 and f"{PASSED} BTC-USDT     usable" in ok.output


def test_read_catalog_gives_the_same_statuses_as_a_frame(data):
    root, layout, _ = data
    df = catalog.read_catalog(root, [SYMBOL])  # no range: first to last day with any output
    assert df.select("date", "status", "usable").rows() == [
        (PASSED, "usable", True),
        (NEVER, "not run", False),
        (FAILED, "failed", False),
    ]
    row = df.row(0, named=True)
    assert len(row["build"]) == 32 and row["fidelity"] >= 0.999 and row["fidelity_checked"] is True
    assert row["golden_coverage"] == pytest.approx(6 / 1440, abs=1e-6)  # rounded in coverage.json
    assert row["invalid_share"] == (0.0 if _has_validity_flags(layout) else None)
    assert df.row(2, named=True)["failed_checks"] == ["validation_gaps", "validation_ks"]


def test_day_catalog_asset_materializes_the_table_and_calendar(data):
    import dagster as dg

    from rlx_pipeline.orchestration.assets.catalog import day_catalog
    from rlx_pipeline.orchestration.resources import build_resources

    root, layout, _ = data
    settings = Settings.from_env({"RLX_DATA_DIR": str(root), "RLX_LAKE_MIN_HOURS": SHORT_DAY_HOURS})
    result = dg.materialize(
        [day_catalog], resources=build_resources(settings), instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    md = result.asset_materializations_for_node("day_catalog")[0].metadata
    # both symbols of RLX_SYMBOLS, three days: BTC-USDT usable / not run / failed, ETH-USDT never run
    assert md["statuses"].value == {"usable": 1, "failed": 1, "not reconstructed": 0, "not run": 4}
    assert "data:image/png;base64," in md["catalog"].value
    assert f"| {FAILED} | BTC-USDT | failed | validation_gaps, validation_ks |" in md["catalog"].value
    stored = pl.read_parquet(root / "reports" / "catalog" / "catalog.parquet")
    assert stored.filter(pl.col("symbol") == SYMBOL)["status"].to_list() == ["usable", "not run", "failed"]


def test_exports_refuse_a_day_that_is_not_usable(data, tmp_path):
    root, _, _ = data
    with pytest.raises(catalog.DayNotUsable, match=r"2024-08-10\|BTC-USDT is not run"):
        export_hftbacktest(root, SYMBOL, PASSED, NEVER, tmp_path / "x.npz")
    with pytest.raises(catalog.DayNotUsable, match=r"failed \(validation_gaps, validation_ks\)"):
        export_tardis(root, SYMBOL, FAILED, FAILED, tmp_path)
    r = CliRunner().invoke(
        main, ["export", "hftbacktest", "--data-dir", str(root), "--symbol", SYMBOL, "--start", FAILED, "--end",
               FAILED, str(tmp_path / "y.npz")],
    )  # fmt: skip
    assert r.exit_code == 1 and "failed (validation_gaps, validation_ks)" in r.output
    assert not list(tmp_path.iterdir())  # nothing written


def test_hftbacktest_replays_the_export_to_the_unified_book_and_trades(data, tmp_path):
    from hftbacktest.data.validation import validate_event_order

    root, layout, res = data
    out = tmp_path / "day.npz"
    r = CliRunner().invoke(
        main, ["export", "hftbacktest", "--data-dir", str(root), "--symbol", SYMBOL, "--start", PASSED, "--end",
               PASSED, str(out)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    arr = np.load(out)["data"]
    validate_event_order(arr)
    kinds = arr["ev"] & 0xFF
    local = (arr["ev"] & npz.LOCAL_EVENT) != 0
    assert int(((kinds == npz.DEPTH_EVENT) & local).sum()) >= res["delta"]  # every delta, plus corrections
    assert int(((kinds == npz.TRADE_EVENT) & local).sum()) == res["trade"]
    assert int(((kinds == npz.DEPTH_CLEAR_EVENT) & local).sum()) == 2  # the seed: both sides
    counts = compare(layout.unified(PASSED, SYMBOL), layout.unified_book(PASSED, SYMBOL), out, SYMBOL)
    assert counts["compared_steps"] >= res["book_rows"] - 1 and counts["trades"] == res["trade"]


def test_tardis_export_through_hftbacktests_converter_equals_the_direct_export(data, tmp_path):
    from hftbacktest import types
    from hftbacktest.data.utils.tardis import convert

    root, _, res = data
    for name in ("DEPTH_EVENT", "TRADE_EVENT", "DEPTH_CLEAR_EVENT", "DEPTH_SNAPSHOT_EVENT", "EXCH_EVENT",
                 "LOCAL_EVENT", "BUY_EVENT", "SELL_EVENT"):  # fmt: skip
        assert getattr(npz, name) == getattr(types, name), name
    assert types.event_dtype == npz.EVENT_DTYPE
    tr = export_tardis(root, SYMBOL, PASSED, PASSED, tmp_path / "tardis")
    names = [f.name for f in tr.files]
    assert names == [
        "binance_incremental_book_L2_2024-08-09_BTCUSDT.csv.gz",
        "binance_trades_2024-08-09_BTCUSDT.csv.gz",
    ]
    head = pl.read_csv(tr.files[0], n_rows=3)
    assert head.columns == [
        "exchange",
        "symbol",
        "timestamp",
        "local_timestamp",
        "is_snapshot",
        "side",
        "price",
        "amount",
    ]
    assert head["is_snapshot"].to_list() == [True, True, True] and head["exchange"][0] == "binance"
    converted = convert([str(tr.files[1]), str(tr.files[0])])  # trades first, as hftbacktest asks
    direct = export_hftbacktest(root, SYMBOL, PASSED, PASSED, tmp_path / "us.npz", timestamp_unit="us")
    ours = np.load(direct.path)["data"]
    assert len(ours) == len(converted) == direct.rows
    for field in types.event_dtype.names:
        assert np.array_equal(ours[field], converted[field]), field
    assert tr.trade_rows == res["trade"] and tr.feed.deltas == res["delta"]


def test_day_catalog_sensor_requests_the_catalog_once_per_new_materialization():
    import dagster as dg

    from rlx_pipeline.orchestration.assets.catalog import day_catalog_sensor

    with dg.DagsterInstance.ephemeral() as instance:
        ctx = dg.build_sensor_context(instance=instance)
        assert isinstance(day_catalog_sensor(ctx), dg.SkipReason)  # nothing materialized yet
        instance.report_runless_asset_event(
            dg.AssetMaterialization("validation_report", partition=f"{PASSED}|{SYMBOL}")
        )
        req = day_catalog_sensor(ctx)
        assert isinstance(req, dg.RunRequest) and req.run_key == f"day_catalog@{ctx.cursor}"
        again = dg.build_sensor_context(instance=instance, cursor=ctx.cursor)
        assert isinstance(day_catalog_sensor(again), dg.SkipReason)  # the same event is not requested twice
        instance.report_runless_asset_event(dg.AssetMaterialization("lake_trades"))  # not a watched asset
        assert isinstance(day_catalog_sensor(again), dg.SkipReason)
        instance.report_runless_asset_event(
            dg.AssetMaterialization("fidelity_report", partition=f"{PASSED}|{SYMBOL}")
        )
        assert isinstance(day_catalog_sensor(again), dg.RunRequest)


def test_hftbacktest_export_asset_writes_a_usable_partition_and_fails_an_unusable_one(data):
    import dagster as dg

    from rlx_pipeline.orchestration.assets.catalog import hftbacktest_export
    from rlx_pipeline.orchestration.resources import build_resources

    root, layout, _ = data
    resources = build_resources(
        Settings.from_env({"RLX_DATA_DIR": str(root), "RLX_LAKE_MIN_HOURS": SHORT_DAY_HOURS})
    )
    ok = dg.materialize([hftbacktest_export], partition_key=f"{PASSED}|{SYMBOL}", resources=resources)
    dest = root / "exports" / "hftbacktest" / f"dt={PASSED}" / f"symbol={SYMBOL}" / "events.npz"
    rows = ok.asset_materializations_for_node("hftbacktest_export")[0].metadata["dagster/row_count"].value
    assert rows == len(np.load(dest)["data"]) > 0
    bad = dg.materialize(
        [hftbacktest_export], partition_key=f"{FAILED}|{SYMBOL}", resources=resources, raise_on_error=False
    )
    assert not bad.success
    failure = next(e for e in bad.all_events if e.is_step_failure)
    assert "failed (validation_gaps, validation_ks)" in failure.step_failure_data.error.message


def test_invalid_intervals_of_a_day_go_to_side_files(data, tmp_path):
    import shutil

    src, _, _ = data
    root = tmp_path / "data"
    shutil.copytree(src / "unified", root / "unified")
    shutil.copytree(src / "reports", root / "reports")
    day = root / "unified" / f"dt={PASSED}" / f"symbol={SYMBOL}"
    t0 = 1_723_161_600_000_000_000
    pl.DataFrame(
        {
            "start": [t0 + 5_000_000_000],
            "end": [t0 + 7_500_000_000],
            "cause": ["lost_update_id"],
            "messages": [25],
        }
    ).with_columns(pl.col("start", "end").cast(pl.Datetime("ns", "UTC"))).write_parquet(
        day / "invalid_intervals.parquet"
    )
    res = export_hftbacktest(root, SYMBOL, PASSED, PASSED, tmp_path / "out" / "day.npz")
    assert res.intervals_path == tmp_path / "out" / "day.invalid_intervals.csv"
    side = pl.read_csv(res.intervals_path)
    assert side.rows() == [(t0 + 5_000_000_000, t0 + 7_500_000_000, "lost_update_id", 25, PASSED)]
    tr = export_tardis(root, SYMBOL, PASSED, PASSED, tmp_path / "tardis")
    assert [f.name for f in tr.intervals_files] == ["binance_invalid_intervals_2024-08-09_BTCUSDT.csv"]
    assert pl.read_csv(tr.intervals_files[0]).rows() == side.rows()
    # a day without invalid intervals gets no side file
    assert export_hftbacktest(src, SYMBOL, PASSED, PASSED, tmp_path / "plain.npz").intervals_path is None


def test_the_daily_job_leaves_the_catalog_to_its_sensor_and_exports_to_the_user():
    import dagster as dg

    from rlx_pipeline.definitions import defs

    job = defs.resolve_job_def("daily_pipeline")
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert "unified_stream" in keys and not keys & {"day_catalog", "hftbacktest_export"}
    sensor = defs.resolve_sensor_def("day_catalog_sensor")
    assert sensor.job_name == "day_catalog_job"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_a_failed_fidelity_or_a_missing_stream_makes_a_passed_day_unusable(data, tmp_path):
    import json
    import shutil

    src, _, _ = data
    root = tmp_path / "data"
    shutil.copytree(src / "reports", root / "reports")
    layout = Settings.from_env({"RLX_DATA_DIR": str(root), "RLX_LAKE_MIN_HOURS": SHORT_DAY_HOURS}).layout
    s = catalog.day_status(layout, PASSED, SYMBOL)
    assert (s.status, s.reason) == ("not reconstructed", "no unified stream")
    shutil.copytree(src / "unified", root / "unified")
    served = layout.unified(PASSED, SYMBOL).with_name("served.json")
    record = served.read_bytes()
    served.unlink()  # files the gate never promoted (built outside the pipeline) are not served
    s = catalog.day_status(layout, PASSED, SYMBOL)
    assert s.status == "not reconstructed" and "no record of a gated build" in s.reason
    served.write_bytes(record)
    assert catalog.day_status(layout, PASSED, SYMBOL).usable
    report = layout.report_dir("fidelity", PASSED, SYMBOL) / "report.json"
    body = json.loads(report.read_text())
    report.write_text(json.dumps({**body, "score": 0.98, "passed": False}))
    s = catalog.day_status(layout, PASSED, SYMBOL)
    assert (s.status, s.failed_checks, s.fidelity, s.usable) == ("failed", ["fidelity_ok"], 0.98, False)
    with pytest.raises(catalog.DayNotUsable, match="is failed \\(fidelity_ok\\): fidelity below threshold"):
        export_tardis(root, SYMBOL, PASSED, PASSED, tmp_path / "t")
