"""Raw Crypto Lake day files with numpy, for tests and the staging benchmark.

Not a market model (that is ``rlx_pipeline.simulator``): rows with the raw schema, consistent sequence
numbers between ``book`` and ``book_delta_v2``, consecutive trade ids, and prices on a 0.01 grid, written
in bounded memory (chunk by chunk) so a 30 M-row day can be produced on a small machine.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rlx_pipeline.formats.lake_tables import RAW_BOOK, RAW_BOOK_DELTA, RAW_TRADES
from rlx_pipeline.layout import lake_key
from rlx_pipeline.schemas import BOOK_LEVELS

NS = 1_000_000_000
DAY_NS = 86_400 * NS


@dataclass(frozen=True)
class RawDaySpec:
    exchange: str = "BINANCE"
    symbol: str = "BTC-USDT"
    date: str = "2024-08-09"
    delta_messages: int = 2_000
    levels_per_message: float = 3.0  # mean rows per delta message (geometric)
    trades: int = 1_500
    snapshot_every: int = 50  # one `book` row every N delta messages
    unseeded_messages: int = 0  # delta messages before the first `book` row (real days start mid-stream)
    mid: float = 60_000.0
    seed: int = 7
    chunk_messages: int = 200_000  # bounded memory when writing big days
    row_group_size: int = 1_000_000


def _day_start_ns(date: str) -> int:
    return int(dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC).timestamp()) * NS


def _path(root: Path, table: str, spec: RawDaySpec) -> Path:
    p = Path(root) / lake_key(table, spec.exchange, spec.symbol, spec.date)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def write_raw_day(lake_root: str | Path, spec: RawDaySpec = RawDaySpec()) -> dict[str, Path]:
    """Write raw ``trades``, ``book`` and ``book_delta_v2`` for one day under ``lake_root``; returns the paths."""
    rng = np.random.default_rng(spec.seed)
    t0 = _day_start_ns(spec.date)
    root = Path(lake_root)
    delta_path, book_path = _path(root, "book_delta_v2", spec), _path(root, "book", spec)
    # Message times spread evenly over the day with jitter, strictly increasing.
    m = spec.delta_messages
    base = t0 + (np.arange(m, dtype=np.int64) * (DAY_NS // max(m, 1))) + NS // 100
    seq0 = 40_000_000_000
    delta_rows = 0
    book_rows: list[dict[str, np.ndarray]] = []
    with (
        pq.ParquetWriter(delta_path, RAW_BOOK_DELTA, compression="snappy") as dw,
        pq.ParquetWriter(book_path, RAW_BOOK, compression="snappy") as bw,
    ):
        next_seq = seq0
        for lo in range(0, m, spec.chunk_messages):
            hi = min(m, lo + spec.chunk_messages)
            n = hi - lo
            per_msg = rng.geometric(1.0 / spec.levels_per_message, size=n).astype(np.int64)
            step = per_msg + rng.integers(0, 3, size=n)  # Binance u advances by the updates of the window
            seq = next_seq + np.cumsum(step)
            next_seq = int(seq[-1])
            recv = base[lo:hi] + rng.integers(0, NS // 200, size=n)
            origin = recv - rng.integers(1_000_000, 5_000_000, size=n)  # exchange time a few ms earlier
            rows = int(per_msg.sum())
            msg_idx = np.repeat(np.arange(n), per_msg)
            is_bid = rng.random(rows) < 0.5
            ticks = rng.integers(1, 500, size=rows)
            price = np.round(np.where(is_bid, spec.mid - ticks * 0.01, spec.mid + ticks * 0.01), 2)
            size = np.round(rng.exponential(0.3, size=rows), 5)
            size[rng.random(rows) < 0.15] = 0.0
            batch = pa.table(
                [
                    pa.array(origin[msg_idx]),
                    pa.array(recv[msg_idx]),
                    pa.array(seq[msg_idx]),
                    pa.array(is_bid),
                    pa.array(price),
                    pa.array(size),
                ],
                schema=RAW_BOOK_DELTA,
            )
            dw.write_table(batch, row_group_size=spec.row_group_size)
            delta_rows += rows
            # book rows: after every `snapshot_every`-th message (and before the first seeded one)
            snap_at = np.arange(0, n) + lo
            snap_at = snap_at[
                (snap_at >= spec.unseeded_messages)
                & ((snap_at - spec.unseeded_messages) % spec.snapshot_every == 0)
            ]
            if snap_at.size:
                k = snap_at - lo
                # the snapshot taken just before message k carries the id of message k-1
                snap_seq = np.where(k > 0, seq[np.maximum(k - 1, 0)], seq[0] - step[0])
                book_rows.append(_book_rows(rng, origin[k] - 1, recv[k] - 1, snap_seq, spec.mid))
                if sum(len(b["timestamp"]) for b in book_rows) >= spec.row_group_size:
                    bw.write_table(_book_table(book_rows), row_group_size=spec.row_group_size)
                    book_rows = []
        if book_rows:
            bw.write_table(_book_table(book_rows), row_group_size=spec.row_group_size)
    paths = {"book_delta_v2": delta_path, "book": book_path}
    if spec.trades:
        paths["trades"] = write_raw_trades(root, spec)
    return paths


def _book_rows(
    rng: np.random.Generator, origin: np.ndarray, recv: np.ndarray, seq: np.ndarray, mid: float
) -> dict:
    n = origin.size
    cols: dict[str, np.ndarray] = {"timestamp": origin, "receipt_timestamp": recv, "sequence_number": seq}
    for side, sign in (("bid", -1), ("ask", 1)):
        for i in range(BOOK_LEVELS):
            cols[f"{side}_{i}_price"] = np.round(np.full(n, mid) + sign * (i + 1) * 0.01, 2)
            cols[f"{side}_{i}_size"] = np.round(rng.exponential(0.5, size=n) + 0.00001, 5)
    return cols


def _book_table(parts: list[dict[str, np.ndarray]]) -> pa.Table:
    return pa.table(
        {name: pa.array(np.concatenate([p[name] for p in parts])) for name in RAW_BOOK.names}, schema=RAW_BOOK
    )


def write_raw_trades(lake_root: str | Path, spec: RawDaySpec = RawDaySpec()) -> Path:
    rng = np.random.default_rng(spec.seed + 1)
    t0 = _day_start_ns(spec.date)
    n = spec.trades
    recv = t0 + np.sort(rng.integers(NS, DAY_NS - NS, size=n))
    origin = recv - rng.integers(1_000_000, 5_000_000, size=n)
    side = np.where(rng.random(n) < 0.5, "buy", "sell")
    table = pa.table(
        [
            pa.array(side),
            pa.array(np.round(rng.exponential(0.05, size=n) + 0.00001, 5)),
            pa.array(np.round(spec.mid + rng.integers(-100, 100, size=n) * 0.01, 2)),
            pa.array(3_700_000_000 + np.arange(n, dtype=np.int64)),
            pa.array(origin),
            pa.array(recv),
        ],
        schema=RAW_TRADES,
    )
    path = _path(Path(lake_root), "trades", spec)
    pq.write_table(table, path, compression="snappy", row_group_size=spec.row_group_size)
    return path
