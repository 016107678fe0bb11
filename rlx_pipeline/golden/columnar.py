"""Golden parsing in columnar batches: the same tables as the per-line parser, at the speed of reading.

Lines are decoded ``BATCH_LINES`` at a time: the capture envelope by one regex over the batch, each hot message
kind (trade, aggTrade, bookTicker, depth diffs) by Polars' JSON decoder with that kind's schema, prices and sizes
straight from their decimal strings to fixed point with vectorized string kernels (no Python object per message
or level). Only what is sequential stays a Python loop, over plain ints: depth continuity (ids), trade-id
continuity. Everything else goes through the per-line parser (:func:`rlx_pipeline.golden.parse.parse_line`), in
order: REST snapshots, capture events, other kinds, and any line the batch decoders do not accept exactly as
the per-line parser would (bad JSON, a missing field, a value of another type, a decimal outside the canonical
``digits[.digits]`` form, non-UTF-8 bytes). A batch is cut into segments at those lines, so state carried from
line to line (the last exchange time, the depth session, trade ids) sees every line in capture order.

Why Polars' ``str.json_decode``: measured on the simulated BTCUSDT day it decodes depth diffs about 3x faster
than ``orjson.loads`` per line (which builds a list and two strings per level) and on par with pyarrow's JSON
reader, and it keeps the decoded levels in the same Polars frame as the envelope, so the explode to one row per
level and the fixed-point conversion never leave Rust. ``read_ndjson`` on the ``data`` fields was slower.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from rlx_pipeline import fixed_point, venues
from rlx_pipeline.formats.capture_file import (
    EVENT_STREAM,
    CaptureFormatError,
    FrameLoss,
    iter_frames,
    split_line,
)
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
# The envelope split_line reads, with a plain decimal capture_ns (anything else takes the per-line path). Only
# the prefix is matched by the regex: capture groups over the whole (kilobytes long) line cost 10x more.
_PREFIX = r'^\{"capture_ns":([0-9]{1,19}),"stream":"([^"]*)","data":'
# Decimals fixed_point.parse reads as whole * 10^8 + first 8 fractional digits (no sign, no spaces, no overflow).
_DECIMAL = r"^[0-9]{1,10}(\.[0-9]{0,8}0*)?$"
# Values the per-line parser would read differently from a decoder that maps null and absent alike.
_EXPLICIT_NULL = r'"(E|T|pu)":\s*null'

_I, _S, _B = pl.Int64, pl.String, pl.Boolean
_LEVELS = pl.List(pl.List(pl.String))
_GROUPS = ("trade", "aggTrade", "bookTicker", "depth")
_SCHEMA = {
    "trade": {"E": _I, "T": _I, "t": _I, "p": _S, "q": _S, "m": _B},
    "aggTrade": {"E": _I, "T": _I, "a": _I, "f": _I, "l": _I, "p": _S, "q": _S, "m": _B},
    "bookTicker": {"E": _I, "T": _I, "u": _I, "b": _S, "B": _S, "a": _S, "A": _S},
    "depth": {"E": _I, "U": _I, "u": _I, "pu": _I, "b": _LEVELS, "a": _LEVELS},
}
_RENAME = {"aggTrade": {"a": "agg_id"}, "depth": {"b": "lv_b", "a": "lv_a"}}
_DECIMALS = {"trade": ("p", "q"), "aggTrade": ("p", "q"), "bookTicker": ("b", "B", "a", "A"), "depth": ()}


_TS = pl.Datetime("ns", "UTC")
_TIMES = {"event_time": (pl.col("E") * MS).cast(_TS), "trade_time": (pl.col("T") * MS).cast(_TS)}
_TRADE = {"price": pl.col("p_fx"), "quantity": pl.col("q_fx"), "is_buyer_maker": pl.col("m")}
_ROWS = {  # table -> (kind group, its columns after capture_ns, source_file, line_no)
    "trades": ("trade", {**_TIMES, "trade_id": pl.col("t"), **_TRADE}),
    "agg_trades": (
        "aggTrade",
        {
            **_TIMES,
            "agg_trade_id": pl.col("agg_id"),
            "first_trade_id": pl.col("f"),
            "last_trade_id": pl.col("l"),
            **_TRADE,
        },
    ),
    "book_ticker": (
        "bookTicker",
        {
            "update_id": pl.col("u"),
            "bid_price": pl.col("b_fx"),
            "bid_qty": pl.col("B_fx"),
            "ask_price": pl.col("a_fx"),
            "ask_qty": pl.col("A_fx"),
        },
    ),
}
_TABLE_OF = {"trade": "trades", "aggTrade": "agg_trades", "bookTicker": "book_ticker", "depth": "depth"}
_DEPTH_HEAD_FIELDS = ("E", "U", "u", "pu")  # repeated on every level row by the explode (no join back)
_LEVEL = {"side_is_bid": pl.col("side_is_bid"), "price": pl.col("price"), "size": pl.col("size")}
_DEPTH_HEAD = {
    "event_time": _TIMES["event_time"],
    "first_update_id": pl.col("U"),
    "final_update_id": pl.col("u"),
    "prev_final_update_id": pl.col("pu"),
}


def parse_file(ctx: _Context, path: Path) -> None:
    """All lines of one capture file, in batches of about ``BATCH_LINES``. Unreadable bytes are recorded where the
    reader meets them: after the lines read before them, as line by line."""
    src = str(path)
    line_no, first, buf = 0, 1, []

    def flush() -> None:
        nonlocal buf
        if buf:
            _batch(ctx, path, src, first, buf)
            buf = []

    def lost(loss: FrameLoss) -> None:
        flush()
        _lost(ctx.res, loss)

    for frame in iter_frames(path, on_loss=lost):
        lines = frame.splitlines()
        if not buf:
            first = line_no + 1
        buf.extend(lines)
        line_no += len(lines)
        if len(buf) >= BATCH_LINES:
            flush()
    flush()


def _fixed(col: pl.Expr) -> pl.Expr:
    """Decimal strings (already matched by ``_DECIMAL``) -> int64 fixed point, as fixed_point.parse."""
    parts = col.str.split_exact(".", 1)
    whole = parts.struct.field("field_0").cast(pl.Int64, strict=False)
    frac = parts.struct.field("field_1").str.slice(0, fixed_point.SCALE).str.pad_end(fixed_point.SCALE, "0")
    return whole * fixed_point.UNIT + frac.cast(pl.Int64, strict=False).fill_null(0)


def _text(lines: list[bytes]) -> pl.Series:
    try:
        return pl.Series("line", lines, dtype=pl.Binary).cast(pl.String)
    except pl.exceptions.PolarsError:
        # Some line is not UTF-8: it cannot match the envelope, so it takes the per-line path.
        def utf8(b: bytes) -> str:
            try:
                return b.decode()
            except UnicodeDecodeError:
                return "\x00"

        return pl.Series("line", [utf8(b) for b in lines], dtype=pl.String)


def _batch(ctx: _Context, path: Path, src: str, first_no: int, lines: list[bytes]) -> None:
    """One batch of consecutive lines. A line that is not a capture line is recorded in its place and reading
    goes on, as line by line."""
    text = _text(lines)
    env = text.str.extract_groups(_PREFIX)
    df = pl.DataFrame({"line": text, "cap": env.struct.field("1"), "stream": env.struct.field("2")}).select(
        pos=pl.int_range(0, len(text), dtype=pl.Int64),
        capture_ns=pl.when(pl.col("line").str.ends_with("}")).then(
            pl.col("cap").cast(pl.Int64, strict=False)
        ),
        stream="stream",
        data=pl.col("line").str.replace(_PREFIX, "").str.strip_suffix("}"),
        empty=pl.col("line").str.len_bytes() == 0,
    )
    # pos -> (capture_ns, stream, data) for the per-line parser, or the error of a line that is not a capture line
    slow: dict[int, tuple[int, str, bytes] | CaptureFormatError] = {}
    end = len(lines)
    for pos in df.filter(pl.col("capture_ns").is_null() & ~pl.col("empty"))["pos"].to_list():
        try:
            slow[pos] = split_line(lines[pos], path, first_no + pos)
        except CaptureFormatError as exc:
            slow[pos] = exc
    df = df.filter(pl.col("capture_ns").is_not_null())
    kind = pl.col("stream").str.extract(r"^[^@]*@(.*)$").fill_null("")
    df = df.with_columns(
        is_sym=pl.col("stream").str.extract(r"^([^@]*)") == ctx.sym,
        kind=kind,
        group=pl.when(kind.is_in(["trade", "aggTrade", "bookTicker"]))
        .then(kind)
        .when(kind.str.starts_with("depth") & (kind != "depthSnapshot"))
        .then(pl.lit("depth")),
    )
    per_line = (pl.col("stream") == EVENT_STREAM) | (pl.col("is_sym") & pl.col("group").is_null())
    for pos in df.filter(per_line)["pos"].to_list():
        slow[pos] = split_line(lines[pos], path, first_no + pos)
    hot = df.filter(pl.col("is_sym") & pl.col("group").is_not_null() & (pl.col("stream") != EVENT_STREAM))

    frames, levels = [], None
    for group in _GROUPS:
        sub = hot.filter(pl.col("group") == group)
        if not sub.height:
            continue
        decoded, bad = _decode(sub, group, ctx.venue)
        if decoded is None:
            bad = sub["pos"].to_list()
        elif group == "depth":
            levels, bad_levels = _explode_levels(decoded)
            bad = sorted(set(bad) | set(bad_levels))
            decoded = decoded.filter(~pl.col("pos").is_in(bad))
            levels = levels.filter(~pl.col("pos").is_in(bad))
        else:
            decoded = decoded.filter(~pl.col("pos").is_in(bad))
        for pos in bad:
            slow[pos] = split_line(lines[pos], path, first_no + pos)
        if decoded is not None:
            frames.append(decoded)
    timeline = pl.concat(frames, how="diagonal_relaxed").sort("pos") if frames else pl.DataFrame({"pos": []})
    tl_pos = timeline["pos"].to_numpy() if frames else np.empty(0, np.int64)
    lv_pos = levels["pos"].to_numpy() if levels is not None else np.empty(0, np.int64)

    a = 0
    for b in [*sorted(p for p in slow if p < end), end]:
        i0, i1 = np.searchsorted(tl_pos, [a, b])
        if i1 > i0:
            seg_levels = None
            if levels is not None:
                j0, j1 = np.searchsorted(lv_pos, [a, b])
                seg_levels = levels.slice(j0, j1 - j0)
            _segment(ctx, src, first_no, timeline.slice(i0, i1 - i0), seg_levels)
        if b < end:
            line = slow[b]
            if isinstance(line, CaptureFormatError):
                ctx.res.malformed.append((src, -1, str(line)))
            else:
                parse_line(ctx, src, first_no + b, *line)
        a = b + 1
    ctx.count_lines(end)


def _decode(sub: pl.DataFrame, group: str, venue: venues.Venue) -> tuple[pl.DataFrame | None, list[int]]:
    """The kind's fields as columns, and the positions the per-line parser must take instead: among them every
    frame that is not the venue's (a field its frames carry missing, one they never carry there; a kind it does
    not serve), for the per-line parser to record as the venue's ``FrameError``."""
    spec = venue.frames.get(group)
    if spec is None:
        return None, []
    # the venue's fields the kind's schema does not read are decoded too, to be checked (ids and times: ints)
    schema = _SCHEMA[group] | {n: _I for n in spec.required | spec.absent if n not in _SCHEMA[group]}
    try:
        fields = sub["data"].str.json_decode(pl.Struct(schema)).struct.unnest()
    except pl.exceptions.PolarsError:
        return None, []
    out = pl.concat([sub.select("pos", "capture_ns", "kind", "group", "data"), fields], how="horizontal")
    # The regex only where a literal "null" is (a memchr-speed scan): rare in Binance data.
    with_null = sub.filter(pl.col("data").str.contains("null", literal=True))
    null_pos = with_null.filter(pl.col("data").str.contains(_EXPLICIT_NULL))["pos"]
    ok = ~pl.col("pos").is_in(null_pos)
    for name in spec.required:
        ok &= pl.col(name).is_not_null()
    for name in spec.absent:
        ok &= pl.col(name).is_null()
    for name in _DECIMALS[group]:
        ok &= pl.col(name).str.contains(_DECIMAL).fill_null(False)
    out = out.with_columns(_ok=ok.fill_null(False))
    bad = out.filter(~pl.col("_ok"))["pos"].to_list()
    ev = pl.coalesce("E", "T") if group == "bookTicker" else pl.col("E")
    out = out.with_columns(ev_ms=ev, **{f"{name}_fx": _fixed(pl.col(name)) for name in _DECIMALS[group]})
    # Field names clash between kinds (``a`` is an id, a price or the asks): keep each kind's own names apart.
    out = out.drop("data", "_ok", *_DECIMALS[group]).rename(_RENAME.get(group, {}))
    return out, bad


def _explode_levels(depth: pl.DataFrame) -> tuple[pl.DataFrame, list[int]]:
    """One row per level (bids then asks; a message without levels keeps one row of nulls), with the positions
    of messages whose levels are not all ``[price, size]`` decimal pairs."""
    n_b = pl.col("lv_b").list.len()
    lv = depth.select(
        "pos",
        "capture_ns",
        *_DEPTH_HEAD_FIELDS,
        level=pl.concat_list("lv_b", "lv_a"),
        k=pl.int_ranges(0, n_b + pl.col("lv_a").list.len()),
        n_b=n_b,
    ).explode("level", "k", empty_as_null=True)
    p, q = pl.col("level").list.get(0, null_on_oob=True), pl.col("level").list.get(1, null_on_oob=True)
    good = pl.col("level").is_null() | (
        (pl.col("level").list.len() == 2)
        & p.str.contains(_DECIMAL).fill_null(False)
        & q.str.contains(_DECIMAL).fill_null(False)
    )
    lv = lv.with_columns(_ok=good)
    bad = lv.filter(~pl.col("_ok"))["pos"].unique().to_list()
    lv = lv.select(
        "pos",
        "capture_ns",
        *_DEPTH_HEAD_FIELDS,
        side_is_bid=pl.when(pl.col("k").is_not_null()).then(pl.col("k") < pl.col("n_b")),
        price=_fixed(p),
        size=_fixed(q),
    )
    return lv, bad


def _segment(ctx: _Context, src: str, first_no: int, tl: pl.DataFrame, levels: pl.DataFrame | None) -> None:
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
    depth = tl.filter(pl.col("group") == "depth")
    if depth.height:
        _depth_sync(ctx, src, depth, first_rows, dropped)
    trades = tl.filter(pl.col("group") == "trade")
    if trades.height:
        _trade_ids(ctx, trades["t"], trades["in_day"], trades["pos"], dropped)
    for group, column in (("aggTrade", "agg_id"), ("bookTicker", "u")):
        part = tl.filter(pl.col("group") == group)
        if part.height:
            _last_ids(ctx, group, part[column], part["in_day"], part["pos"], dropped)
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
    heads = day.filter(pl.col("group") == "depth")
    if heads.height and levels is not None:
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
    ctx: _Context, src: str, depth: pl.DataFrame, first_rows: list[tuple[int, str]], dropped: list[int]
) -> None:
    """Depth continuity over the segment's diffs, in order (ids only, once the book no longer matters); the
    positions of a hand-over overlap's duplicates go to ``dropped``."""
    res, sink, s = ctx.res, ctx.sink, ctx.s
    if s.written_in_day and s.snapshot_id is None and s.prev_u is not None and not _overlap(s, "depth"):
        # The usual segment: a running session whose diffs all continue each other. Nothing is recorded but the
        # last id and the diffs kept to bridge a later snapshot; any break takes the loop below.
        prev = pl.concat([pl.Series([s.prev_u], dtype=pl.Int64), depth["u"].head(-1)])
        chained = pl.col("pu") == prev if s.rules.pu_chain else pl.col("U") == prev + 1
        ok = depth.select(chained.all()).item()
        if ok:
            tail = depth.tail(RECENT_DIFFS).select("U", "u", "pu").iter_rows()
            s.recent.extend((U, u, pu, None, None) for U, u, pu in tail)
            s.prev_u, s.resync_pending = depth["u"][-1], False
            return
    cols = depth.select("U", "u", "pu", "capture_ns", "line_no", "in_day", "pos")
    for i, (U, u, pu, capture_ns, line_no, in_day, pos) in enumerate(cols.iter_rows()):
        if s.snapshot_id is None and overlap_duplicate(res, s, "depth", u, s.prev_u, in_day):
            dropped.append(pos)
            continue
        if s.written_in_day:
            depth_sync(res, sink, s, U, u, pu, None, None, capture_ns, src, line_no, in_day)
            continue
        # Until the day's first write the book may be carried into the day: keep its levels as the per-line
        # parser does (only the part of a file before the day, and its first message).
        bids, asks = depth["lv_b"][i].to_list(), depth["lv_a"][i].to_list()
        _touch(sink, first_rows, pos)  # a carried snapshot written here comes after the rows before it
        if depth_sync(res, sink, s, U, u, pu, bids, asks, capture_ns, src, line_no, in_day):
            _apply(s.bids, bids)
            _apply(s.asks, asks)


def _trade_ids(ctx: _Context, ids: pl.Series, in_day: pl.Series, pos: pl.Series, dropped: list[int]) -> None:
    res, s = ctx.res, ctx.s
    prev = s.prev_trade_id
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
