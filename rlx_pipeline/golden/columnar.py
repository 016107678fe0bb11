"""Golden parsing in columnar batches: the same tables as the per-line parser, at the speed of reading.

Frames are decoded ``BATCH_LINES`` lines at a time by one numba pass (:mod:`rlx_pipeline.golden.line_scan`): lines,
the capture envelope and the hot message kinds (trade, aggTrade, bookTicker, depth diffs) straight to integers and
fixed point, with no Python object per line or level. Only what is sequential stays a loop over plain ints: depth
continuity (ids), trade-id continuity. Everything else goes through the per-line parser
(:func:`rlx_pipeline.golden.parse.parse_line`), in order: REST snapshots, capture events, other kinds, and any line
the scanner does not accept as certainly read the same way (bad JSON, a missing, duplicate or null field, a float
where an integer belongs, a decimal outside the canonical ``digits[.digits]`` form, non-ASCII bytes). A batch is cut
into segments at those lines, so state carried from line to line (the last exchange time, the depth session, trade
ids) sees every line in capture order.

Why a scanner of its own: the capture's lines are a fixed envelope around a handful of flat JSON objects, and a
reader of exactly that subset does in one pass what a general JSON decoder (orjson per line, or Polars'
``str.json_decode`` per kind, this module's earlier path) does with a string or a list per field and level, plus
the passes around it (the envelope regex, one decode and filter per kind, the explode to one row per level).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
from numba import njit

from rlx_pipeline.formats.capture_file import CaptureFormatError, FrameLoss, iter_frames, split_line
from rlx_pipeline.golden import line_scan
from rlx_pipeline.golden.line_scan import AGG_TRADE, BOOK_TICKER, DEPTH, TRADE
from rlx_pipeline.golden.parse import (
    MS,
    RECENT_DIFFS,
    TABLES,
    _apply,
    _Context,
    _lost,
    _Session,
    _Sink,
    depth_sync,
    overlap_duplicate,
    parse_line,
)

BATCH_LINES = 100_000

_TS = pl.Datetime("ns", "UTC")
_TIMES = {"event_time": (pl.col("E") * MS).cast(_TS), "trade_time": (pl.col("T") * MS).cast(_TS)}
_TRADE = {"price": pl.col("d0"), "quantity": pl.col("d1"), "is_buyer_maker": pl.col("m")}
_ROWS = {  # table -> (kind group, its columns after capture_ns, source_file, line_no)
    "trades": (TRADE, {**_TIMES, "trade_id": pl.col("i1"), **_TRADE}),
    "agg_trades": (
        AGG_TRADE,
        {
            **_TIMES,
            "agg_trade_id": pl.col("i1"),
            "first_trade_id": pl.col("i2"),
            "last_trade_id": pl.col("i3"),
            **_TRADE,
        },
    ),
    "book_ticker": (
        BOOK_TICKER,
        {
            "update_id": pl.col("i1"),
            "bid_price": pl.col("d0"),
            "bid_qty": pl.col("d1"),
            "ask_price": pl.col("d2"),
            "ask_qty": pl.col("d3"),
        },
    ),
}
_TABLE_OF = {TRADE: "trades", AGG_TRADE: "agg_trades", BOOK_TICKER: "book_ticker", DEPTH: "depth"}
_LEVEL = {"side_is_bid": pl.col("side_is_bid"), "price": pl.col("price"), "size": pl.col("size")}
_DEPTH_HEAD = {
    "event_time": _TIMES["event_time"],
    "first_update_id": pl.col("i1"),
    "final_update_id": pl.col("i2"),
    "prev_final_update_id": pl.col("i3"),
}
# Raw ``[price, size]`` string lists of a depth line (by batch position), as the per-line parser holds them.
RawLevels = Callable[[int], tuple[list, list]]


def parse_file(ctx: _Context, path: Path) -> None:
    """All lines of one capture file, in batches of whole frames of about ``BATCH_LINES`` lines. Unreadable bytes
    are recorded where the reader meets them: after the lines read before them, as line by line."""
    src = str(path)
    line_no = 0
    masks = line_scan.field_masks(ctx.venue.frames)  # the file's venue decides which lines are its frames
    for item in _read_ahead(path, np.frombuffer(ctx.sym.encode(), np.uint8), masks):
        if isinstance(item, FrameLoss):
            _lost(ctx.res, item)
        else:
            line_no += _batch(ctx, path, src, line_no + 1, *item)


_AHEAD = 2  # batches read and scanned ahead of the one whose state is being built


def _read_ahead(
    path: Path, sym: np.ndarray, masks: tuple[np.ndarray, np.ndarray]
) -> Iterator[FrameLoss | tuple[bytes, tuple]]:
    """The file's batches (bytes, scan) and its unreadable regions, in file order. Reading, zstd and the scan run
    in a reader thread up to ``_AHEAD`` batches ahead (both release the GIL: on two cores they overlap the state
    and table work of the batch before)."""
    out: queue.Queue = queue.Queue(maxsize=_AHEAD)
    stop = threading.Event()

    def put(item: object) -> None:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read() -> None:
        frames: list[bytes] = []
        n = 0

        def emit() -> None:
            nonlocal frames, n
            if frames:
                put(_scan(frames, sym, masks))
                frames, n = [], 0

        def lost(loss: FrameLoss) -> None:
            emit()  # the lines before the loss first, as line by line
            put(loss)

        try:
            for frame in iter_frames(path, on_loss=lost):
                if stop.is_set():
                    return
                frames.append(frame)
                n += frame.count(b"\n")
                if n >= BATCH_LINES:
                    emit()
            emit()
            put(_END)
        except BaseException as exc:  # noqa: BLE001 - raised in the parsing thread
            put(_Failed(exc))

    reader = threading.Thread(target=read, name="golden-read", daemon=True)
    reader.start()
    try:
        while (item := out.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        reader.join()


_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _scan(frames: list[bytes], sym: np.ndarray, masks: tuple[np.ndarray, np.ndarray]) -> tuple[bytes, tuple]:
    buf = frames[0] if len(frames) == 1 else b"".join(frames)
    frame_ends = np.cumsum([len(f) for f in frames], dtype=np.int64)
    arr = np.frombuffer(buf, np.uint8)
    return buf, line_scan.scan(arr, frame_ends, line_scan.terminators(buf, arr), sym, *masks)


def _batch(ctx: _Context, path: Path, src: str, first_no: int, buf: bytes, scan: tuple) -> int:
    """One batch of consecutive whole frames (``buf``, scanned); returns its number of lines. A line that is not a
    capture line is recorded in its place and reading goes on, as line by line."""
    end, starts, ends, status = scan[0], scan[1], scan[2], scan[3]
    status = status[:end]

    def line(pos: int) -> bytes:
        return buf[starts[pos] : ends[pos]]

    # pos -> (capture_ns, stream, data) for the per-line parser, or the error of a line that is not a capture line
    slow: dict[int, tuple[int, str, bytes] | CaptureFormatError] = {}
    for pos in np.flatnonzero(status == line_scan.SLOW).tolist():
        try:
            slow[pos] = split_line(line(pos), path, first_no + pos)
        except CaptureFormatError as exc:
            slow[pos] = exc
    timeline, levels = _frames(scan, buf)

    def raw_levels(pos: int) -> tuple[list, list]:
        msg = orjson.loads(split_line(line(pos), path, first_no + pos)[2])
        return msg["b"], msg["a"]

    tl_pos = timeline["pos"].to_numpy()
    lv_pos = levels["pos"].to_numpy()
    a = 0
    for b in [*sorted(slow), end]:
        i0, i1 = np.searchsorted(tl_pos, [a, b])
        if i1 > i0:
            j0, j1 = np.searchsorted(lv_pos, [a, b])
            seg = timeline.slice(i0, i1 - i0)
            _segment(ctx, src, first_no, seg, levels.slice(j0, j1 - j0), raw_levels)
        if b < end:
            one = slow[b]
            if isinstance(one, CaptureFormatError):
                ctx.res.malformed.append((src, -1, str(one)))
            else:
                parse_line(ctx, src, first_no + b, *one)
        a = b + 1
    ctx.count_lines(end)
    return end


def _frames(scan: tuple, buf: bytes) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The hot lines (one row each, in line order) and their depth levels (one row per level, bids then asks; a
    diff without levels keeps one row of nulls), as Polars frames."""
    (end, _, _, status, cap_ns, stream, ints, decs, seen, flags, lv_first, n_bids, n_asks) = scan[:13]
    lv_price, lv_size, st_start, st_end, st_code = scan[13:]
    hot = np.flatnonzero(status[:end] == line_scan.HOT)
    sid = stream[hot]
    seen = seen[hot]
    # Kinds of every stream in the table; only hot streams' (ASCII) are used, a non-UTF-8 name is another's.
    names = [
        buf[a:b].decode(errors="replace") for a, b in zip(st_start.tolist(), st_end.tolist(), strict=True)
    ]
    kinds = [name.partition("@")[2] for name in names]

    def col(values: np.ndarray, slot: int | None = None) -> pa.Array:
        return pa.array(values, mask=None if slot is None else ~line_scan.has(seen, slot))

    S = line_scan.SLOTS
    ev = np.where(line_scan.has(seen, S["E"]), ints[hot, S["E"]], ints[hot, S["T"]])
    has_ev = line_scan.has(seen, S["E"]) | line_scan.has(seen, S["T"])
    timeline = pl.from_arrow(
        pa.table(
            {
                "pos": col(hot.astype(np.int64)),
                "capture_ns": col(cap_ns[hot]),
                "kind": pa.DictionaryArray.from_arrays(pa.array(sid), pa.array(kinds, pa.string())),
                "group": col(st_code[sid]),
                "ev_ms": pa.array(ev, mask=~has_ev),
                "E": col(ints[hot, S["E"]], S["E"]),
                "T": col(ints[hot, S["T"]], S["T"]),
                **{k: col(ints[hot, S[k]]) for k in ("i1", "i2")},
                "i3": col(ints[hot, S["i3"]], S["i3"]),
                **{k: col(decs[hot, S[k]]) for k in ("d0", "d1", "d2", "d3")},
                "m": col(flags[hot]),
            }
        )
    )
    depth = hot[st_code[sid] == DEPTH]
    nb, na = n_bids[depth].astype(np.int64), n_asks[depth].astype(np.int64)
    count = nb + na
    rows = np.maximum(count, 1)
    first_row = np.cumsum(rows) - rows
    msg = np.repeat(np.arange(len(depth)), rows)
    k = np.arange(int(rows.sum())) - first_row[msg]
    none = count[msg] == 0  # a diff without levels: one row of nulls
    at = np.where(none, 0, lv_first[depth][msg] + k)
    side = k < nb[msg]
    head = timeline.filter(pl.col("group") == DEPTH).select("pos", "capture_ns", "E", "i1", "i2", "i3")
    levels = head[msg].with_columns(
        side_is_bid=pl.Series(side).set(pl.Series(none), None) if none.any() else pl.Series(side),
        price=_masked(lv_price, at, none),
        size=_masked(lv_size, at, none),
    )
    return timeline, levels


def _masked(values: np.ndarray, at: np.ndarray, none: np.ndarray) -> pl.Series:
    taken = values[at] if len(values) else np.zeros(len(at), np.int64)
    return pl.Series(pa.array(taken, mask=none if none.any() else None))


def _segment(
    ctx: _Context, src: str, first_no: int, tl: pl.DataFrame, levels: pl.DataFrame, raw_levels: RawLevels
) -> None:
    """Consecutive hot lines with no per-line line among them: state in capture order, rows in batches."""
    res, s, lo, hi = ctx.res, ctx.s, ctx.lo, ctx.hi
    ev = tl["ev_ms"]
    if s.last_event_ms is not None:
        ev_filled = ev.forward_fill().fill_null(s.last_event_ms)
    else:
        ev_filled = ev.forward_fill()
    last = ev.drop_nulls()
    if len(last):
        s.last_event_ms = last[-1]
    t = pl.coalesce(ev_filled, tl["capture_ns"] // MS)
    in_day = (t >= lo) & (t < hi)
    tl = tl.with_columns(t_eff=t, in_day=in_day, line_no=pl.col("pos") + first_no)
    day = tl.filter("in_day")
    if day.height:
        for kind, n in day.group_by("kind", maintain_order=True).len().iter_rows():
            res.messages[kind] += n
        res.minutes.update(((day["t_eff"] - lo) // 60_000).unique().to_list())
        t_min, t_max = day["t_eff"].min(), day["t_eff"].max()
        res.first_event_ms = t_min if res.first_event_ms is None else min(res.first_event_ms, t_min)
        res.last_event_ms = t_max if res.last_event_ms is None else max(res.last_event_ms, t_max)

    # Tables in the order their first rows arrive (the order of the result's row counts), as line by line.
    first_rows = _first_rows(day)
    dropped: list[int] = []  # positions of a hand-over overlap's duplicates
    depth = tl.filter(pl.col("group") == DEPTH)
    if depth.height:
        _depth_sync(ctx, src, depth, first_rows, dropped, raw_levels)
    trades = tl.filter(pl.col("group") == TRADE)
    if trades.height:
        _trade_ids(ctx, trades["i1"], trades["in_day"], trades["pos"], dropped)
    for group, kind in ((AGG_TRADE, "aggTrade"), (BOOK_TICKER, "bookTicker")):
        part = tl.filter(pl.col("group") == group)
        if part.height:
            _last_ids(ctx, kind, part["i1"], part["in_day"], part["pos"], dropped)
    if dropped:
        day = day.filter(~pl.col("pos").is_in(dropped))
        first_rows = _first_rows(day)
    _touch(ctx.sink, first_rows, None)

    origin = [pl.col("capture_ns"), pl.col("line_no")]
    if not day.height:
        return
    for table, (group, columns) in _ROWS.items():
        part = day.filter(pl.col("group") == group)
        if part.height:
            _extend(ctx.sink, table, part.select(*origin, **columns), src)
    heads = day.filter(pl.col("group") == DEPTH)
    if heads.height:
        rows = levels if heads.height == depth.height else levels.filter(pl.col("pos").is_in(heads["pos"]))
        rows = rows.with_columns(line_no=pl.col("pos") + first_no)
        _extend(ctx.sink, "depth", rows.select(*origin, **_DEPTH_HEAD, **_LEVEL), src)


def _first_rows(day: pl.DataFrame) -> list[tuple[int, str]]:
    firsts = day.group_by("group").agg(pl.col("pos").min()).sort("pos").iter_rows() if day.height else []
    return [(pos, _TABLE_OF[group]) for group, pos in firsts]


def _extend(sink: _Sink, table: str, frame: pl.DataFrame, src: str) -> None:
    if frame.height:
        schema = TABLES[table]
        rows = frame.select(name for name in schema.names if name != "source_file").to_arrow()
        rows = rows.add_column(1, "source_file", _repeated(src, frame.height))
        sink.extend(table, rows.cast(schema))


def _repeated(text: str, n: int) -> pa.Array:
    """``n`` copies of ``text`` as an Arrow string array, built from its buffers (no Python object per row)."""
    data = text.encode()
    if n * len(data) >= 2**31:
        return pa.array([text] * n, pa.string())
    offsets = np.arange(n + 1, dtype=np.int32) * np.int32(len(data))
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data * n))


def _touch(sink: _Sink, first_rows: list[tuple[int, str]], before: int | None) -> None:
    """Register the tables whose first row in the segment comes before line ``before`` (None: all)."""
    for pos, table in first_rows:
        if before is None or pos < before:
            sink.rows[table] += 0


def _overlap(s: _Session, kind: str) -> bool:
    return s.overlap_open or kind in s.draining


def _depth_sync(
    ctx: _Context,
    src: str,
    depth: pl.DataFrame,
    first_rows: list[tuple[int, str]],
    dropped: list[int],
    raw_levels: RawLevels,
) -> None:
    """Depth continuity over the segment's diffs, in order (ids only, once the book no longer matters); the
    positions of a hand-over overlap's duplicates go to ``dropped``."""
    res, sink, s = ctx.res, ctx.sink, ctx.s
    if s.written_in_day and s.snapshot_id is None and s.prev_u is not None and not _overlap(s, "depth"):
        # The usual segment: a running session whose diffs all continue each other. Nothing is recorded but the
        # last id and the diffs kept to bridge a later snapshot; any break takes the loop below.
        # columns i1, i2, i3: the diff's U, u, pu
        prev = pl.concat([pl.Series([s.prev_u], dtype=pl.Int64), depth["i2"].head(-1)])
        chained = pl.col("i3") == prev if s.rules.pu_chain else pl.col("i1") == prev + 1  # the venue's rule
        ok = depth.select(chained.all()).item()
        if ok:
            tail = depth.tail(RECENT_DIFFS).select("i1", "i2", "i3").iter_rows()
            s.recent.extend((U, u, pu, None, None) for U, u, pu in tail)
            s.prev_u, s.resync_pending = depth["i2"][-1], False
            return
    cols = depth.select("i1", "i2", "i3", "capture_ns", "line_no", "in_day", "pos")
    for U, u, pu, capture_ns, line_no, in_day, pos in cols.iter_rows():
        if s.snapshot_id is None and overlap_duplicate(res, s, "depth", u, s.prev_u, in_day):
            dropped.append(pos)
            continue
        if s.written_in_day:
            depth_sync(res, sink, s, U, u, pu, None, None, capture_ns, src, line_no, in_day)
            continue
        # Until the day's first write the book may be carried into the day: keep its levels as the per-line
        # parser does (only the part of a file before the day, and its first message).
        bids, asks = raw_levels(pos)
        _touch(sink, first_rows, pos)  # a carried snapshot written here comes after the rows before it
        if depth_sync(res, sink, s, U, u, pu, bids, asks, capture_ns, src, line_no, in_day):
            _apply(s.bids, bids)
            _apply(s.asks, asks)


def _trade_ids(ctx: _Context, ids: pl.Series, in_day: pl.Series, pos: pl.Series, dropped: list[int]) -> None:
    res, s = ctx.res, ctx.s
    prev = s.prev_trade_id
    if not _overlap(s, "trade"):  # no hand-over: nothing is dropped, the loop below without its first test
        prev, known, dups, gaps = _trade_run(ids.to_numpy(), in_day.to_numpy(), prev or 0, prev is not None)
        res.trade_id_duplicates += dups
        res.trade_id_gaps += gaps
        s.prev_trade_id = prev if known else None
        return
    for tid, day, p in zip(ids.to_list(), in_day.to_list(), pos.to_list(), strict=True):
        if overlap_duplicate(res, s, "trade", tid, prev, day):
            dropped.append(p)
            continue
        if not day:
            prev = tid
            continue
        if prev is not None:
            if tid <= prev:
                res.trade_id_duplicates += 1
            elif tid != prev + 1:
                res.trade_id_gaps += 1
        prev = max(tid, prev or tid)
    s.prev_trade_id = prev


@njit(cache=True)
def _trade_run(ids: np.ndarray, in_day: np.ndarray, prev: int, known: bool) -> tuple[int, bool, int, int]:
    """:func:`_trade_ids`' loop outside a hand-over, over ints: (last id, whether there is one, duplicates, gaps).
    ``prev or tid`` of the loop is kept: a previous id of 0 counts as none there."""
    dups = 0
    gaps = 0
    for k in range(len(ids)):
        tid = ids[k]
        if not in_day[k]:
            prev, known = tid, True
            continue
        if known:
            if tid <= prev:
                dups += 1
            elif tid != prev + 1:
                gaps += 1
        prev = tid if not known or prev == 0 else max(tid, prev)
        known = True
    return prev, known, dups, gaps


def _last_ids(
    ctx: _Context, kind: str, ids: pl.Series, in_day: pl.Series, pos: pl.Series, dropped: list[int]
) -> None:
    """The newest id of ``kind`` (aggTrade, bookTicker); during a hand-over overlap, its duplicates dropped."""
    res, s = ctx.res, ctx.s
    if not _overlap(s, kind):
        top = ids.max()
        s.last_id[kind] = max(top, s.last_id.get(kind, top))
        return
    for ident, day, p in zip(ids.to_list(), in_day.to_list(), pos.to_list(), strict=True):
        if overlap_duplicate(res, s, kind, ident, s.last_id.get(kind), day):
            dropped.append(p)
        else:
            s.last_id[kind] = max(ident, s.last_id.get(kind, ident))
