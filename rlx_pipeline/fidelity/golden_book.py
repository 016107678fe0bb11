"""The golden order book: Binance's REST snapshot + depth diffs replayed by Binance's own rules, streaming.

Rules (the venue's ``DepthRules``, from the partition's symbol: spot; USD-M in brackets): diffs that arrive while
there is no book are buffered; a snapshot seeds the book and the buffered diffs are replayed through it: diffs with
``u <= lastUpdateId`` [``u < lastUpdateId``] are dropped, the first applied one
must bridge ``U <= lastUpdateId + 1 <= u`` [``U <= lastUpdateId <= u``], every later one must continue
``U == prev_u + 1`` [``pu == prev_u``]. A break invalidates the book until the next snapshot bridges again.
A snapshot that arrives while the book is valid and already past it is not needed and is ignored (counted).
A snapshot goes before the depth messages received after it (same capture ns: the snapshot first).

This module is the fidelity check's own reference, independent of ``rlx_pipeline.book`` (the engine under test):
one numba kernel, ``_replay``, runs the rules over the depth table's columns batch by batch (fixed-point int64
prices and sizes, no Python object per message or level) and writes the top N after every applied message into
arrays (``GoldenStates``). Each book side is a sorted array of keys (the price for bids, ``-price`` for asks) with
the best level last: most updates touch levels near the top, so an insert or a delete shifts only the few slots
above it; a level the book lacks (a REST snapshot holds up to 5,000) costs a binary search.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numba import njit

from rlx_pipeline import storage, venues

BUFFER_MAX = 50_000  # diffs kept while waiting for a snapshot (Binance: buffer until the snapshot arrives)
BATCH_ROWS = 1 << 16  # depth rows read per batch

# A message (diff or snapshot) is a row of an int64 array: these columns; LO/HI bound its rows in the levels array.
CAP, EV, FIRST, FINAL, PU, HAS_PU, LO, HI = range(8)
N_MSG = 8
# A level is a row of an int64 array: SIDE 1 bid, 0 ask, -1 no level (a diff without levels is one null row).
SIDE, PRICE, SIZE = range(3)
# The replay's state between batches (``_ST_*`` indices of an int64 array).
(_ST_VALID, _ST_PREV_U, _ST_HAS_PENDING, _ST_PENDING, _ST_SNAP, _ST_NB, _ST_NA, _ST_BUF_HEAD, _ST_BUF_TAIL,
 _ST_NOUT, _ST_NSPAN) = range(11)  # fmt: skip
_N_ST = 11
# Span events: a gap opens an invalid span (event ns, the last valid u); a bridge closes the open one (event ns, u).
_GAP, _BRIDGE = 0, 1


@dataclass
class GoldenState:
    """The golden book right after the depth message with final update id ``u``, top N a side, best first."""

    u: int
    event_ns: int
    capture_ns: int
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]


@dataclass
class ReplayStats:
    messages: int = 0
    applied: int = 0
    dropped_before_snapshot: int = 0  # u <= lastUpdateId
    snapshots: int = 0
    snapshots_ignored: int = 0  # the book was valid and already past them
    unbridged: int = 0  # a snapshot that no diff bridged
    gaps: int = 0  # U != prev_u + 1 while valid
    stale: int = 0  # u <= prev_u while valid (a duplicate, e.g. from an overlapping connection): dropped
    buffered: int = 0  # held while there was no valid book (replayed at the next snapshot)
    invalid_messages: int = 0  # replayed after a snapshot that did not bridge them: no valid book, skipped
    buffer_overflow: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# the kernel's counters, in ``ReplayStats``' field order
(_MESSAGES, _APPLIED, _DROPPED, _SNAPSHOTS, _SNAPSHOTS_IGNORED, _UNBRIDGED, _GAPS, _STALE, _BUFFERED, _INVALID,
 _OVERFLOW) = range(11)  # fmt: skip
_N_STATS = len(fields(ReplayStats))


@dataclass
class GoldenStates:
    """Consecutive golden states as arrays: ``u``, ``event_ns``, ``capture_ns``, the levels a side has (``nb``,
    ``na``, at most N) and ``levels`` (one row a state: bid 0 price, bid 0 size, ... bid N-1 size, then the asks
    alike, best first, 0 past a side's levels: the reconstruction's column order)."""

    u: np.ndarray
    event_ns: np.ndarray
    capture_ns: np.ndarray
    nb: np.ndarray
    na: np.ndarray
    levels: np.ndarray

    def __len__(self) -> int:
        return len(self.u)

    def __getitem__(self, i: int) -> GoldenState:
        n, lv = self.levels.shape[1] // 4, self.levels[i].tolist()
        nb, na = int(self.nb[i]), int(self.na[i])
        return GoldenState(
            int(self.u[i]),
            int(self.event_ns[i]),
            int(self.capture_ns[i]),
            list(zip(lv[0 : 2 * nb : 2], lv[1 : 2 * nb : 2], strict=True)),
            list(zip(lv[2 * n : 2 * (n + na) : 2], lv[2 * n + 1 : 2 * (n + na) : 2], strict=True)),
        )

    def __iter__(self) -> Iterator[GoldenState]:
        return (self[i] for i in range(len(self)))

    def take(self, lo: int, hi: int) -> GoldenStates:
        return GoldenStates(*(a[lo:hi] for a in self._arrays()))

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return self.u, self.event_ns, self.capture_ns, self.nb, self.na, self.levels

    @staticmethod
    def concat(parts: list[GoldenStates]) -> GoldenStates:
        return GoldenStates(*(np.concatenate(a) for a in zip(*(p._arrays() for p in parts), strict=True)))


# --- the kernel ---------------------------------------------------------------------------------------------


@njit(cache=True)
def _set_level(keys, sizes, st, s, key, size):
    """Side ``s``'s level ``key`` to ``size`` (0 deletes it); keys ascending, best last."""
    n = st[_ST_NB + s]
    i = np.searchsorted(keys[s, :n], key)
    if i < n and keys[s, i] == key:
        if size != 0:
            sizes[s, i] = size
        else:
            for j in range(i, n - 1):
                keys[s, j], sizes[s, j] = keys[s, j + 1], sizes[s, j + 1]
            st[_ST_NB + s] = n - 1
    elif size != 0:
        for j in range(n, i, -1):
            keys[s, j], sizes[s, j] = keys[s, j - 1], sizes[s, j - 1]
        keys[s, i] = key
        sizes[s, i] = size
        st[_ST_NB + s] = n + 1


@njit(cache=True)
def _buffer(msg, lv, i, st, stats, buf, buf_lv):
    """Message ``i`` of ``msg``/``lv`` appended to the buffer (its levels copied), the oldest dropped past
    ``BUFFER_MAX``. The buffer is ``buf[head:tail]``, its levels contiguous from ``buf[head, LO]``; it is moved back
    to the start when the arrays are full (their size, set by the caller, leaves room for that)."""
    stats[_BUFFERED] += 1
    head, tail = st[_ST_BUF_HEAD], st[_ST_BUF_TAIL]
    lo, hi = msg[i, LO], msg[i, HI]
    l_tail = buf[tail - 1, HI] if tail else 0  # levels in message order, also past a replay's old buffer
    if tail == buf.shape[0] or l_tail + hi - lo > buf_lv.shape[0]:
        head, tail, l_tail = _compact(st, buf, buf_lv)
    buf[tail] = msg[i]
    buf[tail, LO], buf[tail, HI] = l_tail, l_tail + hi - lo
    buf_lv[l_tail : l_tail + hi - lo] = lv[lo:hi]
    tail += 1
    if tail - head > BUFFER_MAX:
        head += 1
        stats[_OVERFLOW] += 1
    st[_ST_BUF_HEAD], st[_ST_BUF_TAIL] = head, tail


@njit(cache=True)
def _compact(st, buf, buf_lv):
    head, tail = st[_ST_BUF_HEAD], st[_ST_BUF_TAIL]
    if tail == head:
        st[_ST_BUF_HEAD] = st[_ST_BUF_TAIL] = 0
        return 0, 0, 0
    l_head, l_tail = buf[head, LO], buf[tail - 1, HI]
    buf_lv[: l_tail - l_head] = buf_lv[l_head:l_tail].copy()
    buf[: tail - head] = buf[head:tail].copy()
    buf[: tail - head, LO] -= l_head
    buf[: tail - head, HI] -= l_head
    st[_ST_BUF_HEAD], st[_ST_BUF_TAIL] = 0, tail - head
    return 0, tail - head, l_tail - l_head


@njit(cache=True)
def _diff(msg, lv, i, replay, pu_chain, st, stats, keys, sizes, buf, buf_lv, out, out_lv, spans):
    """Message ``i`` of ``msg``/``lv`` by the rules (``replay``: from the buffer, at a snapshot)."""
    first, u = msg[i, FIRST], msg[i, FINAL]
    if st[_ST_HAS_PENDING]:
        pending = st[_ST_PENDING]
        if (u < pending) if pu_chain else (u <= pending):
            stats[_DROPPED] += 1
            return
        st[_ST_HAS_PENDING] = 0
        if not ((first <= pending <= u) if pu_chain else (first <= pending + 1 <= u)):
            stats[_UNBRIDGED] += 1
            _buffer(msg, lv, i, st, stats, buf, buf_lv)
            return
        st[_ST_VALID] = 1
        k = st[_ST_NSPAN]
        spans[k, 0], spans[k, 1], spans[k, 2] = _BRIDGE, msg[i, EV], u
        st[_ST_NSPAN] = k + 1
    elif st[_ST_VALID]:
        prev_u = st[_ST_PREV_U]
        if u <= prev_u:
            stats[_STALE] += 1
            return
        if not ((msg[i, HAS_PU] == 1 and msg[i, PU] == prev_u) if pu_chain else first == prev_u + 1):
            stats[_GAPS] += 1
            st[_ST_VALID] = 0
            k = st[_ST_NSPAN]
            spans[k, 0], spans[k, 1], spans[k, 2] = _GAP, msg[i, EV], prev_u
            st[_ST_NSPAN] = k + 1
            _buffer(msg, lv, i, st, stats, buf, buf_lv)
            return
    else:
        if not replay:
            _buffer(msg, lv, i, st, stats, buf, buf_lv)
        else:
            stats[_INVALID] += 1
        return
    st[_ST_PREV_U] = u
    for r in range(msg[i, LO], msg[i, HI]):
        side = lv[r, SIDE]
        if side == 1:
            _set_level(keys, sizes, st, 0, lv[r, PRICE], lv[r, SIZE])
        elif side == 0:
            _set_level(keys, sizes, st, 1, -lv[r, PRICE], lv[r, SIZE])
    stats[_APPLIED] += 1
    k = st[_ST_NOUT]
    out[k, 0], out[k, 1], out[k, 2] = u, msg[i, EV], msg[i, CAP]
    top_n = out_lv.shape[1] // 4
    for s in range(2):
        n = st[_ST_NB + s]
        m = min(n, top_n)
        out[k, 3 + s] = m
        sign = 1 if s == 0 else -1
        base = 2 * top_n * s
        for j in range(m):
            out_lv[k, base + 2 * j] = sign * keys[s, n - 1 - j]
            out_lv[k, base + 2 * j + 1] = sizes[s, n - 1 - j]
        for j in range(m, top_n):
            out_lv[k, base + 2 * j] = 0
            out_lv[k, base + 2 * j + 1] = 0
    st[_ST_NOUT] = k + 1


@njit(cache=True)
def _snapshot(snap, snap_lv, i, pu_chain, st, stats, keys, sizes, buf, buf_lv, out, out_lv, spans):
    stats[_SNAPSHOTS] += 1
    if st[_ST_VALID] and snap[i, FINAL] <= st[_ST_PREV_U]:
        stats[_SNAPSHOTS_IGNORED] += 1
        return
    st[_ST_NB] = st[_ST_NA] = 0
    for r in range(snap[i, LO], snap[i, HI]):
        if snap_lv[r, SIZE] != 0:  # a level listed twice: the last one holds
            if snap_lv[r, SIDE] == 1:
                _set_level(keys, sizes, st, 0, snap_lv[r, PRICE], snap_lv[r, SIZE])
            else:
                _set_level(keys, sizes, st, 1, -snap_lv[r, PRICE], snap_lv[r, SIZE])
    st[_ST_PENDING], st[_ST_HAS_PENDING], st[_ST_VALID] = snap[i, FINAL], 1, 0
    # the buffered diffs replayed; those that fail again go to a new buffer after them in the same arrays
    head, tail, _ = _compact(st, buf, buf_lv)
    st[_ST_BUF_HEAD] = tail
    for j in range(head, tail):
        _diff(buf, buf_lv, j, True, pu_chain, st, stats, keys, sizes, buf, buf_lv, out, out_lv, spans)


@njit(cache=True)
def _replay(
    msg, lv, snap, snap_lv, finish, pu_chain, st, stats, keys, sizes, buf, buf_lv, out, out_lv, spans
):
    """The diffs ``msg`` (whole messages, in capture order), each after the snapshots received before it; with
    ``finish``, the snapshots left after them. States go to ``out`` (u, event ns, capture ns, nb, na) and
    ``out_lv``, span events to ``spans``: the caller sizes them for every message and every buffered one."""
    ns = snap.shape[0]
    for i in range(msg.shape[0]):
        while st[_ST_SNAP] < ns and snap[st[_ST_SNAP], CAP] <= msg[i, CAP]:
            _snapshot(
                snap, snap_lv, st[_ST_SNAP], pu_chain, st, stats, keys, sizes, buf, buf_lv, out, out_lv, spans
            )
            st[_ST_SNAP] += 1
        stats[_MESSAGES] += 1
        _diff(msg, lv, i, False, pu_chain, st, stats, keys, sizes, buf, buf_lv, out, out_lv, spans)
    while finish and st[_ST_SNAP] < ns:
        _snapshot(
            snap, snap_lv, st[_ST_SNAP], pu_chain, st, stats, keys, sizes, buf, buf_lv, out, out_lv, spans
        )
        st[_ST_SNAP] += 1


# --- the tables as kernel arrays ----------------------------------------------------------------------------


def _level_rows(side: pa.Array, price: pa.Array, size: pa.Array) -> np.ndarray:
    out = np.empty((len(side), 3), np.int64)
    out[:, SIDE] = pc.fill_null(pc.cast(side, pa.int64()), -1).to_numpy()
    out[:, PRICE] = pc.fill_null(price, 0).to_numpy()
    out[:, SIZE] = pc.fill_null(size, 0).to_numpy()
    return out


def read_snapshots(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every snapshot of the golden ``snapshots`` table (small: a few per day) as (messages, levels): one per
    (capture ns, line, lastUpdateId), in capture order, its levels in table order."""
    if not path.is_file():
        return np.zeros((0, N_MSG), np.int64), np.zeros((0, 3), np.int64)
    t = pq.read_table(
        path, columns=["capture_ns", "line_no", "last_update_id", "side_is_bid", "price", "size"]
    )
    keys = zip(*(t.column(c).to_pylist() for c in ("capture_ns", "line_no", "last_update_id")), strict=True)
    group: dict[tuple[int, int, int], int] = {}
    gid = np.array([group.setdefault(k, len(group)) for k in keys], np.int64)  # in order of first appearance
    firsts = list(group)
    order = sorted(range(len(firsts)), key=lambda g: firsts[g][:2])  # stable: the same (ns, line) keeps it
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    rows = np.argsort(rank[gid], kind="stable")
    lv = _level_rows(t.column("side_is_bid"), t.column("price"), t.column("size"))[rows]
    lv[:, SIDE] = lv[:, SIDE] == 1  # a snapshot level's side: a bid or else an ask
    counts = np.bincount(rank[gid], minlength=len(order))
    snap = np.zeros((len(order), N_MSG), np.int64)
    snap[:, HI] = np.cumsum(counts)
    snap[:, LO] = snap[:, HI] - counts
    for j, g in enumerate(order):
        snap[j, CAP], _, snap[j, FINAL] = firsts[g]
    return snap, lv


def _value_codes(col: pa.DictionaryArray) -> np.ndarray:
    """A code per row, equal where the values are (the first index of each distinct dictionary value; -1: null)."""
    seen: dict[str | None, int] = {}
    first = np.array([seen.setdefault(v, i) for i, v in enumerate(col.dictionary.to_pylist())], np.int64)
    idx = pc.fill_null(col.indices, -1).to_numpy().astype(np.int64)
    return np.where(idx >= 0, first[idx], -1)


_DEPTH_COLUMNS = ["capture_ns", "source_file", "line_no", "event_time", "first_update_id", "final_update_id",
                  "prev_final_update_id", "side_is_bid", "price", "size"]  # fmt: skip


def iter_depth_batches(path: Path, batch_rows: int = BATCH_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The golden ``depth`` table (one row per level, in capture order) as whole messages, batch by batch:
    (messages, levels) arrays. A message is a run of rows with the same (source file, line, ``u``), found with
    Arrow compute; the one a batch ends with waits for the next batch (it may go on there)."""
    if not path.is_file():
        return
    key = None  # (source file, line, u) of the last row read
    carry_msg = np.zeros((0, N_MSG), np.int64)  # the message the last batch ended with, and its levels
    carry_lv = np.zeros((0, 3), np.int64)
    depth = storage.streaming_parquet(path, ["source_file"])  # a few files a day: not a string per row
    for batch in depth.iter_batches(batch_size=batch_rows, columns=_DEPTH_COLUMNS):
        n = batch.num_rows
        if not n:
            continue
        src, line, u = batch.column(1), batch.column(2).to_numpy(), batch.column(5).to_numpy()
        codes = _value_codes(src)
        change = np.zeros(n, dtype=bool)
        change[1:] = (codes[1:] != codes[:-1]) | (line[1:] != line[:-1]) | (u[1:] != u[:-1])
        change[0] = (src[0].as_py(), int(line[0]), int(u[0])) != key
        key = (src[n - 1].as_py(), int(line[n - 1]), int(u[n - 1]))
        starts = np.flatnonzero(change)
        lv = _level_rows(batch.column(7), batch.column(8), batch.column(9))
        first = int(starts[0]) if len(starts) else n
        carry_lv = np.concatenate([carry_lv, lv[:first]])
        if not len(starts):
            continue
        msg = np.zeros((len(starts), N_MSG), np.int64)
        msg[:, CAP] = batch.column(0).to_numpy()[starts]
        msg[:, EV] = batch.column(3).cast(pa.int64()).to_numpy()[starts]
        msg[:, FIRST] = batch.column(4).to_numpy()[starts]
        msg[:, FINAL] = u[starts]
        pu = batch.column(6)
        msg[:, PU] = pc.fill_null(pu, 0).to_numpy()[starts]
        msg[:, HAS_PU] = pu.is_valid().to_numpy(zero_copy_only=False)[starts]
        ends = np.append(starts[1:], n)
        msg[:, LO], msg[:, HI] = starts - first + len(carry_lv), ends - first + len(carry_lv)
        if len(carry_msg):  # the previous batch's last message is whole now
            carry_msg[0, HI] = len(carry_lv)
            yield (
                np.concatenate([carry_msg, msg[:-1]]),
                np.concatenate([carry_lv, lv[first : starts[-1]]]),
            )
        elif len(msg) > 1:
            yield msg[:-1], lv[first : starts[-1]]
        carry_msg = msg[-1:].copy()
        carry_msg[0, LO] = 0
        carry_lv = lv[starts[-1] :]
    if len(carry_msg):
        carry_msg[0, HI] = len(carry_lv)
        yield carry_msg, carry_lv


def _room(a: np.ndarray, rows: int) -> np.ndarray:
    """``a`` with at least ``rows`` rows (doubled, its rows kept)."""
    if a.shape[0] >= rows:
        return a
    out = np.zeros((max(rows, 2 * a.shape[0]), *a.shape[1:]), a.dtype)
    out[: a.shape[0]] = a
    return out


@dataclass
class GoldenBook:
    """Replays a day's golden depth; ``chunks()`` yields the book after every validly applied message."""

    snapshots_path: Path
    depth_path: Path
    top_n: int
    rules: venues.DepthRules = venues.SPOT_RULES
    batch_rows: int = BATCH_ROWS
    stats: ReplayStats = field(init=False, default_factory=ReplayStats)
    # spans with no valid golden book after a gap (event times, ns; end None: never bridged again)
    invalid_spans: list[dict] = field(init=False, default_factory=list)

    def _batches(self) -> Iterator[GoldenStates]:
        snap, snap_lv = read_snapshots(self.snapshots_path)
        most_snap = int(np.diff(snap[:, [LO, HI]]).max()) if len(snap) else 0
        st, stats = np.zeros(_N_ST, np.int64), np.zeros(_N_STATS, np.int64)
        keys, sizes = np.zeros((2, 1024), np.int64), np.zeros((2, 1024), np.int64)
        buf, buf_lv = np.zeros((64, N_MSG), np.int64), np.zeros((64, 3), np.int64)
        batches = iter_depth_batches(self.depth_path, self.batch_rows)
        empty = (np.zeros((0, N_MSG), np.int64), np.zeros((0, 3), np.int64))
        msg, lv = next(batches, empty)
        while True:
            nxt = next(batches, None)
            live = st[_ST_BUF_TAIL] - st[_ST_BUF_HEAD]
            live_lv = int(buf[st[_ST_BUF_TAIL] - 1, HI] - buf[st[_ST_BUF_HEAD], LO]) if live else 0
            # room for every case: each level applied adds at most one to a side, a snapshot resets it; the
            # buffer's arrays twice what it may hold (a snapshot's replay writes the new buffer after the old)
            grow = max(int(st[_ST_NB : _ST_NA + 1].max()), most_snap) + len(lv) + live_lv
            if keys.shape[1] < grow:
                keys, sizes = (
                    np.concatenate([a, np.zeros((2, grow + a.shape[1]), np.int64)], 1) for a in (keys, sizes)
                )
            buf = _room(buf, 2 * (live + len(msg)) + 2)
            buf_lv = _room(buf_lv, 2 * (live_lv + len(lv)) + 2)
            rows = len(msg) + live + 1
            out, out_lv = np.empty((rows, 5), np.int64), np.empty((rows, 4 * self.top_n), np.int64)
            # span events: one a diff, again for a buffered one replayed
            spans = np.empty((2 * rows + len(snap), 3), np.int64)
            st[_ST_NOUT] = st[_ST_NSPAN] = 0
            _replay(msg, lv, snap, snap_lv, nxt is None, self.rules.pu_chain, st, stats, keys, sizes, buf, buf_lv,
                    out, out_lv, spans)  # fmt: skip
            self.stats = ReplayStats(*stats.tolist())
            for kind, ns, uid in spans[: st[_ST_NSPAN]].tolist():
                if kind == _GAP:
                    self.invalid_spans.append(
                        {"start_ns": ns, "after_update_id": uid, "end_ns": None, "resumed_at": None}
                    )
                elif self.invalid_spans and self.invalid_spans[-1]["end_ns"] is None:
                    self.invalid_spans[-1].update(end_ns=ns, resumed_at=uid)
            k = int(st[_ST_NOUT])
            if k:
                o = out[:k]
                yield GoldenStates(o[:, 0], o[:, 1], o[:, 2], o[:, 3], o[:, 4], out_lv[:k])
            if nxt is None:
                return
            msg, lv = nxt

    def chunks(self, size: int = 1 << 16) -> Iterator[GoldenStates]:
        """The states in chunks of exactly ``size`` (the last one shorter)."""
        parts: list[GoldenStates] = []
        held = 0
        for b in self._batches():
            lo = 0
            while held + len(b) - lo >= size:
                parts.append(b.take(lo, lo + size - held))
                lo += size - held
                yield GoldenStates.concat(parts) if len(parts) > 1 else parts[0]
                parts, held = [], 0
            if lo < len(b):
                parts.append(b.take(lo, len(b)))
                held += len(b) - lo
        if held:
            yield GoldenStates.concat(parts) if len(parts) > 1 else parts[0]

    def states(self) -> Iterator[GoldenState]:
        """The states one by one (a notebook's view; ``chunks`` is the fast path)."""
        for c in self.chunks():
            yield from c
