"""The gap-aware stream on simulated days with faults: a lost depth message flags exactly the book states from the
break to the re-seeding snapshot (``book_valid``, ``invalid_intervals.parquet``), the day still passes at the
default ``RLX_GAP_RATE_MAX`` with fidelity exact over the valid states; many losses or a long outage fail; after a
re-seed the known range is the snapshot's alone.

The simulated day is 15 minutes with a `book` snapshot every second: the same ratio of snapshot interval to data
as 10 s snapshots over a couple of hours, so one gap costs the same share as on a real day (README, "gaps")."""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import polars as pl
import pytest

from rlx_pipeline.book import build_unified, read_invalid_intervals, read_unified
from rlx_pipeline.lake.source import LocalLake
from rlx_pipeline.lake.staging import stage_day
from rlx_pipeline.orchestration.resources import build_resources
from rlx_pipeline.settings import Settings
from rlx_pipeline.simulator import SimConfig, faults, simulate
from rlx_pipeline_tests.conftest import DATE, PARTITION_KEY, SYMBOL
from rlx_pipeline_tests.test_pipeline_faults import ALL, _checks, _fidelity, _prepare, _skipped

DAY_S = 900


@pytest.fixture(scope="module")
def truth():
    return simulate(
        SimConfig(
            symbol=SYMBOL, start=f"{DATE}T00:00:00Z", duration_s=DAY_S, seed=21, book_snapshot_every_s=1.0
        )
    )


@pytest.fixture(scope="module")
def clean(truth):
    return truth.lake_tables()


def _build(truth, tables, tmp_path, lost=None, chunk_s=900, name="u"):
    lake = tmp_path / f"lake-{name}"
    truth.write_lake(lake, tables=tables)
    paths = {t: tmp_path / f"{name}-{t}.parquet" for t in ("trades", "book", "book_delta")}
    for table, path in paths.items():
        stage_day(LocalLake(lake), table, "BINANCE", SYMBOL, DATE, path)
    res = build_unified(paths, DATE, tmp_path / f"{name}.parquet", lost_update_ids=lost, chunk_s=chunk_s)
    return res, pl.read_parquet(res.book_path), pl.read_parquet(res.intervals_path)


def _messages(tables) -> np.ndarray:
    return np.unique(tables["book_delta_v2"]["sequence_number"].to_numpy())


def _snapshots(tables) -> np.ndarray:
    return np.sort(tables["book"]["sequence_number"].to_numpy())


def _busiest_message_near(tables, at_s: float) -> int:
    """The message with the most rows within a second of ``at_s``: it changes the top 20 (a snapshot sees it)."""
    d = pl.from_arrow(tables["book_delta_v2"]).with_columns(pl.col("timestamp") - pl.col("timestamp").min())
    near = d.filter((pl.col("timestamp") - int(at_s * 1e9)).abs() < 1_000_000_000)
    return int(near.group_by("sequence_number").len().sort(["len", "sequence_number"]).row(-1)[0])


def test_one_lost_message_flags_exactly_the_states_from_the_break_to_the_reseed(truth, clean, tmp_path):
    gone = _busiest_message_near(clean, 400.0)
    tables = faults.drop_delta_message(clean, gone)
    res, book, intervals = _build(truth, tables, tmp_path, lost=[gone])
    reseed = int(_snapshots(tables)[np.searchsorted(_snapshots(tables), gone)])  # first snapshot with it
    seq = book["sequence_number"].to_numpy()
    want_invalid = (seq > gone) & (seq < reseed)
    assert want_invalid.sum() >= 5
    assert (book["book_valid"].to_numpy() == ~want_invalid).all()
    flagged = book.filter(~pl.col("book_valid"))
    resumed = book.filter(pl.col("sequence_number") == reseed).row(-1, named=True)
    [row] = intervals.to_dicts()
    assert row == {
        "start": flagged["origin_time"][0],
        "end": resumed["origin_time"],
        "first_update_id": int(flagged["sequence_number"][0]),
        "last_update_id": int(flagged["sequence_number"][-1]),
        "cause": "lost_update_id",
        "messages": flagged.height,
        "first_event_index": int(flagged["event_index"][0]),
        "end_event_index": resumed["event_index"],
        "resolved": True,
    }
    assert res.invalid_states == flagged.height and res.invalid_share < Settings().thresholds.gap_rate_max
    # the same states whatever the chunking (states held back across chunks until a snapshot resolves them)
    _, book_small_chunks, intervals_small = _build(truth, tables, tmp_path, lost=[gone], chunk_s=7, name="c")
    assert book_small_chunks["book_valid"].to_list() == book["book_valid"].to_list()
    assert intervals_small.equals(intervals)


def test_without_golden_data_a_disagreeing_snapshot_flags_from_the_last_one_that_agreed(
    truth, clean, tmp_path
):
    gone = _busiest_message_near(clean, 400.0)
    tables = faults.drop_delta_message(clean, gone)
    res, book, intervals = _build(truth, tables, tmp_path)
    assert res.stats["snapshot_mismatch"] == 1
    snaps = _snapshots(tables)
    i = np.searchsorted(snaps, gone)
    before, reseed = int(snaps[i - 1]), int(snaps[i])
    seq = book["sequence_number"].to_numpy()
    assert (book["book_valid"].to_numpy() == ~((seq > before) & (seq < reseed))).all()
    [row] = intervals.to_dicts()
    assert (row["cause"], row["resolved"]) == ("snapshot_disagreed", True)
    assert row["first_update_id"] == int(seq[seq > before][0]) and row["last_update_id"] == int(
        seq[seq < reseed][-1]
    )


def test_a_message_lost_deep_in_the_book_leaves_those_levels_outside_the_known_range(truth, clean, tmp_path):
    """A message that only touched bids deeper than the next snapshot's 20 levels: the snapshot cannot repair
    them, so after it re-seeds, bid_known_min_price is that snapshot's deepest bid, above the lost levels (they
    were inside the known range before)."""
    _, book, _ = _build(truth, clean, tmp_path, name="clean")
    snaps = pl.from_arrow(clean["book"]).sort("sequence_number")
    deepest_bid = dict(zip(snaps["sequence_number"].to_list(), snaps["bid_19_price"].to_list(), strict=True))
    snap_seq = np.asarray(sorted(deepest_bid))
    d = pl.from_arrow(clean["book_delta_v2"])
    msgs = d.group_by("sequence_number").agg(
        pl.col("side_is_bid").all().alias("bids_only"), pl.col("price").max().alias("top"), pl.len()
    )
    known = dict(zip(book["sequence_number"].to_list(), book["bid_known_min_price"].to_list(), strict=True))
    gone = reseed = None
    for u, _, top, _ in msgs.filter(pl.col("bids_only")).sort("sequence_number").iter_rows():
        k = np.searchsorted(snap_seq, u)
        if k == 0 or k >= len(snap_seq) or snap_seq[k] == u:
            continue
        s = int(snap_seq[k])
        # deeper than the re-seeding snapshot reaches, yet inside the range known before the loss
        if top * 1e8 < deepest_bid[s] * 1e8 and known.get(u, 10**30) <= round(top * 1e8) - 10**8:
            gone, reseed, lost_top = int(u), s, round(top * 1e8)
            break
    assert gone is not None, "no message deep enough in this simulated day"
    tables = faults.drop_delta_message(clean, gone)
    _, book, intervals = _build(truth, tables, tmp_path, lost=[gone], name="deep")
    assert len(intervals) == 1 and intervals["cause"][0] == "lost_update_id"
    after = book.filter(pl.col("sequence_number") == reseed).row(-1, named=True)
    assert after["book_valid"] and after["bid_known_min_price"] == round(deepest_bid[reseed] * 1e8)
    assert lost_top < after["bid_known_min_price"]  # the lost levels are outside the known range now


def _settings(tmp_path) -> Settings:
    return Settings.from_env(
        {"RLX_DATA_DIR": str(tmp_path), "RLX_SYMBOLS": SYMBOL, "RLX_LAKE_MIN_HOURS": "1"}
    )


def _run(settings):
    return dg.materialize(
        ALL,
        partition_key=PARTITION_KEY,
        resources=build_resources(settings),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def test_one_lost_message_passes_the_default_gate_flagged_with_fidelity_exact_over_valid_states(
    truth, clean, tmp_path
):
    settings = _settings(tmp_path)
    layout = settings.layout
    gone = _busiest_message_near(clean, 400.0)
    _prepare(truth, layout, tables=faults.drop_delta_message(clean, gone))  # golden capture: the full truth
    result = _run(settings)
    checks = _checks(result)
    assert result.success and all(checks.values()), [k for k, v in checks.items() if not v]
    validation = json.loads((layout.report_dir("validation", DATE, SYMBOL) / "report.json").read_text())
    assert validation["gaps"]["missing_update_ids"] == [gone]
    [gap] = read_invalid_intervals(layout.root, SYMBOL, DATE).to_dicts()
    assert gap["cause"] == "lost_update_id" and gap["first_update_id"] > gone and gap["date"] == DATE
    # the read API carries book_valid with the book in force: false exactly on the interval's event rows
    events = read_unified(layout.root, SYMBOL, DATE).with_row_index("i").collect()
    untrusted = events.filter(~pl.col("book_valid"))["i"]
    assert untrusted.min() == gap["first_event_index"] and untrusted.max() == gap["end_event_index"] - 1
    assert untrusted.len() == gap["end_event_index"] - gap["first_event_index"]
    report = _fidelity(layout)
    # every valid state exact; the lost message itself is the one golden id the coverage component misses
    comps = report["components"]
    assert all(comps[k]["value"] == 1.0 for k in ("book_top1", "book_top5", "book_topN", "book_ticker"))
    assert comps["coverage_update_ids"]["total"] - comps["coverage_update_ids"]["matched"] == 1
    assert report["score"] == comps["coverage_update_ids"]["value"] >= settings.thresholds.fidelity_min
    flagged = report["flagged_not_wrong"]
    assert flagged["total"] == gap["messages"] and flagged["matched"] < flagged["total"]
    assert report["invalid_intervals"][0]["first_update_id"] == gap["first_update_id"]
    assert (layout.report_dir("fidelity", DATE, SYMBOL) / "intervals.png").is_file()
    [stream_check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "unified_stream_ok"]
    assert stream_check.metadata["invalid_intervals"].value == 1
    assert 0 < stream_check.metadata["invalid_share"].value < settings.thresholds.gap_rate_max


def test_many_lost_messages_fail_the_gate(truth, clean, tmp_path):
    settings = _settings(tmp_path)
    tables, gone = faults.drop_delta_messages(clean, 40, seed=5)
    _prepare(truth, settings.layout, tables=tables)
    result = _run(settings)
    checks = _checks(result)
    assert checks["validation_gaps"] is False
    assert "unified_stream" in _skipped(result)


def test_a_long_outage_fails_the_gate_without_golden_data(truth, clean, tmp_path):
    settings = _settings(tmp_path)
    start = int(clean["book"]["timestamp"][0].as_py()) + 300 * 10**9
    tables, gone = faults.outage(clean, start, 30.0)
    truth.write_lake(settings.layout.lake_root, tables=tables)  # no capture: the lake-only checks decide
    result = _run(settings)
    checks = _checks(result)
    assert checks["validation_gaps"] is True  # without golden data validation cannot see the loss
    assert (
        checks["unified_stream_ok"] is False
    )  # the replay proves it: the book disagreed with the next snapshot
    # the build failed its check: kept aside under rejected/, not served
    [rejected] = (settings.layout.unified(DATE, SYMBOL).parent / "rejected").iterdir()
    [gap] = pl.read_parquet(rejected / "invalid_intervals.parquet").to_dicts()
    assert gap["cause"] == "snapshot_disagreed" and gap["end"].timestamp() * 1e9 >= start + 30 * 10**9
    assert len(gone) > 250


@pytest.mark.realdata
def test_real_ethusdt_day_with_one_depth_message_removed(tmp_path, real_samples):
    """The real ETHUSDT capture rendered as Crypto Lake tables (a `book` row every 10 s), one depth message removed
    from the 2024-08-09 `book_delta_v2`: one interval from the break to the re-seed, fidelity exact over the valid
    states. The day holds 5.5 minutes of data, so its 10 s span is ~3% of it (0.012% of a full day): the gate runs
    with a threshold for that length, and fails at the default, as a 5-minute day with a 10 s hole should."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from rlx_pipeline.capture.importers import import_files
    from rlx_pipeline.golden.lake_render import render_lake_from_capture

    date, symbol = "2024-08-09", "ETH-USDT"
    settings = Settings.from_env(
        {
            "RLX_DATA_DIR": str(tmp_path),
            "RLX_SYMBOLS": symbol,
            "RLX_GAP_RATE_MAX": "0.05",
            "RLX_LAKE_MIN_HOURS": "1",
        }
    )
    layout = settings.layout
    files = import_files(sorted((real_samples / "hftbacktest").glob("*.gz")), layout.capture_dir / "imported")
    path = render_lake_from_capture(files, layout.lake_root)[(symbol, date)]["book_delta_v2"]
    deltas = pq.read_table(path)
    seqs = np.unique(deltas["sequence_number"].to_numpy())
    gone = int(seqs[len(seqs) // 2])
    pq.write_table(deltas.filter(pc.not_equal(deltas["sequence_number"], gone)), path)
    result = dg.materialize(
        ALL,
        partition_key=f"{date}|{symbol}",
        resources=build_resources(settings),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    checks = _checks(result)
    assert result.success and all(checks.values()), [k for k, v in checks.items() if not v]
    validation = json.loads((layout.report_dir("validation", date, symbol) / "report.json").read_text())
    assert validation["gaps"]["missing_update_ids"] == [gone]
    [gap] = read_invalid_intervals(layout.root, symbol, date).to_dicts()
    book = pl.read_parquet(layout.unified_book(date, symbol))
    snaps = np.sort(pl.read_parquet(layout.staged("book", date, symbol))["sequence_number"].to_numpy())
    reseed = int(snaps[np.searchsorted(snaps, gone)])
    seq = book["sequence_number"].to_numpy()
    assert (book["book_valid"].to_numpy() == ~((seq > gone) & (seq < reseed))).all()
    assert gap["cause"] == "lost_update_id" and gap["first_update_id"] == int(seq[seq > gone][0])
    assert gap["last_update_id"] == int(seq[seq < reseed][-1])
    report = json.loads((layout.report_dir("fidelity", date, symbol) / "report.json").read_text())
    comps = report["components"]
    assert all(comps[k]["value"] == 1.0 for k in ("book_top1", "book_top5", "book_topN", "book_ticker"))
    assert report["flagged_not_wrong"]["total"] == gap["messages"]
    [stream_check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "unified_stream_ok"]
    share = stream_check.metadata["invalid_share"].value
    print(
        f"real ETHUSDT {date}: lost u={gone}; interval {gap}; share {share:.4%}; fidelity {report['score']}"
    )
    assert Settings().thresholds.gap_rate_max < share < 0.05
