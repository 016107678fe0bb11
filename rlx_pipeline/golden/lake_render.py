"""Render native capture files as Crypto Lake tables (``trades``, ``book``, ``book_delta_v2``), per symbol and day.

So a user's own captures, or the real samples, run through the whole pipeline as if Crypto Lake had them:

- ``trades``: one row per ``@trade`` message (taker side from ``m``), origin = ``T``, receipt = capture time;
- ``book_delta_v2``: one row per level of every depth message applied to a bridged book (Binance's rules; diffs
  before their snapshot are dropped as a collector would), ``sequence_number = u``, origin = ``E``;
- ``book``: the 20 best levels of the book rebuilt from the REST snapshot and diffs: at each snapshot, every
  ``book_every_s`` seconds, and at the first message of each UTC day (so every day can be seeded on its own).

Rows go to ``<lake_root>/market-data/cryptofeed/{table}/exchange=/symbol=/dt=/1.snappy.parquet``.
Memory: one day of one symbol is held as Python lists before it is written (captures are hours, not months).
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa

from rlx_pipeline import fixed_point, instruments
from rlx_pipeline.capture.format import EVENT_STREAM, iter_capture_lines
from rlx_pipeline.lake.raw import RAW_BOOK, RAW_BOOK_DELTA, RAW_TRADES
from rlx_pipeline.layout import lake_key
from rlx_pipeline.schemas import BOOK_LEVELS
from rlx_pipeline.storage import write_table

MS = 1_000_000


def _f(text: str) -> float:
    return fixed_point.parse(text) / 1e8


@dataclass
class _Day:
    trades: list[tuple] = field(default_factory=list)
    deltas: list[tuple] = field(default_factory=list)
    books: list[list] = field(default_factory=list)


@dataclass
class _State:
    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)
    pending_snapshot: int | None = None
    prev_u: int | None = None
    valid: bool = False
    last_book_ns: int = 0
    last_date: str | None = None


def _date(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d")


def _book_row(s: _State, t_ns: int, r_ns: int, seq: int) -> list:
    row: list = [t_ns, r_ns, seq]
    top_b = heapq.nlargest(BOOK_LEVELS, s.bids.items())
    top_a = heapq.nsmallest(BOOK_LEVELS, s.asks.items())
    for side in (top_b, top_a):
        for i in range(BOOK_LEVELS):
            row += [side[i][0] / 1e8, side[i][1] / 1e8] if i < len(side) else [float("nan"), float("nan")]
    return row


def render_lake_from_capture(
    files: Iterable[str | Path],
    lake_root: str | Path,
    *,
    exchange: str = "BINANCE",
    book_every_s: float = 10.0,
) -> dict[tuple[str, str], dict[str, Path]]:
    """Write the lake tables of every symbol and day found in ``files`` (in capture order)."""
    days: dict[tuple[str, str], _Day] = defaultdict(_Day)
    states: dict[str, _State] = defaultdict(_State)
    every = int(book_every_s * 1e9)
    for path in files:
        for _, capture_ns, stream, data in iter_capture_lines(path):
            if stream == EVENT_STREAM:
                continue
            sym, _, kind = stream.partition("@")
            s = states[sym]
            if kind == "depthSnapshot":
                snap = orjson.loads(data)
                s.bids = {fixed_point.parse(p): fixed_point.parse(q) for p, q in snap["bids"]}
                s.asks = {fixed_point.parse(p): fixed_point.parse(q) for p, q in snap["asks"]}
                s.pending_snapshot, s.valid, s.prev_u = int(snap["lastUpdateId"]), False, None
                continue
            msg = orjson.loads(data)
            if kind == "trade":
                day = days[(sym, _date(msg["T"]))]
                day.trades.append(
                    (
                        "sell" if msg["m"] else "buy",
                        _f(msg["q"]),
                        _f(msg["p"]),
                        int(msg["t"]),
                        msg["T"] * MS,
                        capture_ns,
                    )
                )
            elif kind.startswith("depth"):
                U, u, pu = int(msg["U"]), int(msg["u"]), msg.get("pu")
                if s.pending_snapshot is not None:
                    if u <= s.pending_snapshot:
                        continue
                    last = s.pending_snapshot
                    s.valid = (U <= last + 1 <= u) if pu is None else (U <= last <= u)
                    s.pending_snapshot = None
                    if s.valid:  # the snapshot's own book row, just before its first bridged diff
                        date = _date(msg["E"])
                        days[(sym, date)].books.append(_book_row(s, msg["E"] * MS - 1, capture_ns - 1, last))
                        s.last_book_ns, s.last_date = msg["E"] * MS, date
                elif s.prev_u is not None:
                    s.valid = s.valid and ((s.prev_u + 1 == U) if pu is None else (int(pu) == s.prev_u))
                else:
                    continue  # before any snapshot: a collector buffers these, Crypto Lake never shows them
                if not s.valid:
                    continue
                t_ns, date = msg["E"] * MS, _date(msg["E"])
                day = days[(sym, date)]
                if s.last_date != date and s.prev_u is not None:
                    # first message of a new day: a book row so the day stands alone
                    day.books.append(_book_row(s, t_ns - 1, capture_ns - 1, s.prev_u))
                    s.last_book_ns, s.last_date = t_ns, date
                for is_bid, key, book in ((True, "b", s.bids), (False, "a", s.asks)):
                    for p, q in msg[key]:
                        price, size = fixed_point.parse(p), fixed_point.parse(q)
                        if size:
                            book[price] = size
                        else:
                            book.pop(price, None)
                        day.deltas.append((t_ns, capture_ns, u, is_bid, price / 1e8, size / 1e8))
                s.prev_u = u
                if t_ns - s.last_book_ns >= every:
                    day.books.append(_book_row(s, t_ns, capture_ns, u))
                    s.last_book_ns, s.last_date = t_ns, date
    out: dict[tuple[str, str], dict[str, Path]] = {}
    names = [
        f"{side}_{i}_{w}" for side in ("bid", "ask") for i in range(BOOK_LEVELS) for w in ("price", "size")
    ]
    for (sym, date), day in sorted(days.items()):
        lake_symbol = instruments.to_lake(sym)
        tables = {
            "trades": pa.Table.from_pylist(
                [dict(zip(RAW_TRADES.names, r, strict=True)) for r in day.trades], schema=RAW_TRADES
            ),
            "book_delta_v2": pa.Table.from_pylist(
                [dict(zip(RAW_BOOK_DELTA.names, r, strict=True)) for r in day.deltas], schema=RAW_BOOK_DELTA
            ),
            "book": pa.Table.from_pylist(
                [
                    dict(zip(["timestamp", "receipt_timestamp", "sequence_number", *names], r, strict=True))
                    for r in day.books
                ],
                schema=RAW_BOOK,
            ),
        }
        out[(lake_symbol, date)] = {}
        for table, data in tables.items():
            path = Path(lake_root) / lake_key(table, exchange, lake_symbol, date)
            out[(lake_symbol, date)][table] = write_table(path, data)
    return out
