"""Export to hftbacktest: the days of a symbol as one ``.npz`` of ``event_dtype`` rows (``data``).

hftbacktest's rules, all applied here exactly as its own Tardis converter
(``hftbacktest.data.utils.tardis.convert``) applies them, so that this export and that converter run on this
project's Tardis export give the same array, row for row:

- a trade is ``TRADE_EVENT | BUY_EVENT`` (taker bought) or ``| SELL_EVENT``; a depth row ``DEPTH_EVENT`` with
  ``BUY_EVENT`` (bid) or ``SELL_EVENT`` (ask), ``qty`` 0 deleting the level;
- a snapshot group (see ``rlx_pipeline.export.feed``) is, per side, ``DEPTH_CLEAR_EVENT`` with ``px`` = the
  group's deepest price (hftbacktest clears from its best down to that price) followed by ``DEPTH_SNAPSHOT_EVENT``
  rows, placed where the group ends (before the next depth row);
- ``exch_ts`` is the exchange time (``origin_time``), ``local_ts`` the receive time (``received_time``), in ns;
  where a local time is before its exchange time, every local time is shifted by the largest such lead plus
  ``base_latency`` (hftbacktest's ``correct_local_timestamp``): feed latency is never negative;
- rows are ordered by exchange time for the exchange side (``EXCH_EVENT``) and by local time for the local side
  (``LOCAL_EVENT``); at equal times trades come before depth rows (a trade's queue effect must not be counted
  after the depth change that already carries it). A row whose place differs in the two orders is written twice,
  once with each flag (``correct_event_order``); ``validate_event_order`` holds on the result.

Streaming: rows are produced batch by batch and the two orders merged over a sliding window (an event is final in
exchange order once every later event has a later exchange time, in local order once every later event's local
time must be later: exchange time + the smallest feed latency of the range); rows go to a temporary file, then
into the ``.npz`` with the final count. Memory: a batch, the window, the book mirror; not the day.

Invalid intervals (spans the gap-aware stream does not trust) have no place in ``event_dtype``: they go to a side
file ``<out>.invalid_intervals.csv`` beside the ``.npz`` (the re-seed that ends one is a clear + snapshot there).

Precision: ``px`` and ``qty`` are float64, the nearest double to the exact decimal (fixed point / 1e8, one
correctly rounded division). float64 carries 15-17 significant digits: every Binance price and size (at most 8
decimals, below 1e7) is recovered exactly by ``round(px / tick_size)`` and ``round(qty / lot_size)`` (what
hftbacktest does), but sums of float quantities are not exact, and a value with more than 15 significant digits
(e.g. 12345678.12345678) is not representable. The exact values stay in the unified stream.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from numba import njit

from rlx_pipeline import catalog, storage
from rlx_pipeline.export.feed import SNAPSHOT_ROW, TRADE, Feed, FeedCounts
from rlx_pipeline.layout import DataLayout

# hftbacktest.types (kept here so that exporting needs no hftbacktest import; a test checks they agree)
DEPTH_EVENT, TRADE_EVENT, DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT = 1, 2, 3, 4
EXCH_EVENT, LOCAL_EVENT, BUY_EVENT, SELL_EVENT = 1 << 31, 1 << 30, 1 << 29, 1 << 28
EVENT_DTYPE = np.dtype(
    [
        ("ev", "u8"),
        ("exch_ts", "i8"),
        ("local_ts", "i8"),
        ("px", "f8"),
        ("qty", "f8"),
        ("order_id", "u8"),
        ("ival", "i8"),
        ("fval", "f8"),
    ],
    align=True,
)
UNITS = {"ns": 1, "us": 1_000}  # "us": Tardis's resolution (timestamps floored to the microsecond)
_FIXED = 1e8
_COPY_ROWS = 1 << 18


@dataclass
class ExportResult:
    path: Path
    rows: int = 0
    days: list[str] = field(default_factory=list)
    feed: FeedCounts = field(default_factory=FeedCounts)
    local_offset_ns: int = 0
    intervals_path: Path | None = None  # the invalid intervals side file, when the stream records any
    seconds: float = 0.0
    events_in: int = 0  # unified-stream events read

    @property
    def events_per_s(self) -> float:
        return self.events_in / self.seconds if self.seconds else 0.0


@njit(cache=True)
def _to_events(
    kind, t, r, side, price, qty, unit, grp, g_t, g_r, g_px, g_qty, g_n, pos, lat,
    o_ev, o_exch, o_local, o_px, o_qty, o_depth, o_pos,
):  # fmt: skip
    """Feed rows -> hftbacktest rows in converter order (snapshot groups held until the next depth row).
    ``grp[0]``: a group is open; g_*: its rows per side (0 bids, 1 asks), ``g_n`` counts; ``pos``: next position
    of trades, depth rows; ``lat[0]``: smallest local - exch so far. Returns rows written."""
    o = 0
    for i in range(kind.shape[0]):
        ex = (t[i] // unit) * unit
        lo = (r[i] // unit) * unit
        if lo - ex < lat[0]:
            lat[0] = lo - ex
        px, q = price[i] / 1e8, qty[i] / 1e8
        k = kind[i]
        if k == TRADE:
            o_ev[o] = TRADE_EVENT | (BUY_EVENT if side[i] == 1 else SELL_EVENT)
            o_exch[o], o_local[o], o_px[o], o_qty[o], o_depth[o], o_pos[o] = ex, lo, px, q, 0, pos[0]
            pos[0] += 1
            o += 1
            continue
        s = 0 if side[i] == 1 else 1
        if k == SNAPSHOT_ROW:
            if grp[0] == 0:
                grp[0] = 1
                g_n[0] = 0
                g_n[1] = 0
            j = g_n[s]
            g_t[s, j], g_r[s, j], g_px[s, j], g_qty[s, j] = ex, lo, px, q
            g_n[s] += 1
            continue
        if grp[0] == 1:
            grp[0] = 0
            for gs in range(2):
                flag = BUY_EVENT if gs == 0 else SELL_EVENT
                if g_n[gs] == 0:
                    continue
                o_ev[o] = DEPTH_CLEAR_EVENT | flag
                o_exch[o], o_local[o], o_px[o], o_qty[o] = g_t[gs, 0], g_r[gs, 0], g_px[gs, g_n[gs] - 1], 0.0
                o_depth[o], o_pos[o] = 1, pos[1]
                pos[1] += 1
                o += 1
                for j in range(g_n[gs]):
                    o_ev[o] = DEPTH_SNAPSHOT_EVENT | flag
                    o_exch[o], o_local[o], o_px[o], o_qty[o] = (
                        g_t[gs, j],
                        g_r[gs, j],
                        g_px[gs, j],
                        g_qty[gs, j],
                    )
                    o_depth[o], o_pos[o] = 1, pos[1]
                    pos[1] += 1
                    o += 1
        o_ev[o] = DEPTH_EVENT | (BUY_EVENT if s == 0 else SELL_EVENT)
        o_exch[o], o_local[o], o_px[o], o_qty[o], o_depth[o], o_pos[o] = ex, lo, px, q, 1, pos[1]
        pos[1] += 1
        o += 1
    return o


@njit(cache=True)
def _merge(
    e_ev, e_exch, e_local, e_px, e_qty, l_ev, l_exch, l_local, l_px, l_qty, w_exch, w_local, final, out
):
    """hftbacktest's ``correct_event_order`` over the final part of two sorted windows (exchange order ``e_*``,
    local order ``l_*``): decisions compare the two heads, so they are taken only while both heads are final
    (exchange time < w_exch, local time < w_local) or at the end of the data. Returns (rows out, e used, l used)."""
    ne, nl = e_ev.shape[0], l_ev.shape[0]
    i = j = o = 0
    while True:
        he = i < ne and (final or e_exch[i] < w_exch)
        hl = j < nl and (final or l_local[j] < w_local)
        if not final and not (he and hl):
            break
        if he and hl and e_exch[i] == l_exch[j] and e_local[i] == l_local[j]:
            out[o].ev = e_ev[i] | EXCH_EVENT | LOCAL_EVENT
            src, i, j = 0, i + 1, j + 1
            k = i - 1
        elif he and (not hl or e_exch[i] < l_exch[j] or (e_exch[i] == l_exch[j] and e_local[i] < l_local[j])):
            out[o].ev = e_ev[i] | EXCH_EVENT
            src, k, i = 0, i, i + 1
        elif hl:
            out[o].ev = l_ev[j] | LOCAL_EVENT
            src, k, j = 1, j, j + 1
        else:
            break
        if src == 0:
            out[o].exch_ts, out[o].local_ts, out[o].px, out[o].qty = e_exch[k], e_local[k], e_px[k], e_qty[k]
        else:
            out[o].exch_ts, out[o].local_ts, out[o].px, out[o].qty = l_exch[k], l_local[k], l_px[k], l_qty[k]
        out[o].order_id, out[o].ival, out[o].fval = 0, 0, 0.0
        o += 1
    return o, i, j


_FIELDS = ("ev", "exch", "local", "px", "qty", "depth", "pos")


class _Window:
    """Rows not yet written in exchange order (``e``) and in local order (``l``)."""

    def __init__(self) -> None:
        empty = {
            "ev": np.zeros(0, np.uint64),
            "exch": np.zeros(0, np.int64),
            "local": np.zeros(0, np.int64),
            "px": np.zeros(0, np.float64),
            "qty": np.zeros(0, np.float64),
            "depth": np.zeros(0, np.int8),
            "pos": np.zeros(0, np.int64),
        }
        self.e, self.loc = empty, dict(empty)

    def add(self, rows: dict[str, np.ndarray]) -> None:
        for name, key in (("e", "exch"), ("loc", "local")):
            cur = getattr(self, name)
            both = {f: np.concatenate([cur[f], rows[f]]) for f in _FIELDS}
            order = np.lexsort((both["pos"], both["depth"], both[key]))  # time, trades first, arrival
            setattr(self, name, {f: both[f][order] for f in _FIELDS})

    def drain(self, w_exch: int, w_local: int, final: bool) -> np.ndarray:
        e, loc = self.e, self.loc
        out = np.empty(len(e["ev"]) + len(loc["ev"]), EVENT_DTYPE)
        o, i, j = _merge(
            e["ev"], e["exch"], e["local"], e["px"], e["qty"],
            loc["ev"], loc["exch"], loc["local"], loc["px"], loc["qty"], w_exch, w_local, final, out,
        )  # fmt: skip
        self.e = {f: v[i:] for f, v in e.items()}
        self.loc = {f: v[j:] for f, v in loc.items()}
        return out[:o]


def _npy_header(rows: int) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(EVENT_DTYPE), "fortran_order": False, "shape": (rows,)}
    )
    return buf.getvalue()


def _write_npz(raw: Path, rows: int, offset: int, dest: Path, compress: bool) -> None:
    """The .npz (one member ``data.npy``) from the raw rows, local times shifted by ``offset``, streaming."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with (
        storage.atomic_path(dest) as tmp,
        zipfile.ZipFile(tmp, "w", compression=method, compresslevel=1 if compress else None) as zf,
        zf.open("data.npy", "w", force_zip64=True) as member,
        open(raw, "rb") as src,
    ):
        member.write(_npy_header(rows))
        if offset == 0:
            shutil.copyfileobj(src, member, 1 << 24)
        else:
            while chunk := src.read(_COPY_ROWS * EVENT_DTYPE.itemsize):
                arr = np.frombuffer(chunk, EVENT_DTYPE).copy()
                arr["local_ts"] += offset
                member.write(arr.tobytes())


def write_intervals(
    data_dir: str | os.PathLike[str], symbol: str, days: list[str], dest: Path
) -> Path | None:
    """The days' invalid intervals (``catalog.invalid_intervals``) as a CSV side file, times in ns since the epoch:
    the spans where the exported book is the stream's but not trusted. None (no file) when no day has any."""
    layout = DataLayout(Path(data_dir))
    frames = [
        df.with_columns(pl.lit(d).alias("date"))
        for d in days
        if (df := catalog.invalid_intervals(layout, d, symbol)) is not None and len(df)
    ]
    if not frames:
        return None
    table = pl.concat(frames, how="diagonal_relaxed").with_columns(
        pl.col(pl.Datetime).dt.epoch("ns")  # timestamps as integers, as in the exported rows
    )
    with storage.atomic_path(dest) as tmp:
        table.write_csv(tmp)
    return dest


def usable_days(
    data_dir: str | os.PathLike[str], symbol: str, start: str, end: str
) -> list[tuple[str, Path, Path]]:
    """(date, events, book) of every day ``start``..``end``; ``catalog.DayNotUsable`` for the first that is not
    usable (failed, not reconstructed, never run): the gate's rules apply to what leaves the project."""
    layout = DataLayout(Path(data_dir))
    out = []
    for d in catalog.days(start, end):
        catalog.require_usable(layout, d, symbol)
        out.append((d, layout.unified(d, symbol), layout.unified_book(d, symbol)))
    return out


def export_hftbacktest(
    data_dir: str | os.PathLike[str],
    symbol: str,
    start: str,
    end: str,
    dest: str | os.PathLike[str],
    *,
    timestamp_unit: str = "ns",
    base_latency: int = 0,
    compress: bool = True,
    progress: Callable[[int], None] | None = None,
) -> ExportResult:
    """Days ``start``..``end`` (inclusive) of ``symbol`` into ``dest`` (.npz, array ``data`` of hftbacktest's
    ``event_dtype``), atomically. ``progress(n)`` is called with the unified-stream events read since the last
    call. ``timestamp_unit="us"`` floors timestamps to microseconds (what Tardis files carry)."""
    t0 = time.perf_counter()
    unit = UNITS[timestamp_unit]
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    days = usable_days(data_dir, symbol, start, end)
    result = ExportResult(dest, days=[d for d, _, _ in days])
    # smallest feed latency of the range (a lower bound for the rows written) and each day's first exchange time,
    # in one streaming pass over two columns
    lat_lower = 0
    firsts = []
    for _, events, _ in days:
        first = np.iinfo(np.int64).max
        for b in storage.streaming_parquet(events).iter_batches(
            batch_size=1 << 20, columns=["origin_time", "received_time"]
        ):
            t = b.column(0).cast("int64").to_numpy() // unit * unit
            r = b.column(1).cast("int64").to_numpy() // unit * unit
            if len(t):
                lat_lower = min(lat_lower, int((r - t).min()))
                first = min(first, int(t.min()))
        firsts.append(first)
    feed = Feed()
    grp, g_n, pos = np.zeros(1, np.int64), np.zeros(2, np.int64), np.zeros(2, np.int64)
    g_cap = 4096
    g_t, g_r = np.zeros((2, g_cap), np.int64), np.zeros((2, g_cap), np.int64)
    g_px, g_qty = np.zeros((2, g_cap)), np.zeros((2, g_cap))
    lat = np.array([np.iinfo(np.int64).max], np.int64)
    window = _Window()
    with tempfile.NamedTemporaryFile(prefix=f".{dest.name}.", suffix=".raw", dir=dest.parent) as raw:
        for k, (_, events, book) in enumerate(days):
            later_first = min(firsts[k + 1 :], default=np.iinfo(np.int64).max)
            for fb in feed.day(events, book):
                n = len(fb)
                cap = n + 2 * g_cap + 2
                out = {
                    "ev": np.empty(cap, np.uint64),
                    "exch": np.empty(cap, np.int64),
                    "local": np.empty(cap, np.int64),
                    "px": np.empty(cap),
                    "qty": np.empty(cap),
                    "depth": np.empty(cap, np.int8),
                    "pos": np.empty(cap, np.int64),
                }
                m = _to_events(
                    fb.kind, fb.exch_ns, fb.local_ns, fb.side, fb.price, fb.qty, unit,
                    grp, g_t, g_r, g_px, g_qty, g_n, pos, lat, *out.values(),
                )  # fmt: skip
                window.add({f: v[:m] for f, v in out.items()})
                # every later row: exchange time >= this batch's last (the stream is in time order) and the next
                # days' first; an open snapshot group keeps its own (earlier) times
                w = min(int(fb.exch_ns[-1]) // unit * unit if n else later_first, later_first)
                if grp[0]:
                    w = min(w, int(g_t[0, 0] if g_n[0] else g_t[1, 0]))
                window.drain(w, w + lat_lower, False).tofile(raw)
                result.events_in += fb.events_read
                if progress and fb.events_read:
                    progress(fb.events_read)
        # a snapshot group still open here has no depth row after it: like hftbacktest's converter, not written
        tail = window.drain(0, 0, True)
        tail.tofile(raw)
        raw.flush()
        rows = os.path.getsize(raw.name) // EVENT_DTYPE.itemsize
        lead = int(lat[0]) if lat[0] != np.iinfo(np.int64).max else 0
        offset = -lead + base_latency if lead < 0 else 0
        _write_npz(Path(raw.name), rows, offset, dest, compress)
    result.rows = rows
    result.local_offset_ns = offset
    result.intervals_path = write_intervals(
        data_dir, symbol, result.days, dest.with_name(dest.stem + ".invalid_intervals.csv")
    )
    result.feed = feed.counts
    result.seconds = time.perf_counter() - t0
    return result
