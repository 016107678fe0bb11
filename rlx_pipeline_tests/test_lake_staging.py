"""Staging from the local lake: exact normalized values, quality findings, and every bad input's error."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlx_pipeline import fixed_point, schemas
from rlx_pipeline.lake import quality
from rlx_pipeline.lake.source import (
    DayRef,
    LakeCorruptFile,
    LakeEmptyDay,
    LakeMissingDay,
    LakeSchemaError,
    LocalLake,
)
from rlx_pipeline.lake.staging import stage_day
from rlx_pipeline.lake.synthetic import RawDaySpec, write_raw_day
from rlx_pipeline.settings import Thresholds
from rlx_pipeline_tests.conftest import DATE, SYMBOL
from rlx_pipeline_tests.lake_fixtures import day_ns, small_day_tables, write_lake_tables

TH = Thresholds()


@pytest.fixture
def lake(tmp_path):
    root = tmp_path / "lake"
    write_lake_tables(root, small_day_tables(DATE), DATE)
    return root


def _stage(root, table, dest, **kw):
    return stage_day(LocalLake(root), table, "BINANCE", SYMBOL, DATE, dest, **kw)


def test_trades_staged_exactly(lake, tmp_path):
    res = _stage(lake, "trades", tmp_path / "t.parquet")
    t = pq.read_table(tmp_path / "t.parquet")
    assert t.schema.equals(schemas.STAGED_TRADES)  # metadata aside
    assert t.schema.metadata[fixed_point.SCALE_METADATA_KEY] == b"8"
    assert t.column("price").to_pylist() == [6000001000000, 5999999000000, 6000000000000]
    assert t.column("quantity").to_pylist() == [100000, 50000000, 123456789]
    assert t.column("side").to_pylist() == ["buy", "sell", "buy"]
    assert t.column("trade_id").to_pylist() == [100, 101, 102]
    t0 = dt.datetime.fromisoformat(DATE).replace(tzinfo=dt.UTC)
    assert t.column("origin_time").to_pylist()[0] == pa.scalar(day_ns(DATE) + 10**9, schemas.TS).as_py()
    assert t.column("origin_time").to_pylist()[1].to_pydatetime() == t0 + dt.timedelta(hours=1)
    assert res.rows == 3 and res.first_origin_ns == day_ns(DATE) + 10**9
    assert res.last_origin_ns == day_ns(DATE) + 7200 * 10**9
    assert res.raw_bytes > 0 and res.source == {"source": "local", "root": str(lake)}


def test_book_nan_levels_become_null(lake, tmp_path):
    _stage(lake, "book", tmp_path / "b.parquet")
    t = pq.read_table(tmp_path / "b.parquet")
    assert t.schema.equals(schemas.STAGED_BOOK)
    assert t.column("ask_19_price").to_pylist() == [None, 6000020000000, 6000020000000]
    assert t.column("ask_19_size").to_pylist() == [None, 20000000, 30000000]
    assert t.column("bid_0_price").to_pylist()[0] == 5999999000000
    assert t.column("sequence_number").to_pylist() == [1000, 1010, 1020]


def test_book_delta_staged_exactly(lake, tmp_path):
    _stage(lake, "book_delta", tmp_path / "d.parquet")
    t = pq.read_table(tmp_path / "d.parquet")
    assert t.schema.equals(schemas.STAGED_BOOK_DELTA)
    assert t.column("size").to_pylist() == [150000000, 0, 225000000, 1, 300000000]
    assert t.column("side_is_bid").to_pylist() == [True, False, True, False, True]
    assert t.column("sequence_number").to_pylist() == [1001, 1001, 1005, 1015, 1015]


def test_small_batches_give_the_same_file(tmp_path):
    root = tmp_path / "lake"
    write_raw_day(root, RawDaySpec(delta_messages=500, trades=300, snapshot_every=20))
    for table in ("trades", "book", "book_delta"):
        _stage(root, table, tmp_path / f"{table}-big.parquet")
        _stage(root, table, tmp_path / f"{table}-small.parquet", batch_rows=37)
        assert pq.read_table(tmp_path / f"{table}-big.parquet").equals(
            pq.read_table(tmp_path / f"{table}-small.parquet")
        )


def test_quality_of_a_good_day_passes(lake, tmp_path):
    for table in ("trades", "book", "book_delta"):
        _stage(lake, table, tmp_path / f"{table}.parquet")
    tq = quality.assess_trades(quality.iter_staged(tmp_path / "trades.parquet"), DATE, TH)
    bq = quality.assess_book(quality.iter_staged(tmp_path / "book.parquet"), DATE, TH)
    seq = bq.stats["first_usable_sequence_number"]
    dq = quality.assess_book_delta(
        quality.iter_staged(tmp_path / "book_delta.parquet", 2), DATE, TH, first_snapshot_sequence=seq
    )
    assert tq.passed and bq.passed and dq.passed, (tq.failed, bq.failed, dq.failed)
    assert seq == 1000
    assert dq.stats["messages"] == 3 and dq.stats["sequence_step_max"] == 10
    assert dq.stats["unseeded_rows"] == 0 and tq.stats["trade_id_missing"] == 0
    assert tq.stats["hours_covered"] == 3


def _staged_delta(tmp_path, **cols) -> pa.Table:
    t = small_day_tables(DATE)["book_delta_v2"]
    for name, values in cols.items():
        t = t.set_column(t.schema.get_field_index(name), name, pa.array(values, t.schema.field(name).type))
    root = tmp_path / "badlake"
    write_lake_tables(root, {"book_delta_v2": t}, DATE)
    _stage(root, "book_delta", tmp_path / "bad.parquet")
    return quality.assess_book_delta(
        quality.iter_staged(tmp_path / "bad.parquet"), DATE, TH, first_snapshot_sequence=1000
    )


def _failed(report) -> set[str]:
    return {f.name for f in report.failed}


def test_bad_values_fail_the_right_checks(tmp_path):
    t0 = day_ns(DATE)
    r = _staged_delta(tmp_path, price=[59999.98, 0.0, 59999.99, float("nan"), -1.0])
    assert _failed(r) == {"prices_positive", "schema_valid", "no_null_keys"}
    assert r.stats["nonpositive_prices"] == 2 and r.stats["null_keys"]["price"] == 1
    r = _staged_delta(tmp_path, size=[1.0, -0.5, 1.0, 1.0, 1.0])
    assert _failed(r) == {"sizes_nonnegative", "schema_valid"}
    r = _staged_delta(tmp_path, sequence_number=[1001, 1001, 1005, 1003, 1003])
    assert _failed(r) == {"sequence_never_decreases"} and r.stats["sequence_decreases"] == 1
    # origin_time: zero, and two days later (outside the day + 60 s tolerance); 61 s before midnight too
    r = _staged_delta(tmp_path, timestamp=[0, t0 + 3 * 10**9, t0 + 2 * 86400 * 10**9, t0 - 61 * 10**9, t0])
    assert _failed(r) == {"origin_time_valid"}
    assert (r.stats["origin_time_zero"], r.stats["origin_time_outside_day"]) == (1, 2)
    assert r.stats["origin_time_invalid_share"] == pytest.approx(3 / 5)
    # inside the tolerance: 59 s before midnight is valid
    r = _staged_delta(tmp_path, timestamp=[t0 - 59 * 10**9] + [t0 + 86400 * 10**9 + 59 * 10**9] * 4)
    assert _failed(r) == {"hours_covered"}  # valid origin times, but not one row inside the day itself
    r = _staged_delta(tmp_path, timestamp=[t0 - 59 * 10**9] + [t0 + 3 * 10**9] * 4)
    assert r.passed, r.failed


def test_deltas_before_first_snapshot_are_counted_and_gated(tmp_path, lake):
    _stage(lake, "book_delta", tmp_path / "d.parquet")
    r = quality.assess_book_delta(
        quality.iter_staged(tmp_path / "d.parquet"), DATE, TH, first_snapshot_sequence=1005
    )
    assert r.stats["unseeded_rows"] == 3 and r.stats["unseeded_messages"] == 2
    assert _failed(r) == {"seeded_by_snapshot"}
    loose = Thresholds(unseeded_delta_max=0.6)
    assert quality.assess_book_delta(
        quality.iter_staged(tmp_path / "d.parquet"), DATE, loose, first_snapshot_sequence=1005
    ).passed
    none = quality.assess_book_delta(
        quality.iter_staged(tmp_path / "d.parquet"), DATE, TH, first_snapshot_sequence=None
    )
    assert none.stats["unseeded_share"] == 1.0 and "seeded_by_snapshot" in _failed(none)


def test_trade_id_duplicates_and_gaps(tmp_path):
    t = small_day_tables(DATE)["trades"]
    t = t.set_column(t.schema.get_field_index("id"), "id", pa.array([100, 100, 105], pa.int64()))
    write_lake_tables(tmp_path / "l", {"trades": t}, DATE)
    _stage(tmp_path / "l", "trades", tmp_path / "t.parquet")
    r = quality.assess_trades(quality.iter_staged(tmp_path / "t.parquet"), DATE, TH)
    assert r.stats["trade_id_duplicates"] == 1
    assert (r.stats["trade_id_gaps"], r.stats["trade_id_missing"]) == (1, 4)
    assert _failed(r) == {"trade_id_no_duplicates", "trade_id_gaps"}


def test_book_without_usable_snapshot_and_short_day(tmp_path):
    t = small_day_tables(DATE)["book"]
    t = t.set_column(
        t.schema.get_field_index("ask_0_price"), "ask_0_price", pa.array([59000.0] * 3)
    )  # crossed
    write_lake_tables(tmp_path / "l", {"book": t}, DATE)
    _stage(tmp_path / "l", "book", tmp_path / "b.parquet")
    r = quality.assess_book(quality.iter_staged(tmp_path / "b.parquet"), DATE, TH, min_hours=24)
    assert _failed(r) == {"has_usable_snapshot", "not_crossed", "hours_covered"}
    assert r.stats["crossed_rows"] == 3 and r.stats["hours_covered"] == 1


# --- errors: each names table, exchange, symbol and day; the previous staged file stays --------------------
@pytest.fixture
def staged_before(lake, tmp_path):
    dest = tmp_path / "staged.parquet"
    _stage(lake, "book_delta", dest)
    return dest, dest.read_bytes()


def _assert_named(exc: Exception, table="book_delta_v2"):
    msg = str(exc)
    for part in (table, "BINANCE", SYMBOL, DATE):
        assert part in msg, msg


def test_missing_day(lake, staged_before):
    dest, before = staged_before
    with pytest.raises(LakeMissingDay) as ei:
        stage_day(LocalLake(lake), "book_delta", "BINANCE", SYMBOL, "2024-08-10", dest)
    assert "2024-08-10" in str(ei.value) and "book_delta_v2" in str(ei.value)
    assert dest.read_bytes() == before


@pytest.mark.parametrize("cut", ["truncated", "garbage", "empty"])
def test_truncated_or_corrupt_file(lake, staged_before, cut):
    dest, before = staged_before
    path = lake / DayRef("book_delta_v2", "BINANCE", SYMBOL, DATE).key
    data = path.read_bytes()
    path.write_bytes(
        {"truncated": data[: len(data) // 2], "garbage": b"not parquet" * 100, "empty": b""}[cut]
    )
    with pytest.raises(LakeCorruptFile) as ei:
        _stage(lake, "book_delta", dest)
    _assert_named(ei.value)
    assert dest.read_bytes() == before


def test_corrupt_row_group_mid_file(lake, staged_before, tmp_path):
    dest, before = staged_before
    path = lake / DayRef("book_delta_v2", "BINANCE", SYMBOL, DATE).key
    big = pa.concat_tables([small_day_tables(DATE)["book_delta_v2"]] * 2000)
    pq.write_table(big, path, row_group_size=1000, compression="none")
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 2000] = b"\xff" * 2000  # smash a column chunk in the middle of the file
    path.write_bytes(bytes(data))
    with pytest.raises(LakeCorruptFile) as ei:
        _stage(lake, "book_delta", dest, batch_rows=1000)
    _assert_named(ei.value)
    assert dest.read_bytes() == before


def test_wrong_schema(lake, staged_before):
    dest, before = staged_before
    t = small_day_tables(DATE)["book_delta_v2"].drop(["side_is_bid"])
    write_lake_tables(lake, {"book_delta_v2": t}, DATE)
    with pytest.raises(LakeSchemaError, match="side_is_bid") as ei:
        _stage(lake, "book_delta", dest)
    _assert_named(ei.value)
    t = small_day_tables(DATE)["book_delta_v2"]
    t = t.set_column(t.schema.get_field_index("sequence_number"), "sequence_number", pa.array(["a"] * 5))
    write_lake_tables(lake, {"book_delta_v2": t}, DATE)
    with pytest.raises(LakeSchemaError, match="sequence_number"):
        _stage(lake, "book_delta", dest)
    assert dest.read_bytes() == before


def test_empty_day_is_an_error(lake, staged_before):
    dest, before = staged_before
    write_lake_tables(lake, {"book_delta_v2": small_day_tables(DATE)["book_delta_v2"].slice(0, 0)}, DATE)
    with pytest.raises(LakeEmptyDay) as ei:
        _stage(lake, "book_delta", dest)
    _assert_named(ei.value)
    assert dest.read_bytes() == before


def _set_based(batches: list[np.ndarray]) -> dict:
    """The day's trade-id figures from all its ids at once (how the check computed them before ``TradeIdRuns``)."""
    ids = np.concatenate(batches) if batches else np.empty(0, np.int64)
    uniq = np.unique(ids)
    steps = np.diff(uniq)
    expected = int(uniq[-1] - uniq[0] + 1) if uniq.size else 0
    return {
        "first": int(uniq[0]) if uniq.size else None,
        "last": int(uniq[-1]) if uniq.size else None,
        "duplicates": int(ids.size - uniq.size),
        "gaps": int((steps > 1).sum()),
        "missing": int((steps[steps > 1] - 1).sum()),
        "expected": expected,
    }


def _runs_figures(batches: list[np.ndarray]) -> dict:
    runs = quality.TradeIdRuns()
    for b in batches:
        runs.add(b)
    return {
        "first": runs.first,
        "last": runs.last,
        "duplicates": runs.duplicates,
        "gaps": runs.gaps,
        "missing": runs.expected - runs.unique,
        "expected": runs.expected,
    }


@pytest.mark.parametrize(
    "batches",
    [
        [],
        [np.array([], np.int64)],
        [np.array([7])],
        # a gap at a batch edge, a duplicate across batches and one inside a batch, batches out of order
        [np.array([10, 11, 12]), np.array([14, 15, 15]), np.array([12, 13]), np.array([3, 4])],
        # runs that join only when a later batch fills the hole between them
        [np.array([1, 2]), np.array([5, 6]), np.array([3]), np.array([4]), np.array([4, 7])],
        # an outlier far out of range on either side, and an id inside the hole
        [np.arange(1000, 2000), np.array([10**15]), np.array([-(10**12), 1500, 2000, 10**15])],
        [np.array([2**62, 2**62 + 1, 5]), np.array([2**62 - 1])],
    ],
)
def test_trade_id_runs_equal_the_set_of_ids(batches):
    assert _runs_figures(batches) == _set_based(batches)


def test_trade_id_runs_equal_the_set_of_ids_random():
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(1, 400))
        ids = rng.integers(0, int(rng.integers(1, 600)), n) + 3_000_000_000
        if rng.random() < 0.3:
            ids[rng.integers(0, n)] = int(rng.choice([0, 10**16]))
        rng.shuffle(ids)
        batches = np.array_split(ids, int(rng.integers(1, 9)))
        assert _runs_figures(batches) == _set_based(batches)


def test_trade_id_outlier_reported_as_before(tmp_path):
    """One id far from the day's: the report's figures and detail are those of the sorted unique ids."""
    t = small_day_tables(DATE)["trades"]
    t = t.set_column(t.schema.get_field_index("id"), "id", pa.array([100, 101, 10**12], pa.int64()))
    write_lake_tables(tmp_path / "l", {"trades": t}, DATE)
    _stage(tmp_path / "l", "trades", tmp_path / "t.parquet")
    r = quality.assess_trades(quality.iter_staged(tmp_path / "t.parquet", batch_rows=1), DATE, TH)
    expected = 10**12 - 100 + 1
    assert (r.stats["trade_id_first"], r.stats["trade_id_last"]) == (100, 10**12)
    assert (r.stats["trade_id_gaps"], r.stats["trade_id_missing"]) == (1, expected - 3)
    assert r.stats["trade_id_missing_share"] == (expected - 3) / expected
    gap = next(f for f in r.findings if f.name == "trade_id_gaps")
    assert gap.detail == f"1 gaps, {expected - 3} missing ids of {expected}" and not gap.passed
