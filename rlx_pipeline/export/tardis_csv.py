"""Export to Tardis.dev CSV: per day, ``incremental_book_L2`` and ``trades`` files, gzip, Tardis's file naming
(``binance_incremental_book_L2_2024-08-09_BTCUSDT.csv.gz``), read by hftbacktest's converter, nautilus_trader's
Tardis loader and most research code.

Columns as Tardis writes them: ``exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount`` (book:
``side`` bid/ask, ``amount`` 0 deletes the level) and ``exchange,symbol,timestamp,local_timestamp,id,side,price,
amount`` (trades: ``side`` is the taker's, buy/sell). ``timestamp`` is the exchange time, ``local_timestamp`` the
receive time, both in microseconds since the epoch (the unified stream's nanoseconds are floored). Where the
stream's book was seeded or resynced, ``is_snapshot`` rows carry its top-N (a reader clears each side from its best
down to the snapshot's deepest level); other book changes the deltas do not carry are incremental rows
(``rlx_pipeline.export.feed``). Prices and amounts are written as exact decimal strings (shortest form) from the
fixed-point values: a reader parsing them as float64 gets the nearest double (see ``hftbacktest_npz`` on what
float64 carries). Days are written in order with one book mirror, so the files of a range replay as one stream.
A day whose stream records invalid intervals (spans whose book is not trusted) gets a side file
``binance_invalid_intervals_2024-08-09_BTCUSDT.csv`` (Tardis has no such data type).
"""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from rlx_pipeline import fixed_point, storage
from rlx_pipeline.export.feed import SNAPSHOT_ROW, TRADE, Feed, FeedBatch, FeedCounts
from rlx_pipeline.export.hftbacktest_npz import usable_days, write_intervals
from rlx_pipeline.instruments import to_binance

BOOK_COLUMNS = [
    "exchange",
    "symbol",
    "timestamp",
    "local_timestamp",
    "is_snapshot",
    "side",
    "price",
    "amount",
]
TRADE_COLUMNS = ["exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount"]
EXCHANGES = {"BINANCE": "binance", "BINANCE_FUTURES": "binance-futures"}


@dataclass
class TardisResult:
    files: list[Path] = field(default_factory=list)
    book_rows: int = 0
    trade_rows: int = 0
    intervals_files: list[Path] = field(default_factory=list)  # per day with invalid intervals (side files)
    feed: FeedCounts = field(default_factory=FeedCounts)
    seconds: float = 0.0


def tardis_name(exchange: str, data_type: str, date: str, symbol: str) -> str:
    return (
        f"{EXCHANGES.get(exchange.upper(), exchange.lower())}_{data_type}_{date}_{to_binance(symbol)}.csv.gz"
    )


def _decimal(col: str) -> pl.Expr:
    """Non-negative fixed point -> shortest exact decimal string (``268380000000`` -> ``"2683.8"``)."""
    whole = (pl.col(col) // fixed_point.UNIT).cast(pl.String)
    frac = (
        (pl.col(col) % fixed_point.UNIT).cast(pl.String).str.zfill(fixed_point.SCALE).str.strip_chars_end("0")
    )
    return pl.when(frac == "").then(whole).otherwise(whole + "." + frac).alias(col)


def _frames(fb: FeedBatch, exchange: str, symbol: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    df = pl.DataFrame(
        {
            "kind": fb.kind,
            "timestamp": fb.exch_ns // 1000,
            "local_timestamp": fb.local_ns // 1000,
            "side": fb.side,
            "price": fb.price,
            "amount": fb.qty,
            "id": fb.trade_id,
        }
    ).with_columns(pl.lit(exchange).alias("exchange"), pl.lit(symbol).alias("symbol"))
    trades = df.filter(pl.col("kind") == TRADE).select(
        "exchange",
        "symbol",
        "timestamp",
        "local_timestamp",
        pl.col("id").cast(pl.String),
        pl.when(pl.col("side") == 1).then(pl.lit("buy")).otherwise(pl.lit("sell")).alias("side"),
        _decimal("price"),
        _decimal("amount"),
    )
    book = df.filter(pl.col("kind") != TRADE).select(
        "exchange",
        "symbol",
        "timestamp",
        "local_timestamp",
        (pl.col("kind") == SNAPSHOT_ROW).alias("is_snapshot"),
        pl.when(pl.col("side") == 1).then(pl.lit("bid")).otherwise(pl.lit("ask")).alias("side"),
        _decimal("price"),
        _decimal("amount"),
    )
    return book, trades


def export_tardis(
    data_dir: str | os.PathLike[str],
    symbol: str,
    start: str,
    end: str,
    out_dir: str | os.PathLike[str],
    *,
    exchange: str = "BINANCE",
    progress: Callable[[int], None] | None = None,
) -> TardisResult:
    """Days ``start``..``end`` (inclusive) of ``symbol`` as Tardis CSV files in ``out_dir`` (each written
    atomically); refuses a day that is not usable. ``progress(n)``: unified-stream events read since the last
    call."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    days = usable_days(data_dir, symbol, start, end)
    ex, sym = EXCHANGES.get(exchange.upper(), exchange.lower()), to_binance(symbol)
    feed = Feed()
    result = TardisResult()
    for date, events, book in days:
        book_dest = out_dir / tardis_name(exchange, "incremental_book_L2", date, symbol)
        trade_dest = out_dir / tardis_name(exchange, "trades", date, symbol)
        with (
            storage.atomic_path(book_dest) as book_tmp,
            storage.atomic_path(trade_dest) as trade_tmp,
            gzip.open(book_tmp, "wb", compresslevel=1) as bf,
            gzip.open(trade_tmp, "wb", compresslevel=1) as tf,
        ):
            bf.write((",".join(BOOK_COLUMNS) + "\n").encode())
            tf.write((",".join(TRADE_COLUMNS) + "\n").encode())
            for fb in feed.day(events, book):
                book_df, trade_df = _frames(fb, ex, sym)
                # lower-case booleans, as Tardis writes them
                book_df = book_df.with_columns(
                    pl.when(pl.col("is_snapshot"))
                    .then(pl.lit("true"))
                    .otherwise(pl.lit("false"))
                    .alias("is_snapshot")
                )
                book_df.write_csv(bf, include_header=False)
                trade_df.write_csv(tf, include_header=False)
                result.book_rows += len(book_df)
                result.trade_rows += len(trade_df)
                if progress and fb.events_read:
                    progress(fb.events_read)
        result.files += [book_dest, trade_dest]
        name = tardis_name(exchange, "invalid_intervals", date, symbol).removesuffix(".gz")
        side = write_intervals(data_dir, symbol, [date], out_dir / name)
        if side is not None:
            result.intervals_files.append(side)
    result.feed = feed.counts
    result.seconds = time.perf_counter() - t0
    return result
