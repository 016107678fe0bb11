"""One pass over a day's parquet file holds a row group and a batch, not the file read so far.

pyarrow's ``ParquetFile`` pre-buffers by default and keeps every row group it read until the reader is done, so
a pass over a 24 h file held most of it (the unified build's peak memory grew with the day). The streaming readers
open files with ``storage.streaming_parquet``; these tests read a file of many row groups and measure the Arrow
memory allocated while iterating (exact, not timed)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlx_pipeline import schemas, storage
from rlx_pipeline.book.unified import COLUMNS, KEYS, NS, _Stream
from rlx_pipeline.lake import quality

ROW_GROUPS, ROWS = 64, 40_000  # 2.56 M rows, 92 MB: a 2^18-row batch of the unified build is a tenth


@pytest.fixture(scope="module")
def trades_file(tmp_path_factory) -> pq.ParquetFile:
    """Staged-trades-like rows in time order, random prices and sizes (incompressible), in 64 row groups."""
    rng = np.random.default_rng(0)
    n = ROW_GROUPS * ROWS
    t = 1_723_161_600 * NS + np.arange(n, dtype=np.int64) * 10_000_000  # every 10 ms
    table = pa.table(
        {
            "origin_time": pa.array(t).view(schemas.TS),
            "received_time": pa.array(t + rng.integers(0, 10**8, n)).view(schemas.TS),
            "trade_id": pa.array(np.arange(n, dtype=np.int64)),
            "side": pa.array(np.where(rng.random(n) < 0.5, "buy", "sell")),
            "price": pa.array(rng.integers(1, 10**15, n)),
            "quantity": pa.array(rng.integers(1, 10**15, n)),
        }
    )
    path = tmp_path_factory.mktemp("streaming") / "data.parquet"
    pq.write_table(table, path, row_group_size=ROWS, compression="zstd")
    return path


def _peak_while(consume: Callable[[], Iterable[object]]) -> int:
    """The most Arrow memory allocated (bytes) at any item of the iteration, above what it started from."""
    base = pa.total_allocated_bytes()
    peak = 0
    for _ in consume():
        peak = max(peak, pa.total_allocated_bytes() - base)
    return peak


def test_streaming_parquet_holds_a_row_group_not_the_file(trades_file):
    size = trades_file.stat().st_size
    peak = _peak_while(lambda: storage.streaming_parquet(trades_file).iter_batches(batch_size=ROWS))
    assert peak < size / 8  # a row group is 1/64 of the file; pyarrow's default pre-buffering held all of it
    rows = sum(len(b) for b in storage.streaming_parquet(trades_file).iter_batches(batch_size=ROWS))
    assert rows == ROW_GROUPS * ROWS


def test_lake_quality_reads_a_staged_table_in_bounded_memory(trades_file):
    size = trades_file.stat().st_size
    assert _peak_while(lambda: quality.iter_staged(trades_file, batch_rows=ROWS)) < size / 8


def test_unified_stream_source_reads_in_bounded_memory(trades_file):
    """The unified build's reader of a staged table, chunk by chunk (10 minutes of the file at a time)."""
    size = trades_file.stat().st_size
    stream = _Stream("trades", trades_file, COLUMNS["trades"], KEYS["trades"])
    start = 1_723_161_600 * NS
    chunks = [stream.take(start + k * 600 * NS) for k in range(1, 2 + ROW_GROUPS * ROWS // 60_000)]
    assert sum(len(c) for c in chunks) == ROW_GROUPS * ROWS
    stream = _Stream("trades", trades_file, COLUMNS["trades"], KEYS["trades"])

    def takes():
        for k in range(1, 2 + ROW_GROUPS * ROWS // 60_000):
            yield stream.take(start + k * 600 * NS)

    assert _peak_while(takes) < size / 2  # a batch (a tenth) and a chunk; before, the file read so far too


def test_lake_trades_check_holds_runs_of_ids_not_the_ids():
    """A complete day of ids (any order, a duplicate, one outlier far away) is two runs: 32 bytes, where the day's
    ids themselves (what the check concatenated before) are 8 bytes each."""
    rng = np.random.default_rng(1)
    ids = np.arange(3_000_000_000, 3_000_000_000 + 4_000_000, dtype=np.int64)
    rng.shuffle(ids)
    runs = quality.TradeIdRuns()
    for batch in np.array_split(ids, 40):
        runs.add(batch)
    runs.add(np.array([3_000_000_123, 10**15]))
    assert (runs.starts.tolist(), runs.ends.tolist()) == (
        [3_000_000_000, 10**15],
        [3_000_000_000 + 4_000_000 - 1, 10**15],
    )
    assert runs.starts.nbytes + runs.ends.nbytes == 32 < ids.nbytes
    assert (runs.unique, runs.duplicates, runs.gaps) == (4_000_001, 1, 1)


def _unified_day(tmp_path, n: int, top_n: int = 10):
    """An events/book pair of ``n`` deltas, a book state after each (both sides' top N), in row groups of 10,000."""
    rng = np.random.default_rng(3)
    t = 1_723_161_600 * NS + np.arange(n, dtype=np.int64) * 1_000_000
    bid = np.arange(n) % 2 == 0
    price = 6_000_000_000_000 + np.where(bid, -1, 1) * rng.integers(1, 40, n) * 1_000_000
    events = pa.table(
        {
            "origin_time": t,
            "received_time": t + 5_000_000,
            "event_type": pa.array(np.full(n, 1, np.int8)),
            "side_is_bid": bid,
            "price": price,
            "size": rng.integers(0, 10**8, n),
            "trade_id": pa.array([None] * n, pa.int64()),
        }
    )
    book = {"event_index": np.arange(n, dtype=np.int64)}
    for side, sign in (("bid", -1), ("ask", 1)):
        for i in range(top_n):
            book[f"{side}_{i}_price"] = np.full(n, 6_000_000_000_000 + sign * (i + 1) * 1_000_000)
            book[f"{side}_{i}_size"] = rng.integers(1, 10**8, n)
    ev, bk = tmp_path / "events.parquet", tmp_path / "book.parquet"
    pq.write_table(events, ev, row_group_size=10_000)
    pq.write_table(pa.table(book), bk, row_group_size=10_000)
    return ev, bk


def test_export_feed_reads_the_book_in_small_batches(tmp_path):
    """The feed of the exports holds the book states an event batch needs, not a batch of them as large as an event
    batch (which was the whole book of a short day, and 86 MB of a 24 h one); same rows either way."""
    from rlx_pipeline.export.feed import Feed

    n = 200_000
    ev, bk = _unified_day(tmp_path, n)
    book_bytes = n * 41 * 8

    def run(feed: Feed) -> tuple[int, list[np.ndarray]]:
        base, peak, parts = pa.total_allocated_bytes(), 0, []
        for b in feed.day(ev, bk):
            peak = max(peak, pa.total_allocated_bytes() - base)
            parts.append([b.kind, b.exch_ns, b.local_ns, b.side, b.price, b.qty])
        rows = [np.concatenate(c) for c in zip(*parts, strict=True)]
        return peak, rows + [np.array(list(vars(feed.counts).values()))]

    new, rows = run(Feed(batch_rows=16_384))
    # book batches the size of the event batches, as before
    old, old_rows = run(Feed(batch_rows=16_384, book_batch_rows=1 << 18))
    assert all(np.array_equal(a, b) for a, b in zip(rows, old_rows, strict=True))
    assert len(rows[0]) > n
    assert old > book_bytes  # the whole book read in one batch
    assert new < book_bytes / 3, (new, old)
