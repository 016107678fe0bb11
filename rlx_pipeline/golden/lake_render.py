"""Render native capture files as Crypto Lake tables (``trades``, ``book``, ``book_delta_v2``), per symbol and day.

So a user's own captures, or the real samples, run through the whole pipeline as if Crypto Lake had them:

- ``trades``: one row per ``@trade`` message (taker side from ``m``), origin = ``T``, receipt = capture time; a
  trade id not newer than the last one rendered (a hand-over's copy) is skipped: Crypto Lake has one row a trade;
- ``book_delta_v2``: one row per level of every depth message applied to a bridged book, ``sequence_number = u``,
  origin = ``E``. The venue's depth rules (``venues.DepthRules``): diffs before their snapshot are buffered, the
  ones the snapshot already holds (spot ``u <= lastUpdateId``, USD-M ``u < lastUpdateId``) dropped, and a diff
  written *before* the snapshot line (it arrived while the REST call was in flight) can be the one that bridges
  it; a snapshot that arrives while the book is synced and already past it (a rotation's fresh snapshot) changes
  nothing; a diff already applied (``u <= prev_u``: the other connection's copy during a hand-over) is skipped,
  as the capture's own ``DepthSync`` does;
- ``book``: the 20 best levels of the book rebuilt from the REST snapshot and diffs: at each snapshot, every
  ``book_every_s`` seconds, and at the first message of each UTC day (so every day can be seeded on its own).

Each file's venue (``formats.capture_file.capture_venue``) names the Crypto Lake exchange and symbol: a spot
``btcusdt`` capture renders ``BINANCE``/``BTC-USDT``, a USD-M one ``BINANCE_FUTURES``/``BTC-USDT-PERP``. It also
reads the frames: depth by its rules and fields (a frame that is not the venue's raises ``FrameError`` naming the
file and line), ``trades`` from its public trade stream (spot ``trade``, USD-M ``aggTrade``: aggTrade ids).

Rows go to ``<lake_root>/market-data/cryptofeed/{table}/exchange=/symbol=/dt=/1.snappy.parquet``, written in
batches of ``FLUSH_ROWS``: memory follows the books and one batch per open day, not the capture's length. Files
appear atomically when the whole input is rendered.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa

from rlx_pipeline import fixed_point, venues
from rlx_pipeline.formats.capture_file import EVENT_STREAM, capture_venue, iter_capture_lines, read_index
from rlx_pipeline.formats.lake_tables import RAW_BOOK, RAW_BOOK_DELTA, RAW_TRADES
from rlx_pipeline.layout import symbol_lake_key
from rlx_pipeline.schemas import BOOK_LEVELS
from rlx_pipeline.storage import ParquetBatchWriter

MS = 1_000_000


def _f(text: str) -> float:
    return fixed_point.parse(text) / 1e8


FLUSH_ROWS = 500_000
_TRADE_ID = {"trade": "t", "aggTrade": "a"}  # the id field of each public trade stream
RECENT_DIFFS = 512  # depth diffs kept to bridge a snapshot whose response came after them
_SCHEMAS = {"trades": RAW_TRADES, "book_delta_v2": RAW_BOOK_DELTA, "book": RAW_BOOK}


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
    last_trade_id: int | None = None
    # diffs not applied, (capture_ns, ((U, u, pu), msg)): a later snapshot may bridge them
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT_DIFFS))


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


class _Renderer:
    """Books, days and writers keyed by Crypto Lake symbol (``BTC-USDT-PERP``): spot and perp never mix."""

    def __init__(self, lake_root: Path, book_every_s: float, stack: contextlib.ExitStack) -> None:
        self.lake_root, self.stack = lake_root, stack
        self.every = int(book_every_s * 1e9)
        self.days: dict[tuple[str, str], _Day] = {}
        self.writers: dict[tuple[str, str, str], ParquetBatchWriter] = {}
        self.states: dict[str, _State] = {}

    def day(self, sym: str, date: str) -> _Day:
        d = self.days.get((sym, date))
        if d is None:
            d = self.days[(sym, date)] = _Day()
        return d

    def flush(self, sym: str, date: str, force: bool = False) -> None:
        d = self.days[(sym, date)]
        for table, rows in (("trades", d.trades), ("book_delta_v2", d.deltas), ("book", d.books)):
            if not rows or (len(rows) < FLUSH_ROWS and not force):
                continue
            schema = _SCHEMAS[table]
            key = (sym, date, table)
            if key not in self.writers:
                path = self.lake_root / symbol_lake_key(table, sym, date)
                self.writers[key] = self.stack.enter_context(ParquetBatchWriter(path, schema))
            cols = list(zip(*rows, strict=True))
            self.writers[key].write(
                pa.Table.from_arrays(
                    [pa.array(c, type=f.type) for c, f in zip(cols, schema, strict=True)], schema=schema
                )
            )
            rows.clear()

    def new_trade(self, sym: str, trade_id: int) -> bool:
        """False for a trade id already rendered (overlapping connections at a hand-over write it twice)."""
        s = self.states.setdefault(sym, _State())
        if s.last_trade_id is not None and trade_id <= s.last_trade_id:
            return False
        s.last_trade_id = trade_id
        return True

    def snapshot(self, sym: str, snap: dict) -> None:
        s = self.states.setdefault(sym, _State())
        last = int(snap["lastUpdateId"])
        if s.valid and s.prev_u is not None and s.prev_u >= last:
            return  # synced and already past it (a rotation's fresh snapshot): nothing to resync
        s.bids = {fixed_point.parse(p): fixed_point.parse(q) for p, q in snap["bids"]}
        s.asks = {fixed_point.parse(p): fixed_point.parse(q) for p, q in snap["asks"]}
        s.pending_snapshot, s.valid, s.prev_u = last, False, None
        rules = venues.for_symbol(sym).depth_rules
        buffered = [(c, (ids, m)) for c, (ids, m) in s.recent if not rules.in_snapshot(ids[1], last)]
        s.recent.clear()
        for (
            capture_ns,
            (ids, msg),
        ) in buffered:  # they arrived during the REST call: Binance's procedure replays them
            self.depth(sym, ids, msg, capture_ns, replayed=True)

    def depth(
        self, sym: str, ids: tuple[int, int, int | None], msg: dict, capture_ns: int, replayed: bool = False
    ) -> None:
        """One diff with its ``(U, u, pu)`` as its venue read them (``Venue.diff_ids``)."""
        s = self.states.setdefault(sym, _State())
        U, u, pu = ids
        rules = venues.for_symbol(sym).depth_rules
        if s.pending_snapshot is not None:
            if rules.in_snapshot(u, s.pending_snapshot):
                return
            last = s.pending_snapshot
            s.valid = rules.bridges(U, u, last)
            s.pending_snapshot = None
            if s.valid:  # the snapshot's own book row, just before its first bridged diff
                date = _date(msg["E"])
                self.day(sym, date).books.append(_book_row(s, msg["E"] * MS - 1, capture_ns - 1, last))
                s.last_book_ns, s.last_date = msg["E"] * MS, date
        elif s.prev_u is not None and s.valid:
            if u <= s.prev_u:
                return  # already applied: the other connection's copy during a hand-over
            s.valid = rules.continues(U, pu, s.prev_u)
        if not s.valid:
            if not replayed:
                s.recent.append((capture_ns, (ids, msg)))  # no book: a later snapshot may bridge it
            return
        t_ns, date = msg["E"] * MS, _date(msg["E"])
        day = self.day(sym, date)
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
        if t_ns - s.last_book_ns >= self.every:
            day.books.append(_book_row(s, t_ns, capture_ns, u))
            s.last_book_ns, s.last_date = t_ns, date
        self.flush(sym, date)


def _render_line(r: _Renderer, venue: venues.Venue, capture_ns: int, stream: str, data: bytes) -> None:
    stream_sym, _, kind = stream.partition("@")
    sym = venue.lake_symbol(stream_sym)
    if kind == "depthSnapshot":
        r.snapshot(sym, orjson.loads(data))
    elif kind == venue.trade_stream:
        msg = orjson.loads(data)
        venue.check_frame(kind, msg)
        trade_id = int(msg[_TRADE_ID[kind]])
        if not r.new_trade(sym, trade_id):
            return
        date = _date(msg["T"])
        r.day(sym, date).trades.append(
            ("sell" if msg["m"] else "buy", _f(msg["q"]), _f(msg["p"]), trade_id, msg["T"] * MS, capture_ns)
        )
        r.flush(sym, date)
    elif kind.startswith("depth"):
        msg = orjson.loads(data)
        r.depth(sym, venue.diff_ids(msg), msg, capture_ns)


def render_lake_from_capture(
    files: Iterable[str | Path],
    lake_root: str | Path,
    *,
    book_every_s: float = 10.0,
) -> dict[tuple[str, str], dict[str, Path]]:
    """Write the lake tables of every symbol and day found in ``files`` (in capture order), keyed by
    ``(Crypto Lake symbol, day)``."""
    with contextlib.ExitStack() as stack:
        r = _Renderer(Path(lake_root), book_every_s, stack)
        for path in files:
            venue = capture_venue(path, read_index(path))
            for line_no, capture_ns, stream, data in iter_capture_lines(path):
                if stream == EVENT_STREAM:
                    continue
                try:
                    _render_line(r, venue, capture_ns, stream, data)
                except venues.FrameError as exc:
                    raise venues.FrameError(f"{path} line {line_no}: {exc}") from None
        for sym, date in sorted(r.days):
            r.flush(sym, date, force=True)
            for table in _SCHEMAS:  # every table of a day exists, empty or not
                if (sym, date, table) not in r.writers:
                    path = r.lake_root / symbol_lake_key(table, sym, date)
                    r.writers[(sym, date, table)] = stack.enter_context(
                        ParquetBatchWriter(path, _SCHEMAS[table])
                    )
        out: dict[tuple[str, str], dict[str, Path]] = {}
        for (sym, date, table), w in sorted(r.writers.items()):
            out.setdefault((sym, date), {})[table] = w.dest
    return out
