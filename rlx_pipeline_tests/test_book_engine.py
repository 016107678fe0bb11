"""The book engine and the unified stream: exact books, mid-stream days, crossed books, disagreeing snapshots,
deterministic output."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from rlx_pipeline import schemas
from rlx_pipeline.book import (
    Book,
    UnverifiedDay,
    build_unified,
    iter_batches,
    read_book,
    read_unified,
    scan_day,
)
from rlx_pipeline.book.unified import _day_ns
from rlx_pipeline.storage import write_table

DATE = "2024-08-09"
T0 = _day_ns(DATE)[0]
S = 10**8  # fixed point of 1.0


def test_book_matches_a_dict_reference_under_random_updates():
    rng = random.Random(3)
    book, ref = Book(capacity=512), {True: {}, False: {}}
    for _ in range(20_000):
        is_bid = rng.random() < 0.5
        price = rng.randrange(1, 400) * 100
        size = 0 if rng.random() < 0.3 else rng.randrange(1, 10**6)
        book.set(is_bid, price, size)
        if size:
            ref[is_bid][price] = size
        else:
            ref[is_bid].pop(price, None)
    assert book.bids() == ref[True] and book.asks() == ref[False]
    bids, asks = book.top(3)
    assert bids == sorted(ref[True].items(), reverse=True)[:3]
    assert asks == sorted(ref[False].items())[:3]


def test_ladder_window_overflow_tick_learning_and_drift_match_a_reference():
    """The engine's ladder covers LADDER ticks around the market: levels far away go to a sorted overflow, the
    window re-centres when the market leaves it, and the tick is learned (coarse first, then finer prices)."""
    from rlx_pipeline.book.engine import LADDER, M_BASE, M_COUNT, M_OVN, M_TICK

    bases = set()

    def recentred(b: Book) -> int:
        return len(bases)

    rng = random.Random(11)
    book, ref = Book(), {True: {}, False: {}}
    tick, mid = 100 * 10**6, 60_000 * S  # prices first multiples of 1.00, later of 0.01
    for step in range(30_000):
        if step == 10_000:
            tick = 10**6
        if step % 3_000 == 2_999:
            mid += (
                rng.choice([-1, 1]) * rng.randrange(LADDER // 2, 2 * LADDER) * 10**6
            )  # the market jumps away
        is_bid = rng.random() < 0.5
        r = rng.random()
        if r < 0.05:  # far away: a bid at a tenth of the price, an ask at ten times it
            price = (mid // 10 // tick * tick if is_bid else mid * 10) + rng.randrange(0, 50) * tick
        else:
            depth = rng.randrange(0, 200) * tick
            price = mid - tick - depth if is_bid else mid + tick + depth
        size = 0 if rng.random() < 0.35 else rng.randrange(1, 10**6)
        if rng.random() < 0.05 and ref[is_bid]:  # delete an existing level, wherever it is
            price, size = rng.choice(list(ref[is_bid])), 0
        book.set(is_bid, price, size)
        bases.add(int(book._book[2][0, M_BASE]))
        if size:
            ref[is_bid][price] = size
        else:
            ref[is_bid].pop(price, None)
        if step % 997 == 0 or step == 29_999:
            assert book.bids() == ref[True] and book.asks() == ref[False], step
            bids, asks = book.top(5)
            assert bids == sorted(ref[True].items(), reverse=True)[:5]
            assert asks == sorted(ref[False].items())[:5]
    assert book.evicted == 0
    book.set(True, 0, 5)  # a price of 0 is not a level (and not a division by zero)
    assert 0 not in book.bids()
    # the paths were taken: the finer tick was learned, far levels sit in the overflow, the window moved
    bid_meta = book._book[2][0]
    assert bid_meta[M_TICK] == 10**6 and bid_meta[M_OVN] > 0 and bid_meta[M_COUNT] > 0
    assert recentred(book) > 1


def test_levels_beyond_capacity_evict_the_farthest():
    book = Book(capacity=4)
    for p in (10, 20, 30, 40, 50):
        book.set(True, p, 1)
    assert sorted(book.bids()) == [20, 30, 40, 50] and book.evicted == 1
    book.set(True, 5, 1)  # farther than every kept level: dropped
    assert 5 not in book.bids() and book.evicted == 2


def _book_row(t_ns, seq, bids, asks):
    row = {"origin_time": t_ns, "received_time": t_ns + 1, "sequence_number": seq}
    for side, levels in (("bid", bids), ("ask", asks)):
        for i in range(schemas.BOOK_LEVELS):
            p, q = levels[i] if i < len(levels) else (None, None)
            row[f"{side}_{i}_price"], row[f"{side}_{i}_size"] = p, q
    return row


def _write_day(tmp_path, book_rows, deltas, trades):
    paths = {t: tmp_path / f"{t}.parquet" for t in ("trades", "book", "book_delta")}
    book = pa.Table.from_pylist(
        book_rows,
        schema=pa.schema(
            [f.with_type(pa.int64()) if f.name.endswith("time") else f for f in schemas.STAGED_BOOK]
        ),
    )
    write_table(paths["book"], book.cast(schemas.STAGED_BOOK))
    d = pa.Table.from_pylist(
        [
            {
                "origin_time": t,
                "received_time": t + 1,
                "sequence_number": s,
                "side_is_bid": b,
                "price": p,
                "size": q,
            }
            for t, s, b, p, q in deltas
        ],
        schema=pa.schema(
            [
                ("origin_time", pa.int64()),
                ("received_time", pa.int64()),
                ("sequence_number", pa.int64()),
                ("side_is_bid", pa.bool_()),
                ("price", pa.int64()),
                ("size", pa.int64()),
            ]
        ),
    )
    write_table(paths["book_delta"], d.cast(schemas.STAGED_BOOK_DELTA))
    tr = pa.Table.from_pylist(
        [
            {"origin_time": t, "received_time": t + 1, "trade_id": i, "side": side, "price": p, "quantity": q}
            for t, i, side, p, q in trades
        ],
        schema=pa.schema(
            [
                ("origin_time", pa.int64()),
                ("received_time", pa.int64()),
                ("trade_id", pa.int64()),
                ("side", pa.string()),
                ("price", pa.int64()),
                ("quantity", pa.int64()),
            ]
        ),
    )
    write_table(paths["trades"], tr.cast(schemas.STAGED_TRADES))
    return paths


def _top(df: pl.DataFrame, i: int) -> tuple:
    r = df.row(i, named=True)
    return (r["bid_0_price"], r["bid_0_size"], r["ask_0_price"], r["ask_0_size"])


def test_mid_stream_day_seeds_from_the_snapshot_and_orders_events(tmp_path):
    ms = 1_000_000
    paths = _write_day(
        tmp_path,
        [_book_row(T0 + 100 * ms, 10, [(100 * S, 1 * S), (99 * S, 2 * S)], [(101 * S, 3 * S)])],
        [
            (T0 + 50 * ms, 9, True, 100 * S, 5 * S),  # before the snapshot: unseeded
            (T0 + 100 * ms, 10, True, 100 * S, 1 * S),  # the snapshot's own message: already in it
            (T0 + 200 * ms, 11, True, 100 * S, 0),  # delete the best bid
            (T0 + 200 * ms, 11, False, 101 * S, 4 * S),
            (T0 + 300 * ms, 12, True, 100 * S + S // 2, 7 * S),
        ],
        [(T0 + 200 * ms, 500, "buy", 101 * S, S // 10), (T0 + 250 * ms, 501, "sell", 99 * S, S // 10)],
    )
    res = build_unified(paths, DATE, tmp_path / "u.parquet", top_n=2)
    assert res.stats["unseeded"] == 1 and res.stats["stale"] == 1 and res.stats["seeds"] == 1
    assert res.rows == 6 and res.book_rows == 3  # the snapshot and messages 11 and 12; trades add none
    book = pl.read_parquet(tmp_path / "u.book.parquet")
    assert book["event_index"].to_list() == [0, 2, 5]
    assert book["sequence_number"].to_list() == [10, 11, 12]
    u = scan_day(tmp_path / "u.parquet").collect()
    assert u["event_type"].to_list() == [0, 1, 1, 2, 2, 1]
    assert u["is_last_in_message"].to_list() == [True, False, True, True, True, True]
    assert _top(u, 0) == (100 * S, 1 * S, 101 * S, 3 * S)
    # inside message 11 the book in force is the one before it (state at update id 10)
    assert _top(u, 1) == _top(u, 0) and u["book_sequence_number"].to_list() == [10, 10, 11, 11, 11, 12]
    assert _top(u, 2) == (99 * S, 2 * S, 101 * S, 4 * S)
    assert u.row(3, named=True)["sequence_number"] == 11 and u.row(3, named=True)["trade_id"] == 500
    assert _top(u, 3) == _top(u, 4) == _top(u, 2)  # trades carry the book after the last message
    assert _top(u, 5) == (100 * S + S // 2, 7 * S, 101 * S, 4 * S)
    assert u.row(0, named=True)["bid_1_price"] == 99 * S and u.row(0, named=True)["ask_1_price"] is None
    # book_every="row": a state after every row, the half-applied message included; the events are identical
    build_unified(paths, DATE, tmp_path / "rows.parquet", top_n=2, book_every="row")
    rows = scan_day(tmp_path / "rows.parquet").collect()
    assert pl.read_parquet(tmp_path / "rows.book.parquet")["event_index"].to_list() == [0, 1, 2, 3, 4, 5]
    assert _top(rows, 1) == (99 * S, 2 * S, 101 * S, 3 * S)
    assert (
        rows.drop("book_sequence_number", "book_origin_time")
        .filter(pl.int_range(pl.len()) != 1)
        .equals(u.drop("book_sequence_number", "book_origin_time").filter(pl.int_range(pl.len()) != 1))
    )


def test_crossed_book_is_counted_and_resolved_by_the_last_updated_side(tmp_path):
    ms = 1_000_000
    paths = _write_day(
        tmp_path,
        [_book_row(T0, 1, [(100 * S, S)], [(101 * S, S), (102 * S, S)])],
        [(T0 + ms, 2, True, 101 * S + S // 2, S)],  # a bid through the best ask
        [],
    )
    res = build_unified(paths, DATE, tmp_path / "u.parquet", top_n=2)
    assert res.stats["crossed"] == 1
    u = scan_day(tmp_path / "u.parquet").collect()
    assert _top(u, 1) == (101 * S + S // 2, S, 102 * S, S)  # the stale ask at 101 was removed


def test_a_disagreeing_snapshot_is_counted_and_resyncs(tmp_path):
    ms = 1_000_000
    paths = _write_day(
        tmp_path,
        [
            _book_row(T0, 1, [(100 * S, S)], [(101 * S, S)]),
            _book_row(T0 + 10 * ms, 2, [(100 * S, 9 * S)], [(101 * S, S)]),  # the exchange says 9, not 2
            _book_row(T0 + 20 * ms, 3, [(100 * S, 9 * S)], [(101 * S, S)]),
        ],
        [(T0 + 10 * ms, 2, True, 100 * S, 2 * S), (T0 + 20 * ms, 3, False, 101 * S, S)],
        [],
    )
    res = build_unified(paths, DATE, tmp_path / "u.parquet", top_n=1)
    assert res.stats["snapshot_mismatch"] == 1 and res.stats["snapshot_match"] == 1
    assert res.self_consistency == 0.5 and res.mismatched_snapshots == [2]
    u = scan_day(tmp_path / "u.parquet").collect()
    assert _top(u, u.height - 1)[:2] == (100 * S, 9 * S)
    # the resynced state is published at the snapshot's sequence number (after its message, row 2)
    book = pl.read_parquet(tmp_path / "u.book.parquet")
    assert book.select("event_index", "sequence_number", "bid_0_size").rows() == [
        (0, 1, S),
        (2, 2, 9 * S),
        (4, 3, 9 * S),
    ]


def test_unknowable_deep_levels_are_not_mismatches(tmp_path):
    ms = 1_000_000
    # 20-level snapshots: the second one shows a 21st-level price the first never could
    bids1 = [(1000 * S - i * S, S) for i in range(20)]
    bids2 = [(1000 * S - i * S, S) for i in range(1, 21)]
    paths = _write_day(
        tmp_path,
        [_book_row(T0, 1, bids1, [(1001 * S, S)]), _book_row(T0 + 10 * ms, 2, bids2, [(1001 * S, S)])],
        [(T0 + 10 * ms, 2, True, 1000 * S, 0)],
        [],
    )
    res = build_unified(paths, DATE, tmp_path / "u.parquet", top_n=1)
    assert res.stats["snapshot_match"] == 1 and res.stats["snapshot_mismatch"] == 0


@pytest.mark.parametrize("chunk_s", [3600, 60])
def test_output_is_byte_identical_across_runs_and_chunkings(tmp_path, chunk_s):
    from rlx_pipeline.lake.source import LocalLake
    from rlx_pipeline.lake.staging import stage_day
    from rlx_pipeline.simulator import SimConfig, simulate

    simulate(SimConfig(duration_s=150, seed=4)).write_lake(tmp_path / "lake")
    paths = {}
    for t in ("trades", "book", "book_delta"):
        paths[t] = tmp_path / f"{t}.parquet"
        stage_day(LocalLake(tmp_path / "lake"), t, "BINANCE", "BTC-USDT", DATE, paths[t])
    build_unified(paths, DATE, tmp_path / "a.parquet")
    build_unified(paths, DATE, tmp_path / "b.parquet", chunk_s=chunk_s)
    for suffix in (".parquet", ".book.parquet"):
        assert pl.read_parquet(tmp_path / f"a{suffix}").equals(pl.read_parquet(tmp_path / f"b{suffix}"))
    build_unified(paths, DATE, tmp_path / "c.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "c.parquet").read_bytes()
    assert (tmp_path / "a.book.parquet").read_bytes() == (tmp_path / "c.book.parquet").read_bytes()


def test_unsorted_staged_tables_give_the_same_stream(tmp_path):
    from rlx_pipeline.lake.source import LocalLake
    from rlx_pipeline.lake.staging import stage_day
    from rlx_pipeline.simulator import SimConfig, simulate

    simulate(SimConfig(duration_s=120, seed=5)).write_lake(tmp_path / "lake")
    paths, shuffled = {}, {}
    rng = np.random.default_rng(3)
    for t, key in (("trades", "trade_id"), ("book", "sequence_number"), ("book_delta", "sequence_number")):
        paths[t] = tmp_path / f"{t}.parquet"
        stage_day(LocalLake(tmp_path / "lake"), t, "BINANCE", "BTC-USDT", DATE, paths[t])
        df = pl.read_parquet(paths[t])
        # rows of one (time, key) keep their order (a message's rows apply in file order); groups are shuffled
        groups = df.select("origin_time", key).unique(maintain_order=True)
        groups = groups.with_columns(pl.Series("r", rng.permutation(groups.height)))
        df = df.join(groups, on=["origin_time", key], how="left", maintain_order="left")
        shuffled[t] = tmp_path / f"shuffled-{t}.parquet"
        df.sort("r", maintain_order=True).drop("r").write_parquet(shuffled[t])
    a = build_unified(paths, DATE, tmp_path / "a.parquet", chunk_s=30)
    b = build_unified(shuffled, DATE, tmp_path / "b.parquet", chunk_s=30)
    assert a.bucketed == [] and sorted(b.bucketed) == ["book", "book_delta", "trades"]
    assert a.rows == b.rows > 0 and a.stats == b.stats
    for suffix in (".parquet", ".book.parquet"):
        assert pl.read_parquet(tmp_path / f"a{suffix}").equals(pl.read_parquet(tmp_path / f"b{suffix}"))


def test_read_api_spans_days_and_joins_the_book_in_force(tmp_path):
    from rlx_pipeline.lake.source import LocalLake
    from rlx_pipeline.lake.staging import stage_day
    from rlx_pipeline.layout import DataLayout
    from rlx_pipeline.simulator import SimConfig, simulate

    layout = DataLayout(tmp_path / "data")
    days = ("2024-08-09", "2024-08-10")
    for k, day in enumerate(days):
        simulate(SimConfig(duration_s=60, seed=k, start=f"{day}T00:00:00Z")).write_lake(tmp_path / f"lake{k}")
        paths = {}
        for t in ("trades", "book", "book_delta"):
            paths[t] = tmp_path / f"{t}{k}.parquet"
            stage_day(LocalLake(tmp_path / f"lake{k}"), t, "BINANCE", "BTC-USDT", day, paths[t])
        build_unified(
            paths,
            day,
            layout.unified(day, "BTC-USDT"),
            book_dest=layout.unified_book(day, "BTC-USDT"),
            top_n=3,
        )
    one = [scan_day(layout.unified(d, "BTC-USDT")).collect() for d in days]
    both = read_unified(  # built outside the pipeline (no verdict): read as files, knowingly
        tmp_path / "data", "BTC-USDT", days[0], "2024-08-11", on_unverified="include"
    ).collect()  # a missing day is skipped
    assert both.equals(pl.concat(one))
    # the reference as-of join: the last book row at or before each event, by a forward fill over row numbers
    for d, u in zip(days, one, strict=True):
        events = pl.read_parquet(layout.unified(d, "BTC-USDT")).with_row_index("i")
        book = pl.read_parquet(layout.unified_book(d, "BTC-USDT"))
        ref = events.join(
            book.select("event_index", "bid_0_price", "ask_2_size"),
            left_on="i",
            right_on="event_index",
            how="left",
        ).with_columns(pl.col("bid_0_price", "ask_2_size").forward_fill())
        assert u.select("bid_0_price", "ask_2_size").equals(ref.select("bid_0_price", "ask_2_size"))
        assert book.height < events.height and u["bid_0_price"].null_count() == 0
    # streaming batches (boundaries anywhere, even inside a message) give the same rows as the lazy join
    streamed = pl.from_arrow(
        pa.Table.from_batches(
            list(iter_batches(tmp_path / "data", "BTC-USDT", *days, batch_rows=997, on_unverified="include"))
        )
    )
    assert streamed.equals(both)
    assert read_book(tmp_path / "data", "BTC-USDT", *days, on_unverified="include").collect().height == sum(
        pl.read_parquet(layout.unified_book(d, "BTC-USDT")).height for d in days
    )
    assert (
        read_unified(tmp_path / "data", "BTC-USDT", days[0], book=False, on_unverified="include")
        .collect()
        .width
        == 9
    )
    with pytest.raises(UnverifiedDay, match=f"{days[0]}\\|BTC-USDT is not verified: no validation verdict"):
        read_unified(tmp_path / "data", "BTC-USDT", days[0])  # the default: only verified days
    with pytest.raises(FileNotFoundError, match="ETH-USDT"):
        read_unified(tmp_path / "data", "ETH-USDT", days[0])


def test_files_of_different_builds_are_refused(tmp_path):
    from rlx_pipeline.lake.source import LocalLake
    from rlx_pipeline.lake.staging import stage_day
    from rlx_pipeline.simulator import SimConfig, simulate

    simulate(SimConfig(duration_s=30, seed=1)).write_lake(tmp_path / "lake")
    paths = {t: tmp_path / f"{t}.parquet" for t in ("trades", "book", "book_delta")}
    for t, p in paths.items():
        stage_day(LocalLake(tmp_path / "lake"), t, "BINANCE", "BTC-USDT", DATE, p)
    build_unified(paths, DATE, tmp_path / "a.parquet", top_n=2)
    build_unified(paths, DATE, tmp_path / "b.parquet", top_n=3)  # other settings: another build
    (tmp_path / "b.book.parquet").replace(tmp_path / "a.book.parquet")  # as a crash between the renames would
    with pytest.raises(ValueError, match="different builds"):
        scan_day(tmp_path / "a.parquet")


def test_cli_builds_a_day_and_prints_its_head(tmp_path):
    from click.testing import CliRunner

    from rlx_pipeline.cli import main
    from rlx_pipeline.lake.source import LocalLake
    from rlx_pipeline.lake.staging import stage_day
    from rlx_pipeline.layout import DataLayout
    from rlx_pipeline.simulator import SimConfig, simulate

    layout = DataLayout(tmp_path / "data")
    simulate(SimConfig(duration_s=30, seed=2)).write_lake(tmp_path / "lake")
    runner = CliRunner()
    args = ["--data-dir", str(tmp_path / "data"), "--date", DATE, "--symbol", "BTC-USDT"]
    out = runner.invoke(main, ["unified", "build", *args])
    assert out.exit_code == 1 and "staged tables missing" in out.output
    for t in ("trades", "book", "book_delta"):
        stage_day(
            LocalLake(tmp_path / "lake"), t, "BINANCE", "BTC-USDT", DATE, layout.staged(t, DATE, "BTC-USDT")
        )
    out = runner.invoke(main, ["unified", "build", *args, "--top-n", "3"])
    assert out.exit_code == 0, out.output
    events = pl.read_parquet(layout.unified(DATE, "BTC-USDT"))
    assert f"{events.height:,} events" in out.output
    assert pl.read_parquet(layout.unified_book(DATE, "BTC-USDT")).width == 8 + 4 * 3
    out = runner.invoke(main, ["unified", "head", *args, "-n", "5"])
    assert out.exit_code == 0, out.output
    assert "bid_0_price" in out.output and "book_sequence_number" in out.output
    assert f"warning: {DATE}|BTC-USDT is not verified: no validation verdict" in out.output  # built by hand
    out = runner.invoke(main, ["unified", "head", *args, "--unverified", "raise"])
    assert out.exit_code == 1 and "is not verified" in out.output
