"""The unified stream as an L2 feed: trades, incremental depth rows and snapshot rows, the common input of the
hftbacktest and Tardis exports.

A delta of the unified stream is one incremental depth row, a trade one trade row. The unified stream's book is
more than its deltas: a ``book`` snapshot seeds or resyncs it, a crossed book is resolved, (with the gap-aware
stream) a gap invalidates it until a re-seed. So the feed keeps a mirror of what a consumer replaying the rows
holds (the engine's own ladder, ``rlx_pipeline.book.engine``) and, after every book state of the stream
(``book.parquet``), compares the mirror's top-N with the stream's; where they differ it emits the rows that make
them equal, at that state's timestamps:

- when a snapshot event came since the previous state (the book was seeded or resynced): snapshot rows (the
  top-N of each side, best first: a consumer clears each side from its best down to the snapshot's deepest level
  and inserts them, which is hftbacktest's DEPTH_CLEAR_EVENT + DEPTH_SNAPSHOT_EVENT and Tardis's
  ``is_snapshot`` semantics), then incremental rows for what remains different;
- otherwise (a crossed book resolved, a deeper level the stream knew from a snapshot surfacing) incremental rows
  that set or delete exactly the levels that differ.

So a consumer's book equals the stream's top-N at every book state, by construction; levels deeper than top-N
are whatever the rows gave (the stream's files carry only top-N). Two snapshot groups are never emitted back to
back without an incremental row between them (Tardis readers would merge them into one): the second is written
as incremental rows.

Prices and sizes stay int64 fixed point (1e-8) here; the writers convert at the edge.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numba import njit

from rlx_pipeline import storage
from rlx_pipeline.book import engine

TRADE, DEPTH, SNAPSHOT_ROW = 0, 1, 2  # feed row kinds
BUY, SELL = 1, -1
_EVENT_COLUMNS = ["origin_time", "received_time", "event_type", "side_is_bid", "price", "size", "trade_id"]


@dataclass
class FeedBatch:
    """Feed rows in stream order. ``side``: 1 bid / taker buy, -1 ask / taker sell; ``qty`` 0 deletes a level."""

    kind: np.ndarray  # int8
    exch_ns: np.ndarray  # int64
    local_ns: np.ndarray  # int64
    side: np.ndarray  # int8
    price: np.ndarray  # int64 fixed point
    qty: np.ndarray  # int64 fixed point
    trade_id: np.ndarray  # int64 (0 for depth rows)
    events_read: int = 0  # unified-stream events consumed by this batch (progress)

    def __len__(self) -> int:
        return len(self.kind)


@dataclass
class FeedCounts:
    trades: int = 0
    deltas: int = 0
    snapshot_rows: int = 0
    correction_rows: int = 0
    snapshots: int = 0  # snapshot groups emitted
    states: int = 0  # book states compared


def _i64(col: pa.ChunkedArray | pa.Array, fill: int = 0) -> np.ndarray:
    if col.null_count:
        col = pc.fill_null(col, fill)
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.int64())
    return np.ascontiguousarray(col.to_numpy(zero_copy_only=False), dtype=np.int64)


@njit(cache=True)
def _side_in_range(qty, bits, meta, ovp, ovs, s, bound, xs, ss):
    """The mirror's levels of side s at or better than internal price ``bound`` (best first) into xs/ss (grown
    as needed); returns (count, xs, ss)."""
    total = engine.side_count(meta, s)
    k = min(total, xs.shape[0])
    while True:
        got = engine.side_levels(qty, bits, meta, ovp, ovs, s, k, xs, ss)
        if got < k or got == 0 or xs[got - 1] < bound or k >= total:
            break
        k = min(total, 2 * k)
        if k > xs.shape[0]:
            xs = np.empty(k, np.int64)
            ss = np.empty(k, np.int64)
    n = 0
    while n < got and xs[n] >= bound:
        n += 1
    return n, xs, ss


@njit(cache=True)
def _emit(o, kind, t, r, side, price, qty, o_kind, o_t, o_r, o_side, o_price, o_qty, o_id):
    o_kind[o], o_t[o], o_r[o], o_side[o], o_price[o], o_qty[o], o_id[o] = kind, t, r, side, price, qty, 0
    return o + 1


@njit(cache=True)
def _correct(
    qty, bits, meta, ovp, ovs, tp, ts, top_n, snapshot_form, t, r, xs, ss,
    o_kind, o_t, o_r, o_side, o_price, o_qty, o_id, o, counts,
):  # fmt: skip
    """Make the mirror's top-N equal the target state (tp/ts: bids then asks, 0 = no level); returns (o, xs, ss)."""
    if snapshot_form:
        for s in range(2):
            sign = 1 if s == 0 else -1
            k_t = 0
            while k_t < top_n and tp[s * top_n + k_t] != 0:
                k_t += 1
            if k_t == 0:
                continue
            deepest = sign * tp[s * top_n + k_t - 1]
            while True:  # the consumer's clear: its best down to the snapshot's deepest level
                has, bx, _ = engine.side_best(qty, bits, meta, ovp, ovs, s)
                if not has or bx < deepest:
                    break
                engine.side_set(qty, bits, meta, ovp, ovs, s, bx, 0)
            for i in range(k_t):
                p, q = tp[s * top_n + i], ts[s * top_n + i]
                engine.side_set(qty, bits, meta, ovp, ovs, s, sign * p, q)
                o = _emit(o, SNAPSHOT_ROW, t, r, sign, p, q, o_kind, o_t, o_r, o_side, o_price, o_qty, o_id)
                counts[2] += 1
        counts[4] += 1
    for s in range(2):
        sign = 1 if s == 0 else -1
        k_t = 0
        while k_t < top_n and tp[s * top_n + k_t] != 0:
            k_t += 1
        # with a full top-N only the range down to its deepest level is known; with fewer levels, the whole side
        bound = sign * tp[s * top_n + k_t - 1] if k_t == top_n else np.iinfo(np.int64).min
        n_m, xs, ss = _side_in_range(qty, bits, meta, ovp, ovs, s, bound, xs, ss)
        i = j = 0
        while i < n_m or j < k_t:
            xm = xs[i] if i < n_m else np.iinfo(np.int64).min
            xt = sign * tp[s * top_n + j] if j < k_t else np.iinfo(np.int64).min
            if i < n_m and (j >= k_t or xm > xt):  # the mirror has a level the stream has not
                engine.side_set(qty, bits, meta, ovp, ovs, s, xm, 0)
                o = _emit(o, DEPTH, t, r, sign, sign * xm, 0, o_kind, o_t, o_r, o_side, o_price, o_qty, o_id)
                counts[3] += 1
                i += 1
            elif i >= n_m or xt > xm:  # the stream has a level the mirror has not
                q = ts[s * top_n + j]
                engine.side_set(qty, bits, meta, ovp, ovs, s, xt, q)
                o = _emit(o, DEPTH, t, r, sign, sign * xt, q, o_kind, o_t, o_r, o_side, o_price, o_qty, o_id)
                counts[3] += 1
                j += 1
            else:
                q = ts[s * top_n + j]
                if ss[i] != q:
                    engine.side_set(qty, bits, meta, ovp, ovs, s, xt, q)
                    o = _emit(
                        o, DEPTH, t, r, sign, sign * xt, q, o_kind, o_t, o_r, o_side, o_price, o_qty, o_id
                    )
                    counts[3] += 1
                i += 1
                j += 1
    return o, xs, ss


@njit(cache=True)
def _differs(qty, bits, meta, ovp, ovs, tp, ts, top_n, xs, ss):
    for s in range(2):
        sign = 1 if s == 0 else -1
        got = engine.side_levels(qty, bits, meta, ovp, ovs, s, top_n, xs, ss)
        for i in range(top_n):
            p = tp[s * top_n + i]
            if i >= got:
                if p != 0:
                    return True
            elif p == 0 or sign * xs[i] != p or ss[i] != ts[s * top_n + i]:
                return True
    return False


@njit(cache=True)
def feed_rows(
    ev_type, t, r, is_bid, price, size, trade_id, state_of, bp, bs, top_n, start,
    qty, bits, meta, ovp, ovs, fstate, counts,
    o_kind, o_t, o_r, o_side, o_price, o_qty, o_id,
):  # fmt: skip
    """Rows ``start``.. of a batch into feed rows; stops early when the output could overflow. ``state_of[i]``: the
    row of bp/bs (top-N prices/sizes, bids then asks) published after event i, or -1. ``fstate``: [snapshot seen
    since the last state, last depth row was a snapshot row]. Returns (next row, rows written)."""
    cap = o_kind.shape[0]
    xs = np.empty(4 * top_n + 8, np.int64)
    ss = np.empty(4 * top_n + 8, np.int64)
    o = 0
    n = ev_type.shape[0]
    for i in range(start, n):
        need = 1
        if state_of[i] >= 0:
            need += 4 * top_n + engine.side_count(meta, 0) + engine.side_count(meta, 1)
        if o + need > cap:
            return i, o
        e = ev_type[i]
        if e == engine.TRADE:
            o_kind[o], o_t[o], o_r[o] = TRADE, t[i], r[i]
            o_side[o] = BUY if is_bid[i] else SELL
            o_price[o], o_qty[o], o_id[o] = price[i], size[i], trade_id[i]
            o += 1
            counts[0] += 1
        elif e == engine.DELTA:
            s = 0 if is_bid[i] else 1
            x = price[i] if is_bid[i] else -price[i]
            engine.side_set(qty, bits, meta, ovp, ovs, s, x, size[i])
            o_kind[o], o_t[o], o_r[o] = DEPTH, t[i], r[i]
            o_side[o] = BUY if is_bid[i] else SELL
            o_price[o], o_qty[o], o_id[o] = price[i], size[i], 0
            o += 1
            counts[1] += 1
            fstate[1] = 0
        else:
            fstate[0] = 1
        k = state_of[i]
        if k >= 0:
            counts[5] += 1
            if _differs(qty, bits, meta, ovp, ovs, bp[k], bs[k], top_n, xs, ss):
                before = o
                o, xs, ss = _correct(
                    qty, bits, meta, ovp, ovs, bp[k], bs[k], top_n, fstate[0] == 1 and fstate[1] == 0,
                    t[i], r[i], xs, ss, o_kind, o_t, o_r, o_side, o_price, o_qty, o_id, o, counts,
                )  # fmt: skip
                if o > before:
                    fstate[1] = 1 if o_kind[o - 1] == SNAPSHOT_ROW else 0
            fstate[0] = 0
    return n, o


def _book_levels(table: pa.Table, top_n: int) -> tuple[np.ndarray, np.ndarray]:
    p = np.zeros((len(table), 2 * top_n), np.int64)
    s = np.zeros((len(table), 2 * top_n), np.int64)
    for j, (side, i) in enumerate((side, i) for side in ("bid", "ask") for i in range(top_n)):
        p[:, j] = _i64(table.column(f"{side}_{i}_price"))
        s[:, j] = _i64(table.column(f"{side}_{i}_size"))
    return p, s


def book_top_n(book: Path) -> int:
    names = pq.read_schema(book).names
    return sum(1 for n in names if n.startswith("bid_") and n.endswith("_price") and n[4:-6].isdigit())


class Feed:
    """The feed of consecutive days, batch by batch; one mirror across days (a consumer replays them in one go)."""

    def __init__(self, batch_rows: int = 262_144, book_batch_rows: int = 8_192) -> None:
        """``book_batch_rows``: book states read at a time. A state is ``4 * top_n + 1`` columns wide and a batch
        of events needs few (about 7,000 of 262,144 events on a simulated BTCUSDT day): book batches as large as
        the event batches held about 86 MB each (two at a batch edge), as much as the whole book of a short day,
        so memory grew with the day's length up to that size."""
        self.batch_rows = batch_rows
        self.book_batch_rows = book_batch_rows
        self._book = engine.new_book()
        self._fstate = np.zeros(2, np.int64)
        self._counts = np.zeros(6, np.int64)

    @property
    def counts(self) -> FeedCounts:
        c = self._counts
        return FeedCounts(int(c[0]), int(c[1]), int(c[2]), int(c[3]), int(c[4]), int(c[5]))

    def day(self, events: Path, book: Path) -> Iterator[FeedBatch]:
        """Feed rows of one day's (events, book) files, streaming: memory is a batch and its book states."""
        top_n = book_top_n(book)
        names = [
            f"{side}_{i}_{w}" for side in ("bid", "ask") for i in range(top_n) for w in ("price", "size")
        ]
        book_it = storage.streaming_parquet(book).iter_batches(
            batch_size=self.book_batch_rows, columns=["event_index", *names]
        )
        pending: pa.Table | None = None  # book states read past the previous batch
        offset = 0
        for eb in storage.streaming_parquet(events).iter_batches(
            batch_size=self.batch_rows, columns=_EVENT_COLUMNS
        ):
            n = len(eb)
            hi = offset + n
            parts = [] if pending is None else [pending]
            while True:  # book states up to this batch's last event
                last = parts[-1].column("event_index")[-1].as_py() if parts and len(parts[-1]) else -1
                if last >= hi - 1:
                    break
                b = next(book_it, None)
                if b is None:
                    break
                parts.append(pa.Table.from_batches([b]))
            states = pa.concat_tables(parts) if parts else None
            state_of = np.full(n, -1, np.int64)
            bp = bs = np.zeros((0, 2 * top_n), np.int64)
            if states is not None and len(states):
                idx = _i64(states.column("event_index"))
                inside = int(np.searchsorted(idx, hi, "left"))
                cur, pending = states.slice(0, inside), states.slice(inside)
                if len(cur):
                    state_of[idx[:inside] - offset] = np.arange(inside)  # the last state of a row wins
                    bp, bs = _book_levels(cur, top_n)
            cols = {c: eb.column(c) for c in _EVENT_COLUMNS}
            args = (
                _i64(cols["event_type"]).astype(np.int8),
                _i64(cols["origin_time"]),
                _i64(cols["received_time"]),
                np.ascontiguousarray(pc.fill_null(cols["side_is_bid"], False).to_numpy(zero_copy_only=False)),
                _i64(cols["price"]),
                _i64(cols["size"]),
                _i64(cols["trade_id"]),
                state_of,
                bp,
                bs,
                top_n,
            )
            start = 0
            cap = n + 8 * top_n + 1024
            while start < n:
                out = [np.empty(cap, d) for d in (np.int8, np.int64, np.int64, np.int8, np.int64, np.int64)]
                out.append(np.zeros(cap, np.int64))
                start, m = feed_rows(*args, start, *self._book, self._fstate, self._counts, *out)
                if m == 0 and start < n:
                    cap *= 2  # one state needs more room than the buffer: a very deep mirror
                    continue
                yield FeedBatch(*(a[:m] for a in out), events_read=n if start >= n else 0)
            offset = hi
