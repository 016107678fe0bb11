"""Golden samples: native capture files of one symbol and day -> typed tables, continuity and coverage.

- Frames are read by the rules of the venue each file holds (``formats.capture_file.capture_venue``), which must be
  the venue of the partition's symbol: a frame without a field its venue's frames carry (a USD-M diff without
  ``pu``) or with one they never carry (a spot diff with ``pu``) is malformed, recorded with its file and line.
- A message belongs to the UTC day of its exchange time (``E``, else ``T``); messages without one (bookTicker,
  REST snapshots, capture events) take the exchange time of the previous message of the same file.
- Depth continuity per capture session (spot ``U == prev_u + 1``, USD-M ``pu == prev_u``): a break right after a
  declared resync (a REST snapshot or a ``reconnect``/``resync``/``gap`` event) is declared; any other is a silent
  gap. A run of diffs must start from a snapshot that bridges it (``U <= lastUpdateId + 1 <= u``).
- A day whose first depth run continues a session begun on an earlier day (an import split at midnight) is seeded
  by a *carried* snapshot: the book rebuilt from that session's raw snapshot and diffs, written with
  ``source_file = "carried:<file>"`` and ``line_no = -1`` so it is never mistaken for a received message.
- A malformed line is recorded with file and line number and skipped; the rest of the file still loads.
- Connection hand-over: the capture opens a new connection before closing the old one, and keeps both streams
  (a ``reconnect`` event with ``previous`` opens the overlap, ``handover_end`` closes it once the old connection's
  last message is written). From the overlap's start until, after its end, each kind's first message newer than
  the last one kept, a message whose id is not newer than the last one kept of its kind (depth ``u <= prev_u``,
  trade id, aggTrade id, bookTicker ``u``) is the other connection's copy: dropped from the tables and counted as
  ``overlap_duplicates``, not as a gap or a duplicate trade. Outside a hand-over the same message still counts
  against integrity (a silent gap, a duplicate trade id). A hand-over is not a resync: a break during it is silent
  unless the capture declared it (its own ``gap``/``resync`` events). A capture without ``handover_end`` events (written before
  they existed) keeps the overlap open until its next ``session_start``.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa

from rlx_pipeline import fixed_point, instruments, schemas, venues
from rlx_pipeline.formats.capture_file import (
    EVENT_STREAM,
    SNAPSHOT_SUFFIX,
    FrameLoss,
    capture_venue,
    iter_capture_lines,
    read_index,
)
from rlx_pipeline.storage import ParquetBatchWriter

TABLES = {
    "trades": schemas.GOLDEN_TRADES,
    "agg_trades": schemas.GOLDEN_AGG_TRADES,
    "depth": schemas.GOLDEN_DEPTH,
    "snapshots": schemas.GOLDEN_SNAPSHOTS,
    "book_ticker": schemas.GOLDEN_BOOK_TICKER,
}
FLUSH_ROWS = 200_000
MS = 1_000_000
RECENT_DIFFS = 512  # diffs kept to bridge a snapshot whose response came after them (seconds of depth)
_RESYNC_EVENTS = {"reconnect", "resync", "gap", "session_start", "rotate"}
_OVERLAP_KINDS = ("depth", "trade", "aggTrade", "bookTicker")  # kinds whose ids show an overlap's duplicates


@dataclass
class Gap:
    file: str
    line_no: int
    expected: int
    got: int
    declared: bool


@dataclass
class GoldenResult:
    symbol: str
    date: str
    files: list[str]
    rows: dict[str, int] = field(default_factory=dict)
    messages: Counter = field(default_factory=Counter)
    malformed: list[tuple[str, int, str]] = field(default_factory=list)
    unreadable_bytes: int = 0  # capture bytes no frame could be decoded from (also listed in ``malformed``)
    gaps: list[Gap] = field(default_factory=list)
    depth_runs: int = 0
    unbridged_runs: int = 0
    carried_snapshots: int = 0
    buffered_bridges: int = 0  # snapshots bridged by diffs written before them (arrived during the REST call)
    superseded_snapshots: int = 0  # stale snapshots (did not bridge) replaced by a later one of the session
    unseeded_depth_messages: int = 0  # depth messages before any snapshot of their session
    trade_id_gaps: int = 0
    trade_id_duplicates: int = 0
    overlap_duplicates: int = 0  # messages a hand-over overlap delivered twice (dropped)
    minutes: set[int] = field(default_factory=set)
    first_event_ms: int | None = None
    last_event_ms: int | None = None

    @property
    def silent_gaps(self) -> list[Gap]:
        return [g for g in self.gaps if not g.declared]

    @property
    def coverage(self) -> float:
        """Share of the day's 1,440 minutes with at least one message of the symbol."""
        return len(self.minutes) / 1440

    def summary(self) -> dict:
        return {
            "symbol": self.symbol,
            "date": self.date,
            "files": self.files,
            "rows": self.rows,
            "messages": dict(self.messages),
            "malformed_lines": len(self.malformed),
            "unreadable_bytes": self.unreadable_bytes,
            "malformed": [{"file": f, "line": n, "error": e} for f, n, e in self.malformed[:50]],
            "depth_runs": self.depth_runs,
            "unbridged_runs": self.unbridged_runs,
            "carried_snapshots": self.carried_snapshots,
            "superseded_snapshots": self.superseded_snapshots,
            "buffered_bridges": self.buffered_bridges,
            "unseeded_depth_messages": self.unseeded_depth_messages,
            "silent_gaps": len(self.silent_gaps),
            "declared_resyncs": sum(g.declared for g in self.gaps),
            "gaps": [g.__dict__ for g in self.gaps[:50]],
            "trade_id_gaps": self.trade_id_gaps,
            "trade_id_duplicates": self.trade_id_duplicates,
            "overlap_duplicates": self.overlap_duplicates,
            "minutes_covered": len(self.minutes),
            "coverage": round(self.coverage, 6),
            "first_event_ms": self.first_event_ms,
            "last_event_ms": self.last_event_ms,
        }


def day_bounds_ms(date: str) -> tuple[int, int]:
    start = int(dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC).timestamp()) * 1000
    return start, start + 86_400_000


class _Sink:
    """Rows per table, written to streaming parquet writers in chunks of exactly ``FLUSH_ROWS`` rows (the row
    groups, hence the files, do not depend on how the rows arrived: one by one or as columnar batches)."""

    def __init__(self, paths: Callable[[str], Path]) -> None:
        self.cols = {t: {f.name: [] for f in s} for t, s in TABLES.items()}
        self.chunks: dict[str, list[pa.Table]] = {t: [] for t in TABLES}
        self.pending = Counter()  # rows held in chunks + cols, not yet written
        self.writers = {t: ParquetBatchWriter(paths(t), s) for t, s in TABLES.items()}
        for w in self.writers.values():
            w.__enter__()
        self.rows = Counter()
        # Parquet encoding and compression (pyarrow releases the GIL) run in one writer thread while parsing goes
        # on: the same writes in the same order, so the same files. At most a few chunks wait (bounded memory).
        self._queue: queue.Queue[tuple[str, pa.Table] | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_chunks, name="golden-parquet", daemon=True)
        self._thread.start()

    def _write_chunks(self) -> None:
        while (item := self._queue.get()) is not None:
            table, rows = item
            if self._error is None:
                try:
                    self.writers[table].write(rows.combine_chunks())
                except BaseException as exc:  # noqa: BLE001 - handed to the parsing thread, raised there
                    self._error = exc

    def _write(self, table: str, rows: pa.Table) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((table, rows))

    def add(self, table: str, **values: object) -> None:
        cols = self.cols[table]
        for k, v in values.items():
            cols[k].append(v)
        self.rows[table] += 1
        self.pending[table] += 1
        if self.pending[table] >= FLUSH_ROWS:
            self.flush(table)

    def extend(self, table: str, rows: pa.Table) -> None:
        """Append a batch of rows already typed as ``TABLES[table]``."""
        if not len(rows):
            return
        self._close_cols(table)
        self.chunks[table].append(rows)
        self.rows[table] += len(rows)
        self.pending[table] += len(rows)
        if self.pending[table] >= FLUSH_ROWS:
            self.flush(table)

    def _close_cols(self, table: str) -> None:
        cols = self.cols[table]
        if cols["capture_ns"]:
            schema = TABLES[table]
            arrays = [pa.array(cols[f.name], type=f.type) for f in schema]
            self.chunks[table].append(pa.Table.from_arrays(arrays, schema=schema))
            for v in cols.values():
                v.clear()

    def flush(self, table: str, final: bool = False) -> None:
        """Write every full ``FLUSH_ROWS`` chunk (and the remainder when ``final``)."""
        self._close_cols(table)
        if not self.chunks[table]:
            return
        rows = pa.concat_tables(self.chunks[table])
        done = 0
        while len(rows) - done >= FLUSH_ROWS or (final and done < len(rows)):
            n = min(FLUSH_ROWS, len(rows) - done)
            self._write(table, rows.slice(done, n))
            done += n
        self.chunks[table] = [rows.slice(done)] if done < len(rows) else []
        self.pending[table] = len(rows) - done

    def close(self, ok: bool) -> None:
        """Write what is left and publish the files (``ok``), or discard them; a failed write discards them all
        and is raised."""
        error: BaseException | None = None
        try:
            if ok:
                for t in self.writers:
                    self.flush(t, final=True)
        except BaseException as exc:
            error = exc
        self._queue.put(None)
        self._thread.join()
        error = error or self._error
        for w in self.writers.values():
            if ok and error is None:
                w.__exit__(None, None, None)
            else:
                w.__exit__(RuntimeError, RuntimeError("aborted"), None)
        if error is not None:
            raise error


class _Session:
    """Per-file state for the target symbol: continuity, the book (to carry across days), trade ids."""

    def __init__(self, rules: venues.DepthRules) -> None:
        self.rules = rules  # the venue's depth sync rules
        self.prev_u: int | None = None
        self.resync_pending = True
        self.snapshot_id: int | None = None  # a snapshot waiting to be bridged
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.book_valid = False
        self.prev_trade_id: int | None = None
        self.last_event_ms: int | None = None
        self.written_in_day = False
        self.unbridged_pending = False
        self.overlap_open = False  # two connections of a hand-over are both writing
        self.draining: set[str] = set()  # kinds not yet past the closed overlap's last message
        self.last_id: dict[str, int] = {}  # newest aggTrade id, bookTicker update id
        # Diffs written before a snapshot line can be the ones that bridge it (they arrived while the REST request
        # was in flight; Binance's procedure buffers them): the last few are kept to replay through the snapshot.
        self.recent: deque[tuple[int, int, int | None, list, list]] = deque(maxlen=RECENT_DIFFS)


def _concerns(ev: dict, sym: str) -> bool:
    """A capture event about ``sym``: its ``symbol``, or one of the ``symbols`` of its connection (a capture split
    over several connections names the symbols each one carries), or no symbol at all (the whole capture)."""
    if ev.get("symbol") is not None:
        return ev["symbol"] == sym
    symbols = ev.get("symbols")
    return symbols is None or sym in symbols


def _ts_ns(ms: int) -> int:
    return ms * MS


def build_golden(
    files: Iterable[str | Path],
    symbol: str,
    date: str,
    out_path: Callable[[str], Path],
    progress: Callable[[int], None] | None = None,
    *,
    columnar: bool = True,
) -> GoldenResult:
    """Parse ``files`` (in capture order) for ``symbol`` (``BTC-USDT``) on ``date``; write the golden tables.

    ``columnar`` decodes lines in batches (:mod:`rlx_pipeline.golden.columnar`); ``False`` sends every line through
    the per-line parser, the reference the batches are tested against (same tables, byte for byte)."""
    files = [Path(f) for f in files]
    venue = venues.for_symbol(symbol)
    for path in files:
        held = capture_venue(path, read_index(path))
        if held != venue:
            raise ValueError(
                f"capture file {path} holds {held.name} frames, but {symbol} is a {venue.name} symbol: "
                f"golden samples of {symbol} come from {venue.name} captures only"
            )
    sym = instruments.to_binance(symbol).lower()
    lo, hi = day_bounds_ms(date)
    res = GoldenResult(symbol, date, [str(f) for f in files])
    sink = _Sink(out_path)
    ok = False
    try:
        ctx = _Context(res, sink, _Session(venue.depth_rules), venue, sym, lo, hi, progress)
        for path in files:  # one session across files: an import split at midnight continues in the next file
            if columnar:
                from rlx_pipeline.golden.columnar import parse_file

                parse_file(ctx, path)
            else:
                _parse_file_per_line(ctx, path)
        if ctx.s.unbridged_pending:
            res.unbridged_runs += 1  # a stale snapshot nothing replaced
        ok = True
    finally:
        sink.close(ok)
    res.rows = dict(sink.rows)
    if res.unseeded_depth_messages and res.depth_runs == 0:
        res.unbridged_runs += 1  # depth all day and never a snapshot to seed it
    for t in TABLES:
        res.rows.setdefault(t, 0)
    return res


@dataclass
class _Context:
    """What one build carries from line to line and file to file."""

    res: GoldenResult
    sink: _Sink
    s: _Session
    venue: venues.Venue
    sym: str
    lo: int
    hi: int
    progress: Callable[[int], None] | None
    lines_seen: int = 0

    def count_lines(self, n: int) -> None:
        before = self.lines_seen
        self.lines_seen += n
        if self.progress and self.lines_seen // 500_000 > before // 500_000:
            self.progress(self.lines_seen // 500_000 * 500_000)


def _parse_file_per_line(ctx: _Context, path: Path) -> None:
    src = str(path)
    # a corrupt frame or a bad line is recorded and reading goes on: frames and lines are independent
    for line_no, capture_ns, stream, data in iter_capture_lines(
        path,
        on_loss=lambda loss: _lost(ctx.res, loss),
        on_bad_line=lambda exc: ctx.res.malformed.append((src, -1, str(exc))),
    ):
        ctx.count_lines(1)
        parse_line(ctx, src, line_no, capture_ns, stream, data)


def parse_line(ctx: _Context, src: str, line_no: int, capture_ns: int, stream: str, data: bytes) -> None:
    """One capture line through the per-line parser: events, the symbol's messages, malformed lines."""
    res, sym = ctx.res, ctx.sym
    if stream == EVENT_STREAM:
        try:
            ev = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            res.malformed.append((src, line_no, f"bad event: {exc}"))
            return
        if not _concerns(ev, sym):
            return
        kind = ev.get("type")
        if kind == "reconnect" and ev.get("previous") is not None:
            # a hand-over: the old connection still runs, nothing is resynced, so a break is not declared
            ctx.s.overlap_open = True
        elif kind in _RESYNC_EVENTS:
            ctx.s.resync_pending = True
        if kind == "handover_end":
            ctx.s.draining = set(_OVERLAP_KINDS) if ctx.s.overlap_open else set()
            ctx.s.overlap_open = False
        elif kind == "session_start":
            ctx.s.draining, ctx.s.overlap_open = set(), False
        return
    name, _, kind = stream.partition("@")
    if name != sym:
        return
    try:
        msg = orjson.loads(data)
        _handle(res, ctx.sink, ctx.s, ctx.venue, kind, msg, capture_ns, src, line_no, ctx.lo, ctx.hi)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        res.malformed.append((src, line_no, f"{stream}: {type(exc).__name__}: {exc}"))


def _lost(res: GoldenResult, loss: FrameLoss) -> None:
    """Unreadable capture bytes (a corrupt frame, a cut last frame): counted as malformed, reading resumes."""
    res.unreadable_bytes += loss.lost_bytes
    res.malformed.append((loss.path, -1, str(loss)))


def _in_day(ms: int | None, capture_ns: int, lo: int, hi: int) -> bool:
    t = ms if ms is not None else capture_ns // MS
    return lo <= t < hi


def _apply(book: dict[int, int], levels: list) -> list[tuple[int, int]]:
    out = []
    for p, q in levels:
        price, size = fixed_point.parse(p), fixed_point.parse(q)
        if size:
            book[price] = size
        else:
            book.pop(price, None)
        out.append((price, size))
    return out


def _handle(
    res: GoldenResult,
    sink: _Sink,
    s: _Session,
    venue: venues.Venue,
    kind: str,
    msg: dict,
    capture_ns: int,
    src: str,
    line_no: int,
    lo: int,
    hi: int,
) -> None:
    group = "depth" if kind.startswith("depth") and kind != SNAPSHOT_SUFFIX[1:] else kind
    if group in venues.PARSED_KINDS:
        # the frame must be its venue's (a FrameError names the venue and the field; the caller adds file, line)
        venue.check_frame(group, msg)
    event_ms = msg.get("E", msg.get("T"))
    if event_ms is not None:
        s.last_event_ms = event_ms
    in_day = _in_day(s.last_event_ms, capture_ns, lo, hi)
    origin = {"capture_ns": capture_ns, "source_file": src, "line_no": line_no}
    if in_day:
        res.messages[kind] += 1
        t = s.last_event_ms if s.last_event_ms is not None else capture_ns // MS
        res.minutes.add((t - lo) // 60_000)
        res.first_event_ms = t if res.first_event_ms is None else min(res.first_event_ms, t)
        res.last_event_ms = t if res.last_event_ms is None else max(res.last_event_ms, t)

    if kind == SNAPSHOT_SUFFIX[1:]:
        last_id = int(msg["lastUpdateId"])
        s.bids, s.asks = {}, {}
        bids = _apply(s.bids, msg["bids"])
        asks = _apply(s.asks, msg["asks"])
        s.snapshot_id, s.book_valid, s.resync_pending = last_id, False, True
        if s.unbridged_pending:
            res.superseded_snapshots += 1
            s.unbridged_pending = False
        _bridge_buffered(res, s, last_id, in_day)
        if in_day:
            s.written_in_day = True
            for is_bid, levels in ((True, bids), (False, asks)):
                for i, (p, q) in enumerate(levels):
                    sink.add(
                        "snapshots",
                        **origin,
                        last_update_id=last_id,
                        side_is_bid=is_bid,
                        level=i,
                        price=p,
                        size=q,
                    )
        return

    if group == "depth":
        U, u, pu = int(msg["U"]), int(msg["u"]), msg.get("pu")  # pu there or not as the venue's frames say
        if s.snapshot_id is None and overlap_duplicate(res, s, "depth", u, s.prev_u, in_day):
            return None
        if depth_sync(res, sink, s, U, u, pu, msg["b"], msg["a"], capture_ns, src, line_no, in_day):
            _apply(s.bids, msg["b"])
            _apply(s.asks, msg["a"])
        return _depth_rows(sink, origin, msg, in_day)

    if kind == "trade" and overlap_duplicate(res, s, kind, int(msg["t"]), s.prev_trade_id, in_day):
        return None
    if kind in ("aggTrade", "bookTicker"):
        ident = int(msg["a" if kind == "aggTrade" else "u"])
        if overlap_duplicate(res, s, kind, ident, s.last_id.get(kind), in_day):
            return None
        s.last_id[kind] = max(ident, s.last_id.get(kind, ident))
    if not in_day:
        if kind == "trade":
            s.prev_trade_id = int(msg["t"])
        return
    if kind == "trade":
        tid = int(msg["t"])
        if s.prev_trade_id is not None:
            if tid <= s.prev_trade_id:
                res.trade_id_duplicates += 1
            elif tid != s.prev_trade_id + 1:
                res.trade_id_gaps += 1
        s.prev_trade_id = max(tid, s.prev_trade_id or tid)
        sink.add(
            "trades",
            **origin,
            event_time=_ts_ns(msg["E"]),
            trade_time=_ts_ns(msg["T"]),
            trade_id=tid,
            price=fixed_point.parse(msg["p"]),
            quantity=fixed_point.parse(msg["q"]),
            is_buyer_maker=bool(msg["m"]),
        )
    elif kind == "aggTrade":
        sink.add(
            "agg_trades",
            **origin,
            event_time=_ts_ns(msg["E"]),
            trade_time=_ts_ns(msg["T"]),
            agg_trade_id=int(msg["a"]),
            first_trade_id=int(msg["f"]),
            last_trade_id=int(msg["l"]),
            price=fixed_point.parse(msg["p"]),
            quantity=fixed_point.parse(msg["q"]),
            is_buyer_maker=bool(msg["m"]),
        )
    elif kind == "bookTicker":
        sink.add(
            "book_ticker",
            **origin,
            update_id=int(msg["u"]),
            bid_price=fixed_point.parse(msg["b"]),
            bid_qty=fixed_point.parse(msg["B"]),
            ask_price=fixed_point.parse(msg["a"]),
            ask_qty=fixed_point.parse(msg["A"]),
        )
    return None


def overlap_duplicate(
    res: GoldenResult, s: _Session, kind: str, ident: int, last: int | None, in_day: bool
) -> bool:
    """True when a hand-over overlap is open (or draining) for ``kind`` and ``ident`` is not newer than ``last``,
    the newest id kept: the other connection's copy, counted and dropped. A newer id ends the draining."""
    if not (s.overlap_open or kind in s.draining):
        return False
    if last is not None and ident <= last:
        if in_day:
            res.overlap_duplicates += 1
        return True
    s.draining.discard(kind)
    return False


def depth_sync(
    res: GoldenResult,
    sink: _Sink,
    s: _Session,
    U: int,
    u: int,
    pu: int | None,
    bids: list | None,
    asks: list | None,
    capture_ns: int,
    src: str,
    line_no: int,
    in_day: bool,
) -> bool:
    """Continuity of one depth message (ids only); writes a carried snapshot when the day starts inside a
    session. True when the message's levels apply to the book. ``bids``/``asks`` (raw level lists) are only
    needed while the book can still be carried into the day (``not s.written_in_day``); None after that."""
    s.recent.append((U, u, pu, bids, asks))
    if s.snapshot_id is not None:
        if s.rules.in_snapshot(u, s.snapshot_id):
            return False  # older than the snapshot: kept, not applied
        bridged = s.rules.bridges(U, u, s.snapshot_id)
        if in_day:
            res.depth_runs += 1
        # A snapshot that does not bridge is stale; a capture fetches another. It is a failure only if no
        # later snapshot of the session replaces it (decided when one arrives, or at the end).
        s.unbridged_pending = not bridged and in_day
        s.snapshot_id, s.prev_u, s.resync_pending = None, u, False
        s.book_valid = bridged
    elif s.prev_u is None:
        # Before any snapshot of the session: kept, not applied (Binance buffers these until its snapshot).
        if in_day:
            res.unseeded_depth_messages += 1
        return False
    else:
        expected_ok = s.rules.continues(U, pu, s.prev_u)
        if not expected_ok and in_day:
            res.gaps.append(Gap(src, line_no, s.prev_u + 1, U, declared=s.resync_pending))
        if not expected_ok:
            s.book_valid = False
        s.prev_u, s.resync_pending = u, False
    if in_day and not s.written_in_day and s.book_valid:
        # The day starts inside a session seeded on an earlier day: carry the book in.
        res.carried_snapshots += 1
        res.depth_runs += 1
        carried = {"capture_ns": capture_ns, "source_file": f"carried:{src}", "line_no": -1}
        for is_bid, book in ((True, s.bids), (False, s.asks)):
            ordered = sorted(book.items(), reverse=is_bid)
            for i, (p, q) in enumerate(ordered):
                sink.add(
                    "snapshots",
                    **carried,
                    last_update_id=U - 1,
                    side_is_bid=is_bid,
                    level=i,
                    price=p,
                    size=q,
                )
    if in_day:
        s.written_in_day = True
    return True


def _bridge_buffered(res: GoldenResult, s: _Session, last_id: int, in_day: bool) -> None:
    """Replay the diffs written before the snapshot line that are newer than it; the first must bridge."""
    newer = [d for d in s.recent if not s.rules.in_snapshot(d[1], last_id)]
    s.recent.clear()
    if not newer:
        return  # the usual case: the next diff written decides
    U, u, _, _, _ = newer[0]
    bridged = s.rules.bridges(U, u, last_id)
    prev = None
    for dU, du, dpu, b, a in newer:
        if prev is not None and not s.rules.continues(dU, dpu, prev):
            bridged = False  # a break among them was recorded as a gap when it arrived
        if b is not None:
            _apply(s.bids, b)
            _apply(s.asks, a)
        prev = du
    if in_day:
        res.depth_runs += 1
        res.buffered_bridges += 1
    s.unbridged_pending = not bridged and in_day
    s.snapshot_id, s.prev_u, s.resync_pending = None, prev, False
    s.book_valid = bridged


def _depth_rows(sink: _Sink, origin: dict, msg: dict, in_day: bool) -> None:
    if not in_day:
        return
    head = {
        **origin,
        "event_time": _ts_ns(msg["E"]),
        "first_update_id": int(msg["U"]),
        "final_update_id": int(msg["u"]),
        "prev_final_update_id": int(msg["pu"]) if "pu" in msg else None,
    }
    n = 0
    for is_bid, key in ((True, "b"), (False, "a")):
        for p, q in msg[key]:
            sink.add(
                "depth", **head, side_is_bid=is_bid, price=fixed_point.parse(p), size=fixed_point.parse(q)
            )
            n += 1
    if n == 0:
        sink.add("depth", **head, side_is_bid=None, price=None, size=None)
