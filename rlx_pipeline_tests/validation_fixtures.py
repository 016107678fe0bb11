"""Small staged-lake and golden tables written directly with the contract schemas (STAGED_*, GOLDEN_*).

The golden tables are a perfect capture of the lake day inside ``golden_minutes``: the same trades (trade time
at Binance's ms resolution) and the same depth messages (``U = previous u + 1``). Row groups are small so that
scans cross row-group and batch boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from rlx_pipeline.layout import DataLayout
from rlx_pipeline.schemas import GOLDEN_DEPTH, GOLDEN_TRADES, STAGED_BOOK_DELTA, STAGED_TRADES
from rlx_pipeline.storage import ParquetBatchWriter
from rlx_pipeline.validation.day import day_start_ns

NS = 1_000_000_000
MS = 1_000_000
LOT = 1_000  # 1e-5 BTC in 1e-8 units


@dataclass
class Day:
    date: str = "2024-08-09"
    symbol: str = "BTC-USDT"
    minutes: int = 180
    trades_per_s: float = 1.0
    msgs_per_s: float = 2.0
    alpha: float = 2.5
    golden_minutes: range | None = field(default_factory=lambda: range(60, 120))
    seed: int = 3
    row_group: int = 2_000  # trades
    delta_row_group: int = 20_000


def _write(path, schema, cols: dict, row_group: int) -> None:
    t = pa.table({f.name: pa.array(cols[f.name], type=f.type) for f in schema}, schema=schema)
    with ParquetBatchWriter(path, schema, row_group_size=row_group) as w:
        w.write(t)


def build(day: Day) -> dict:
    """Columns (numpy) of the lake trades/deltas and which rows the golden capture sees."""
    rng = np.random.default_rng(day.seed)
    lo = day_start_ns(day.date)
    span = day.minutes * 60 * NS
    n_tr = int(day.minutes * 60 * day.trades_per_s)
    t = lo + np.sort(rng.integers(0, span, n_tr))
    size_btc = 0.001 * (1 - rng.random(n_tr)) ** (-1 / (day.alpha - 1))
    qty = np.maximum(np.round(size_btc * 1e8 / LOT).astype(np.int64), 1) * LOT
    price = (60_000 + np.cumsum(rng.normal(0, 2, n_tr))).round(2)
    price = (price * 1e8).astype(np.int64)
    trades = {
        "origin_time": t,
        "received_time": t + rng.integers(1, 50, n_tr) * MS,
        "trade_id": np.arange(1_000_000, 1_000_000 + n_tr, dtype=np.int64),
        "side": np.where(rng.random(n_tr) < 0.5, "buy", "sell"),
        "price": price,
        "quantity": qty,
    }
    n_msg = int(day.minutes * 60 * day.msgs_per_s)
    mt = lo + np.sort(rng.integers(0, span, n_msg))
    steps = rng.integers(1, 30, n_msg)
    u = 5_000_000 + np.cumsum(steps)
    first_u = u - steps + 1
    levels = rng.integers(1, 40, n_msg)
    return {"trades": trades, "msg_t": mt, "u": u, "first_u": first_u, "levels": levels}


def write_lake(layout: DataLayout, day: Day, data: dict, drop_u=()) -> None:
    tr = data["trades"]
    _write(layout.staged("trades", day.date, day.symbol), STAGED_TRADES, tr, day.row_group)
    keep = ~np.isin(data["u"], list(drop_u))
    lv, u, mt = data["levels"][keep], data["u"][keep], data["msg_t"][keep]
    rows = int(lv.sum())
    rng = np.random.default_rng(day.seed + 1)
    rep = np.repeat(np.arange(len(u)), lv)
    _write(
        layout.staged("book_delta", day.date, day.symbol),
        STAGED_BOOK_DELTA,
        {
            "origin_time": mt[rep],
            "received_time": mt[rep] + 20 * MS,
            "sequence_number": u[rep],
            "side_is_bid": rng.random(rows) < 0.5,
            "price": rng.integers(1, 10_000, rows) * 1_000_000,
            "size": rng.integers(0, 100, rows) * LOT,
        },
        day.delta_row_group,
    )


def write_golden(layout: DataLayout, day: Day, data: dict) -> None:
    lo = day_start_ns(day.date)
    gm = np.zeros(1440, bool)
    if day.golden_minutes is not None:
        gm[list(day.golden_minutes)] = True
    tr = data["trades"]
    sel = gm[(tr["origin_time"] - lo) // (60 * NS)]
    n = int(sel.sum())
    tt = tr["origin_time"][sel] // MS * MS
    _write(
        layout.golden("trades", day.date, day.symbol),
        GOLDEN_TRADES,
        {
            "capture_ns": tt + 30 * MS,
            "source_file": ["sim.jsonl.zst"] * n,
            "line_no": np.arange(n),
            "event_time": tt,
            "trade_time": tt,
            "trade_id": tr["trade_id"][sel],
            "price": tr["price"][sel],
            "quantity": tr["quantity"][sel],
            "is_buyer_maker": tr["side"][sel] == "sell",
        },
        day.row_group,
    )
    msel = gm[(data["msg_t"] - lo) // (60 * NS)]
    lv, u, fu, mt = data["levels"][msel], data["u"][msel], data["first_u"][msel], data["msg_t"][msel]
    rep = np.repeat(np.arange(len(u)), lv)
    rows = len(rep)
    rng = np.random.default_rng(day.seed + 2)
    _write(
        layout.golden("depth", day.date, day.symbol),
        GOLDEN_DEPTH,
        {
            "capture_ns": mt[rep],
            "source_file": ["sim.jsonl.zst"] * rows,
            "line_no": rep,
            "event_time": mt[rep] // MS * MS,
            "first_update_id": fu[rep],
            "final_update_id": u[rep],
            "prev_final_update_id": [None] * rows,
            "side_is_bid": rng.random(rows) < 0.5,
            "price": rng.integers(1, 10_000, rows) * 1_000_000,
            "size": rng.integers(0, 100, rows) * LOT,
        },
        day.delta_row_group,
    )


def write_day(layout: DataLayout, day: Day | None = None, *, drop_u=(), mutate=None, golden=True) -> dict:
    day = day or Day()
    data = build(day)
    if golden:
        write_golden(layout, day, data)  # the capture saw the true day, before any lake fault
    if mutate is not None:
        mutate(data)
    write_lake(layout, day, data, drop_u=drop_u)
    return data
