"""Read the unified stream of a symbol over a date range: the API a notebook or a training loop uses.

    import polars as pl
    from rlx_pipeline.book import read_unified, read_book, iter_batches
    lf = read_unified("data", "BTC-USDT", "2024-08-09", "2024-08-10")     # days [start, end], lazily, with book
    trades = lf.filter(pl.col("event_type") == 2).select("origin_time", "price", "bid_0_price", "ask_0_price")
    mids = read_book("data", "BTC-USDT", "2024-08-09").select("origin_time", "bid_0_price", "ask_0_price")
    for batch in iter_batches("data", "BTC-USDT", "2024-08-09", batch_rows=100_000):
        ...  # pyarrow.RecordBatch in unified order, day after day, each event with the book in force after it
    gaps = read_invalid_intervals("data", "BTC-USDT", "2024-08-09", "2024-08-10")  # spans not to trust

Every book state carries ``book_valid``: False inside an invalid interval (a proven loss of a depth message, until
a snapshot re-seeds the book), so ``lf.filter(pl.col("book_valid"))`` keeps the events whose book is trusted.

A day is ``events.parquet`` (one row per event) and ``book.parquet`` (the top-N book after each message and
snapshot, keyed by ``event_index``, the event's row in its day). An event carries the last book state at or before
it: after a message's last row, the book after that message; inside a message, the book before it (a message
applies atomically); at a trade, the book after the last message. ``book_sequence_number`` says which update id
that state is at. Prices and sizes are int64 fixed point at 1e-8 (``rlx_pipeline.fixed_point.expr_to_decimal``
converts exactly).

Days are read through the gate (``rlx_pipeline.gate.read_problems``): a day its checks do not vouch for raises
``UnverifiedDay`` unless the caller asks to skip or include it (``on_unverified``).
"""

from __future__ import annotations

import datetime as dt
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from rlx_pipeline import gate, schemas, storage
from rlx_pipeline.book.unified import BUILD_KEY, book_path_for, intervals_path_for
from rlx_pipeline.layout import DataLayout

# Book columns that would clash with the event's own, renamed when joined onto events.
_BOOK_RENAMES = {"sequence_number": "book_sequence_number", "origin_time": "book_origin_time"}
_BOOK_DROPPED = ("received_time", "event_type")


def _days(start: str, end: str) -> list[str]:
    a, b = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    return [(a + dt.timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


OnUnverified = Literal["raise", "skip", "include"]


class UnverifiedDay(RuntimeError):
    """A requested day whose served stream is not vouched for by its checks (the message says why)."""


def _build_id(path: Path) -> str | None:
    value = (pq.read_schema(path).metadata or {}).get(BUILD_KEY)
    return value.decode() if value is not None else None


def check_pair(events: Path, book: Path) -> str | None:
    """Both files of a day come from the same build (a crash between their two renames would mix builds);
    returns the build id."""
    if not book.is_file():
        raise FileNotFoundError(
            f"{book}: the book states of {events} are missing; re-materialize the partition"
        )
    a, b = _build_id(events), _build_id(book)
    if a != b:
        raise ValueError(f"{events} and {book} come from different builds; re-materialize the partition")
    return a


def unified_paths(
    data_dir: str | os.PathLike[str],
    symbol: str,
    start: str,
    end: str,
    *,
    on_unverified: OnUnverified = "raise",
) -> list[tuple[Path, Path]]:
    """(events, book) files of ``symbol`` for days ``start``..``end`` (inclusive) that exist, in order.

    A day whose served stream is not vouched for (``rlx_pipeline.gate.read_problems``: its latest verdict is
    missing, pending or failed, a blocking check of the day failed since, or the files served are not the build
    promoted from the inputs the verdict judged) is, by ``on_unverified``: ``"raise"`` (default) an
    ``UnverifiedDay`` naming the day and why; ``"skip"`` left out with a warning; ``"include"`` read anyway with a
    warning (e.g. a day reconstructed with the gate overridden, knowingly)."""
    if on_unverified not in ("raise", "skip", "include"):
        raise ValueError(f"on_unverified={on_unverified!r}: expected 'raise', 'skip' or 'include'")
    layout = DataLayout(Path(data_dir))
    out = []
    for d in _days(start, end):
        events, book = layout.unified(d, symbol), layout.unified_book(d, symbol)
        if not events.is_file():
            continue
        problems = gate.read_problems(layout, d, symbol, check_pair(events, book))
        if problems:
            msg = f"{d}|{symbol} is not verified: " + "; ".join(problems)
            if on_unverified == "raise":
                raise UnverifiedDay(
                    msg + ". Pass on_unverified='skip' to leave it out, 'include' to read it."
                )
            warnings.warn(msg + (": skipped" if on_unverified == "skip" else ": read anyway"), stacklevel=3)
            if on_unverified == "skip":
                continue
        out.append((events, book))
    return out


def _paths(
    data_dir: str | os.PathLike[str],
    symbol: str,
    start: str,
    end: str | None,
    on_unverified: OnUnverified,
) -> list[tuple[Path, Path]]:
    paths = unified_paths(data_dir, symbol, start, end or start, on_unverified=on_unverified)
    if not paths:
        raise FileNotFoundError(f"no unified stream for {symbol} {start}..{end or start} under {data_dir}")
    return paths


def read_book(
    data_dir: str | os.PathLike[str],
    symbol: str,
    start: str,
    end: str | None = None,
    *,
    on_unverified: OnUnverified = "raise",
) -> pl.LazyFrame:
    """The book states alone (one row per message and snapshot), lazily."""
    return pl.scan_parquet([b for _, b in _paths(data_dir, symbol, start, end, on_unverified)])


def scan_day(events: str | os.PathLike[str], book: str | os.PathLike[str] | None = None) -> pl.LazyFrame:
    """One day's events (any path ``build_unified`` wrote), each with the book state in force after it. A file
    read: no verdict is consulted (``read_unified`` reads days through the gate)."""
    events = Path(events)
    book = Path(book) if book is not None else book_path_for(events)
    check_pair(events, book)
    return _joined(events, book)


def _joined(events: Path, book: Path) -> pl.LazyFrame:
    bk = pl.scan_parquet(book).drop(*_BOOK_DROPPED).rename(_BOOK_RENAMES)
    return (
        pl.scan_parquet(events)
        .with_row_index("event_index")
        .with_columns(pl.col("event_index").cast(pl.Int64))
        .join_asof(bk, on="event_index", strategy="backward")
        .drop("event_index")
    )


def read_invalid_intervals(
    data_dir: str | os.PathLike[str],
    symbol: str,
    start: str,
    end: str | None = None,
    *,
    on_unverified: OnUnverified = "raise",
) -> pl.DataFrame:
    """The spans of the days whose book states are not trusted (``book_valid`` false), one row each with its
    ``date``: ``start``/``end`` (end: the state that re-seeded the book), first and last update id, ``cause``
    (``lost_update_id``: named by the golden samples; ``snapshot_disagreed``: a later snapshot disagreed, the
    span starts at the last one that agreed), ``messages``, and the event rows ``[first_event_index,
    end_event_index)`` of the day that carry them. A training loop masks or skips these. ``on_unverified``: as
    ``read_unified``."""
    days = []
    for events, _ in _paths(data_dir, symbol, start, end, on_unverified):
        path = intervals_path_for(events)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the invalid intervals of {events} are missing; re-materialize")
        if (pq.read_schema(path).metadata or {}).get(BUILD_KEY) != (
            pq.read_schema(events).metadata or {}
        ).get(BUILD_KEY):
            raise ValueError(f"{events} and {path} come from different builds; re-materialize the partition")
        date = events.parent.parent.name.removeprefix("dt=")
        days.append(pl.read_parquet(path).with_columns(pl.lit(date).alias("date")))
    schema = pl.from_arrow(schemas.invalid_intervals_schema().empty_table()).with_columns(
        pl.lit("").alias("date")
    )
    return pl.concat([schema.clear(), *days], how="vertical")


def read_unified(
    data_dir: str | os.PathLike[str],
    symbol: str,
    start: str,
    end: str | None = None,
    *,
    book: bool = True,
    on_unverified: OnUnverified = "raise",
) -> pl.LazyFrame:
    """Events of the days in unified order, lazily; with ``book``, each with the book state in force after it.
    ``on_unverified``: what to do with a day its checks do not vouch for (``unified_paths``)."""
    paths = _paths(data_dir, symbol, start, end, on_unverified)  # pairs already checked
    days = [_joined(e, b) if book else pl.scan_parquet(e) for e, b in paths]
    return pl.concat(days, how="vertical")


def iter_batches(
    data_dir: str | os.PathLike[str],
    symbol: str,
    start: str,
    end: str | None = None,
    *,
    batch_rows: int = 65_536,
    columns: list[str] | None = None,
    book: bool = True,
    on_unverified: OnUnverified = "raise",
) -> Iterator[pa.RecordBatch]:
    """Event batches in unified order, streaming (memory: a batch and the book states it spans); with ``book``
    each event gets the book columns of ``read_unified``. ``on_unverified``: as ``read_unified``."""
    for events, book_path in _paths(data_dir, symbol, start, end, on_unverified):
        yield from iter_day(events, book_path if book else None, batch_rows=batch_rows, columns=columns)


def iter_day(
    events: Path, book: Path | None, *, batch_rows: int = 65_536, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """One day's event batches from its files (a file read, like ``scan_day``), with the book when ``book``."""
    ev_batches = storage.streaming_parquet(events).iter_batches(batch_size=batch_rows, columns=columns)
    if book is None:
        yield from ev_batches
    else:
        yield from _with_book(ev_batches, storage.streaming_parquet(book), batch_rows)


def _with_book(
    ev_batches: Iterator[pa.RecordBatch], bf: pq.ParquetFile, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    names = [n for n in bf.schema_arrow.names if n not in _BOOK_DROPPED]
    out_names = [_BOOK_RENAMES.get(n, n) for n in names if n != "event_index"]
    book_it = bf.iter_batches(batch_size=batch_rows, columns=names)
    loaded = bf.schema_arrow.empty_table().select(names)  # book rows from the last one in force onwards
    done, offset = False, 0
    for eb in ev_batches:
        hi = offset + len(eb)
        idx_col = loaded.column("event_index").to_numpy()
        while not done and (len(idx_col) == 0 or idx_col[-1] < hi - 1):
            b = next(book_it, None)
            if b is None:
                done = True
            else:
                loaded = pa.concat_tables([loaded, pa.Table.from_batches([b])])
                idx_col = loaded.column("event_index").to_numpy()
        pos = np.searchsorted(idx_col, np.arange(offset, hi), side="right") - 1
        take = loaded.take(pa.array(pos, mask=pos < 0)).drop_columns(["event_index"])
        cols = list(eb.columns) + [take.column(i).combine_chunks() for i in range(take.num_columns)]
        yield pa.RecordBatch.from_arrays(cols, names=list(eb.schema.names) + out_names)
        last = int(pos[-1]) if len(pos) else -1
        if last > 0:
            loaded = loaded.slice(last)  # the state in force at the batch's end carries over
        offset = hi
