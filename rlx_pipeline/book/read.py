"""Read the unified stream of a symbol over a date range: the API a notebook or a training loop uses.

    import polars as pl
    from rlx_pipeline.book import read_unified, iter_batches
    lf = read_unified("data", "BTC-USDT", "2024-08-09", "2024-08-10")     # days [start, end], lazily
    mids = lf.filter(pl.col("is_last_in_message")).select("origin_time", "bid_0_price", "ask_0_price")
    for batch in iter_batches("data", "BTC-USDT", "2024-08-09", "2024-08-09", batch_rows=100_000):
        ...  # pyarrow.RecordBatch in unified order, day after day

Prices and sizes are int64 fixed point at 1e-8 (``rlx_pipeline.fixed_point.expr_to_decimal`` converts exactly).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from rlx_pipeline.layout import DataLayout


def _days(start: str, end: str) -> list[str]:
    a, b = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    return [(a + dt.timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


def unified_paths(data_dir: str | os.PathLike[str], symbol: str, start: str, end: str) -> list[Path]:
    """Existing unified files of ``symbol`` for days ``start``..``end`` (inclusive), in order."""
    layout = DataLayout(Path(data_dir))
    return [p for p in (layout.unified(d, symbol) for d in _days(start, end)) if p.is_file()]


def read_unified(
    data_dir: str | os.PathLike[str], symbol: str, start: str, end: str | None = None
) -> pl.LazyFrame:
    paths = unified_paths(data_dir, symbol, start, end or start)
    if not paths:
        raise FileNotFoundError(f"no unified stream for {symbol} {start}..{end or start} under {data_dir}")
    return pl.scan_parquet(paths)


def iter_batches(
    data_dir: str | os.PathLike[str],
    symbol: str,
    start: str,
    end: str | None = None,
    *,
    batch_rows: int = 65_536,
    columns: list[str] | None = None,
) -> Iterator[pa.RecordBatch]:
    for path in unified_paths(data_dir, symbol, start, end or start):
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns)
