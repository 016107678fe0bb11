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
The scan's columns become the tables' Arrow arrays directly (numpy selections, no data frame in between).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from itertools import repeat
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
from numba import njit

from rlx_pipeline.formats.capture_file import CaptureFormatError, FrameLoss, iter_frames, split_line
from rlx_pipeline.golden import line_scan
from rlx_pipeline.golden.line_scan import AGG_TRADE, BOOK_TICKER, DEPTH, TRADE, Scan
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

# About 7 MB of capture a batch: a bounded working set (batches of 100,000 lines held 250 MB more at the peak).
BATCH_LINES = 25_000

_BIT = {name: 1 << slot for name, slot in line_scan.SLOTS.items()}
_OPTIONAL = ("E", "T", "i3")  # fields a hot line may lack (null in the tables); the venue requires the others
_ROWS = {  # table -> (group, the scan's column of each field after capture_ns, source_file, line_no)
    "trades": (TRADE, ("E", "T", "i1", "d0", "d1", "m")),
    "agg_trades": (AGG_TRADE, ("E", "T", "i1", "i2", "i3", "d0", "d1", "m")),
    "book_ticker": (BOOK_TICKER, ("i1", "d0", "d1", "d2", "d3")),
}
_DEPTH_HEAD = ("E", "i1", "i2", "i3")  # event_time, first, final and previous final update id
_LEVEL = ("side_is_bid", "price", "size")
_DEPTH_ROW = ("line", "capture_ns", *_DEPTH_HEAD, "seen")  # a diff's columns on each of its level rows
_TABLE_OF = {TRADE: "trades", AGG_TRADE: "agg_trades", BOOK_TICKER: "book_ticker", DEPTH: "depth"}
# Raw ``[price, size]`` string lists of a depth line (by batch position), as the per-line parser holds them.
RawLevels = Callable[[int], tuple[list, list]]
# A segment's hot lines: the scan's per-hot-line columns by name (``line``, ``capture_ns``, ``stream``, ``group``,
# ``E`` ... ``i3``, ``d0`` ... ``d3``, ``seen``, ``m``, ``lv_first``, ``n_bids``, ``n_asks``), sliced to the segment.
Columns = dict[str, np.ndarray]


def parse_file(ctx: _Context, path: Path) -> None:
    """All lines of one capture file, in batches of whole frames of about ``BATCH_LINES`` lines. Unreadable bytes
    are recorded where the reader meets them: after the lines read before them, as line by line."""
    file = _File(str(path))
    line_no = 0
    masks = line_scan.field_masks(ctx.venue.frames)  # the file's venue decides which lines are its frames
    for item in _read_ahead(path, np.frombuffer(ctx.sym.encode(), np.uint8), masks):
        if isinstance(item, FrameLoss):
            _lost(ctx.res, item)
        else:
            line_no += _batch(ctx, path, file, line_no + 1, *item)


_AHEAD = 2  # batches read and scanned ahead of the one whose state is being built


def _read_ahead(
    path: Path, sym: np.ndarray, masks: tuple[np.ndarray, np.ndarray]
) -> Iterator[FrameLoss | tuple[np.ndarray, Scan]]:
    """The file's batches (bytes as uint8, scan) and its unreadable regions, in file order. Reading, zstd and the
    scan run in a reader thread up to ``_AHEAD`` batches ahead (both release the GIL: on two cores they overlap the
    state and table work of the batch before). A batch's bytes are valid until the next item is asked for."""
    out: queue.Queue = queue.Queue(maxsize=_AHEAD)
    # Batch buffers, reused (one being filled, ``_AHEAD`` waiting, one being parsed): a fresh buffer per batch cost
    # a page fault every 4 KB, most of the time of joining a batch's frames.
    free: queue.Queue[np.ndarray] = queue.Queue()
    for _ in range(_AHEAD + 2):
        free.put(np.empty(0, np.uint8))
    stop = threading.Event()

    def put(item: object) -> None:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def take(size: int) -> np.ndarray | None:
        while not stop.is_set():
            try:
                buf = free.get(timeout=0.1)
            except queue.Empty:
                continue
            return buf if len(buf) >= size else np.empty(size + size // 4, np.uint8)
        return None

    def read() -> None:
        frames: list[bytes] = []
        ends: list[np.ndarray] = []  # each frame's line-ending bytes, found once: they count its lines too
        n = 0

        def emit() -> None:
            nonlocal frames, ends, n
            if frames:
                buf = take(sum(map(len, frames)))
                if buf is not None:
                    put((buf, *_scan(frames, ends, buf, sym, masks)))
                frames, ends, n = [], [], 0

        def lost(loss: FrameLoss) -> None:
            emit()  # the lines before the loss first, as line by line
            put(loss)

        try:
            for frame in iter_frames(path, on_loss=lost):
                if stop.is_set():
                    return
                frames.append(frame)
                arr = np.frombuffer(frame, np.uint8)
                cr = b"\r" in frame
                ends.append(line_scan.line_ends(arr, cr))
                n += int(np.count_nonzero(arr[ends[-1]] == 10)) if cr else len(ends[-1])  # lines: its \n
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
            if isinstance(item, FrameLoss):
                yield item
                continue
            buf, data, scan = item
            yield data, scan
            free.put(buf)
    finally:
        stop.set()
        reader.join()


_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _scan(
    frames: list[bytes],
    ends: list[np.ndarray],
    buf: np.ndarray,
    sym: np.ndarray,
    masks: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, Scan]:
    """The frames (their line-ending bytes at ``ends``) copied into ``buf`` (the batch's bytes: its first part),
    then scanned."""
    view = memoryview(buf)
    frame_ends = np.cumsum([len(f) for f in frames], dtype=np.int64)
    starts = [0, *frame_ends[:-1].tolist()]
    for f, start in zip(frames, starts, strict=True):
        view[start : start + len(f)] = f
    data = buf[: frame_ends[-1]]
    data.flags.writeable = False  # the scan's one compiled form: read-only bytes, as np.frombuffer gives them
    terms = np.concatenate([e + start for e, start in zip(ends, starts, strict=True)])
    return data, Scan(*line_scan.scan(data, frame_ends, terms, sym, *masks))


def _batch(ctx: _Context, path: Path, file: _File, first_no: int, buf: np.ndarray, scan: Scan) -> int:
    """One batch of consecutive whole frames (``buf``, their bytes, scanned); returns its number of lines. A line
    that is not a capture line is recorded in its place and reading goes on, as line by line."""
    end, starts, ends = scan.n, scan.starts, scan.ends

    def line(pos: int) -> bytes:
        return buf[starts[pos] : ends[pos]].tobytes()

    # pos -> (capture_ns, stream, data) for the per-line parser, or the error of a line that is not a capture line
    slow: dict[int, tuple[int, str, bytes] | CaptureFormatError] = {}
    for pos in np.flatnonzero(scan.status[:end] == line_scan.SLOW).tolist():
        try:
            slow[pos] = split_line(line(pos), path, first_no + pos)
        except CaptureFormatError as exc:
            slow[pos] = exc
    # Kinds of every stream in the table; only hot streams' (ASCII) are used, a non-UTF-8 name is another's.
    kinds = [
        buf[a:b].tobytes().decode(errors="replace").partition("@")[2]
        for a, b in zip(scan.st_start.tolist(), scan.st_end.tolist(), strict=True)
    ]
    ints, decs = scan.ints, scan.decs
    columns = {
        "line": scan.line,
        "capture_ns": scan.capture_ns,
        "stream": scan.stream,
        "group": scan.group,
        **{name: ints[k] for k, name in enumerate(("E", "T", "i1", "i2", "i3"))},
        **{name: decs[k] for k, name in enumerate(("d0", "d1", "d2", "d3"))},
        "seen": scan.seen,
        "m": scan.m,
        "lv_first": scan.lv_first,
        "n_bids": scan.n_bids,
        "n_asks": scan.n_asks,
    }

    def raw_levels(pos: int) -> tuple[list, list]:
        msg = orjson.loads(split_line(line(pos), path, first_no + pos)[2])
        return msg["b"], msg["a"]

    a = 0
    for b in [*sorted(slow), end]:
        h0, h1 = np.searchsorted(scan.line, [a, b]).tolist()
        if h1 > h0:
            seg = {name: col[h0:h1] for name, col in columns.items()}
            _segment(ctx, file, first_no, seg, kinds, scan, raw_levels)
        if b < end:
            one = slow[b]
            if isinstance(one, CaptureFormatError):
                ctx.res.malformed.append((file.name, -1, str(one)))
            else:
                parse_line(ctx, file.name, first_no + b, *one)
        a = b + 1
    ctx.count_lines(end)
    return end


def _segment(
    ctx: _Context,
    file: _File,
    first_no: int,
    seg: Columns,
    kinds: list[str],
    scan: Scan,
    raw_levels: RawLevels,
) -> None:
    """Consecutive hot lines with no per-line line among them: state in capture order, rows in batches."""
    res, s, lo, hi = ctx.res, ctx.s, ctx.lo, ctx.hi
    has_e = _has(seg, "E")
    has_ev = has_e | _has(seg, "T")
    ev = np.where(has_e, seg["E"], seg["T"])
    # a line's time: its own exchange time, else the last one before it (in the segment, else the session's),
    # else its capture time
    last = np.where(has_ev, np.arange(len(ev)), -1)
    np.maximum.accumulate(last, out=last)
    t = ev[last]
    if last[0] < 0:
        before = last < 0
        t[before] = s.last_event_ms if s.last_event_ms is not None else seg["capture_ns"][before] // MS
    if last[-1] >= 0:
        s.last_event_ms = int(ev[last[-1]])
    in_day = (t >= lo) & (t < hi)
    day = np.flatnonzero(in_day)
    if len(day):
        streams = seg["stream"][day]
        counts = np.bincount(streams)
        present = np.flatnonzero(counts).tolist()
        if len(present) > 1:  # kinds in the order they first come, as line by line
            present.sort(key=lambda k: int(np.argmax(streams == k)))
        for k in present:
            res.messages[kinds[k]] += int(counts[k])
        t_day = t[day]
        res.minutes.update(np.flatnonzero(np.bincount((t_day - lo) // 60_000)).tolist())
        t_min, t_max = int(t_day.min()), int(t_day.max())
        res.first_event_ms = t_min if res.first_event_ms is None else min(res.first_event_ms, t_min)
        res.last_event_ms = t_max if res.last_event_ms is None else max(res.last_event_ms, t_max)

    # Tables in the order their first rows arrive (the order of the result's row counts), as line by line.
    lines = seg["line"]
    is_group = {code: seg["group"] == code for code in _TABLE_OF}
    first_rows = _first_rows(is_group, lines, in_day)
    dropped: list[int] = []  # segment rows of a hand-over overlap's duplicates
    depth = np.flatnonzero(is_group[DEPTH])
    if len(depth):
        _depth_sync(ctx, file.name, first_no, seg, depth, in_day, first_rows, dropped, raw_levels)
    trades = np.flatnonzero(is_group[TRADE])
    if len(trades):
        _trade_ids(ctx, seg["i1"][trades], in_day[trades], trades, dropped)
    for code, kind in ((AGG_TRADE, "aggTrade"), (BOOK_TICKER, "bookTicker")):
        part = np.flatnonzero(is_group[code])
        if len(part):
            _last_ids(ctx, kind, seg["i1"][part], in_day[part], part, dropped)
    keep = in_day
    if dropped:
        keep = in_day.copy()
        keep[dropped] = False
        first_rows = _first_rows(is_group, lines, keep)
    _touch(ctx.sink, first_rows, None)

    if not len(day):
        return
    for table, (code, fields) in _ROWS.items():
        rows = np.flatnonzero(keep & is_group[code])
        if len(rows):
            cols = {name: seg[name][rows] for name in ("line", "capture_ns", "seen", *fields)}
            ctx.sink.extend(table, _table(table, cols, fields, file, first_no))
    heads = np.flatnonzero(keep & is_group[DEPTH])
    if len(heads):
        head = np.stack([seg[name][heads] for name in _DEPTH_ROW])
        rows, side, price, size, none = _level_rows(
            head,
            seg["n_bids"][heads],
            seg["n_asks"][heads],
            seg["lv_first"][heads],
            scan.lv_price,
            scan.lv_size,
        )
        cols = {**dict(zip(_DEPTH_ROW, rows, strict=True)), "side_is_bid": side, "price": price, "size": size}
        ctx.sink.extend("depth", _table("depth", cols, (*_DEPTH_HEAD, *_LEVEL), file, first_no, none))


def _has(cols: Columns, name: str) -> np.ndarray:
    return (cols["seen"] & _BIT[name]) != 0


def _table(
    table: str,
    cols: Columns,
    fields: tuple[str, ...],
    file: _File,
    first_no: int,
    none: np.ndarray | None = None,
) -> pa.Table:
    """Rows as ``TABLES[table]``: ``cols`` holds one value per row, the fields after the origin columns are the
    columns named ``fields``; a field a line lacks (:data:`_OPTIONAL`), and every level field of the rows in
    ``none``, is null."""
    schema = TABLES[table]
    arrays = [pa.array(cols["capture_ns"]), file.source(len(cols["line"])), pa.array(cols["line"] + first_no)]
    for name, f in zip(fields, schema.types[3:], strict=True):
        values = cols[name] * MS if pa.types.is_timestamp(f) else cols[name]
        missing = ~_has(cols, name) if name in _OPTIONAL else none if name in _LEVEL else None
        arrays.append(pa.array(values, f, mask=missing if missing is not None and missing.any() else None))
    return pa.Table.from_arrays(arrays, schema=schema)


@njit(cache=True, nogil=True)
def _level_rows(head, n_bids, n_asks, lv_first, lv_price, lv_size):
    """One depth row per level of each diff (a column of ``head``: its fields), bids then asks, the diff's fields
    repeated; a diff without levels keeps one row, flagged in ``none``. Returns (the repeated ``head`` rows,
    side_is_bid, price, size, none)."""
    n = len(n_bids)
    rows_of = np.empty(n, np.int64)
    for j in range(n):
        rows_of[j] = max(n_bids[j] + n_asks[j], 1)
    total = rows_of.sum()
    rows = np.empty((head.shape[0], total), np.int64)
    for c in range(head.shape[0]):  # a column at a time: each diff's value is a short fill
        out, values = rows[c], head[c]
        r = 0
        for j in range(n):
            out[r : r + rows_of[j]] = values[j]
            r += rows_of[j]
    side = np.empty(total, np.bool_)
    price = np.empty(total, np.int64)
    size = np.empty(total, np.int64)
    none = np.zeros(total, np.bool_)
    r = 0
    for j in range(n):
        count = n_bids[j] + n_asks[j]
        if count == 0:
            none[r], side[r], price[r], size[r] = True, False, 0, 0
        for k in range(count):
            side[r + k] = k < n_bids[j]
            price[r + k] = lv_price[lv_first[j] + k]
            size[r + k] = lv_size[lv_first[j] + k]
        r += rows_of[j]
    return rows, side, price, size, none


def _first_rows(
    is_group: dict[int, np.ndarray], lines: np.ndarray, keep: np.ndarray
) -> list[tuple[int, str]]:
    firsts = []
    for code, table in _TABLE_OF.items():
        rows = keep & is_group[code]
        first = int(np.argmax(rows))
        if rows[first]:
            firsts.append((int(lines[first]), table))
    return sorted(firsts)


class _File:
    """The file being read: its name, and its ``source_file`` column (one Arrow array of the name repeated, grown
    as needed; each table's rows take a zero-copy slice of it)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._source = _repeated(name, 0)

    def source(self, n: int) -> pa.Array:
        if n > len(self._source):
            self._source = _repeated(self.name, max(n, 2 * len(self._source)))
        return self._source.slice(0, n)


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
    first_no: int,
    seg: Columns,
    depth: np.ndarray,
    in_day: np.ndarray,
    first_rows: list[tuple[int, str]],
    dropped: list[int],
    raw_levels: RawLevels,
) -> None:
    """Depth continuity over the segment's diffs (its rows ``depth``), in order (ids only, once the book no
    longer matters); the rows of a hand-over overlap's duplicates go to ``dropped``."""
    res, sink, s = ctx.res, ctx.sink, ctx.s
    first_ids, final_ids, prev_finals = seg["i1"][depth], seg["i2"][depth], seg["i3"][depth]  # U, u, pu
    has_pu = _has(seg, "i3")[depth]
    if s.written_in_day and s.snapshot_id is None and s.prev_u is not None and not _overlap(s, "depth"):
        # The usual segment: a running session whose diffs all continue each other. Nothing is recorded but the
        # last id and the diffs kept to bridge a later snapshot; any break takes the loop below.
        prev = np.concatenate(([s.prev_u], final_ids[:-1]))
        chained = (
            has_pu & (prev_finals == prev) if s.rules.pu_chain else first_ids == prev + 1
        )  # the venue's rule
        if chained.all():
            tail = slice(-RECENT_DIFFS, None)
            pus = _optional(prev_finals[tail], has_pu[tail])
            s.recent.extend(
                zip(first_ids[tail].tolist(), final_ids[tail].tolist(), pus, repeat(None), repeat(None))
            )
            s.prev_u, s.resync_pending = int(final_ids[-1]), False
            return
    rows = zip(
        depth.tolist(),
        first_ids.tolist(),
        final_ids.tolist(),
        _optional(prev_finals, has_pu),
        seg["capture_ns"][depth].tolist(),
        seg["line"][depth].tolist(),
        in_day[depth].tolist(),
        strict=True,
    )
    for row, U, u, pu, capture_ns, pos, day in rows:
        if s.snapshot_id is None and overlap_duplicate(res, s, "depth", u, s.prev_u, day):
            dropped.append(row)
            continue
        if s.written_in_day:
            depth_sync(res, sink, s, U, u, pu, None, None, capture_ns, src, first_no + pos, day)
            continue
        # Until the day's first write the book may be carried into the day: keep its levels as the per-line
        # parser does (only the part of a file before the day, and its first message).
        bids, asks = raw_levels(pos)
        _touch(sink, first_rows, pos)  # a carried snapshot written here comes after the rows before it
        if depth_sync(res, sink, s, U, u, pu, bids, asks, capture_ns, src, first_no + pos, day):
            _apply(s.bids, bids)
            _apply(s.asks, asks)


def _optional(values: np.ndarray, has: np.ndarray) -> list[int | None]:
    if has.all():
        return values.tolist()
    return [v if h else None for v, h in zip(values.tolist(), has.tolist(), strict=True)]


def _trade_ids(
    ctx: _Context, ids: np.ndarray, in_day: np.ndarray, rows: np.ndarray, dropped: list[int]
) -> None:
    res, s = ctx.res, ctx.s
    prev = s.prev_trade_id
    if not _overlap(s, "trade"):  # no hand-over: nothing is dropped, the loop below without its first test
        prev, known, dups, gaps = _trade_run(ids, in_day, prev or 0, prev is not None)
        res.trade_id_duplicates += dups
        res.trade_id_gaps += gaps
        s.prev_trade_id = prev if known else None
        return
    for tid, day, row in zip(ids.tolist(), in_day.tolist(), rows.tolist(), strict=True):
        if overlap_duplicate(res, s, "trade", tid, prev, day):
            dropped.append(row)
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
    ctx: _Context, kind: str, ids: np.ndarray, in_day: np.ndarray, rows: np.ndarray, dropped: list[int]
) -> None:
    """The newest id of ``kind`` (aggTrade, bookTicker); during a hand-over overlap, its duplicates dropped."""
    res, s = ctx.res, ctx.s
    if not _overlap(s, kind):
        top = int(ids.max())
        s.last_id[kind] = max(top, s.last_id.get(kind, top))
        return
    for ident, day, row in zip(ids.tolist(), in_day.tolist(), rows.tolist(), strict=True):
        if overlap_duplicate(res, s, kind, ident, s.last_id.get(kind), day):
            dropped.append(row)
        else:
            s.last_id[kind] = max(ident, s.last_id.get(kind, ident))
