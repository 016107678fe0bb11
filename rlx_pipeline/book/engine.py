"""Order book kernels (numba): sorted price arrays per side, integer fixed-point prices and sizes.

Bids are kept ascending and asks descending, so the best level is the LAST element of each side: a level update
is a binary search plus a shift of the levels better than it, O(log n + distance from the top), which for market
data (almost every update near the top of a book of a few thousand levels) is a handful of cache lines.

Plain-Python wrappers (``Book``) keep the kernels usable from a notebook; ``replay`` is the whole-day kernel used
by ``rlx_pipeline.book.unified``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

CAPACITY = 1 << 16  # levels per side; the farthest level is evicted (and counted) beyond this

# Event types of the unified stream (rlx_pipeline.schemas).
SNAPSHOT, DELTA, TRADE = 0, 1, 2

# Counters returned by ``replay`` (indices into its stats array).
ST_APPLIED, ST_UNSEEDED, ST_STALE, ST_CROSSED, ST_EVICTED, ST_SNAP_MATCH, ST_SNAP_MISMATCH, ST_SEEDS = range(
    8
)
N_STATS = 8


@njit(cache=True, inline="always")
def _find(prices, n, price, ascending):
    """Index of ``price`` or of where it would be inserted."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        p = prices[mid]
        if p == price:
            return mid
        if (p < price) if ascending else (p > price):
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def set_level(prices, sizes, n, price, size, is_bid):
    """Set one level (size 0 deletes) of a side stored best-last; returns (new n, evicted levels)."""
    i = _find(prices, n, price, is_bid)
    if i < n and prices[i] == price:
        if size > 0:
            sizes[i] = size
            return n, 0
        for j in range(i, n - 1):  # close the gap (no temporary arrays in the hot path)
            prices[j] = prices[j + 1]
            sizes[j] = sizes[j + 1]
        return n - 1, 0
    if size <= 0:
        return n, 0
    if n == prices.shape[0]:
        if i == 0:
            return n, 1  # farther than every kept level: dropped
        for j in range(i - 1):  # evict the farthest (index 0), insert at i - 1
            prices[j] = prices[j + 1]
            sizes[j] = sizes[j + 1]
        prices[i - 1] = price
        sizes[i - 1] = size
        return n, 1
    for j in range(n, i, -1):  # open a gap at i
        prices[j] = prices[j - 1]
        sizes[j] = sizes[j - 1]
    prices[i] = price
    sizes[i] = size
    return n + 1, 0


@njit(cache=True)
def _uncross(bp, bs, nb, ap, as_, na, last_is_bid):
    """Resolve a crossed book by the documented rule: the side updated last is fresh, the other side's
    crossing levels are stale and removed. Returns (nb, na, removed)."""
    removed = 0
    if last_is_bid:
        while na > 0 and nb > 0 and ap[na - 1] <= bp[nb - 1]:
            na, _ = set_level(ap, as_, na, ap[na - 1], 0, False)
            removed += 1
    else:
        while nb > 0 and na > 0 and bp[nb - 1] >= ap[na - 1]:
            nb, _ = set_level(bp, bs, nb, bp[nb - 1], 0, True)
            removed += 1
    return nb, na, removed


@njit(cache=True)
def _write_top(out_p, out_s, row, bp, bs, nb, ap, as_, na, top_n):
    for i in range(top_n):
        if i < nb:
            out_p[row, i] = bp[nb - 1 - i]
            out_s[row, i] = bs[nb - 1 - i]
        else:
            out_p[row, i] = 0
            out_s[row, i] = 0
        if i < na:
            out_p[row, top_n + i] = ap[na - 1 - i]
            out_s[row, top_n + i] = as_[na - 1 - i]
        else:
            out_p[row, top_n + i] = 0
            out_s[row, top_n + i] = 0


@njit(cache=True)
def _side_matches(snap_p, snap_s, k, off, levels, prices, sizes, n, boundary, descending):
    """One side of snapshot ``k`` against the book. Every level the book has must be in the snapshot with the same
    size; a snapshot level the book lacks is wrong inside the range the book knows completely (bids: prices >=
    boundary; asks: prices <= boundary) and unknowable beyond it (never in a snapshot, never touched by a delta)."""
    j = 0  # book index
    for i in range(levels):
        p, s = snap_p[k, off + i], snap_s[k, off + i]
        if p == 0:
            break
        b = n - 1 - j  # the book's j-th best level
        if j < n and ((prices[b] > p) if descending else (prices[b] < p)):
            return False  # the book has a level the exchange did not
        if j < n and prices[b] == p:
            if sizes[b] != s:
                return False
            j += 1
        elif (p >= boundary) if descending else (p <= boundary):
            return False  # missing inside the range the book knows completely
        # else: a level the lake data never showed (unknowable): skipped
    return True


@njit(cache=True)
def _snapshot_matches(snap_p, snap_s, k, bp, bs, nb, ap, as_, na, bid_boundary, ask_boundary):
    """Top levels of snapshot ``k`` (20 bids then 20 asks; price 0 = absent) equal the book where it is known?"""
    levels = snap_p.shape[1] // 2
    return _side_matches(snap_p, snap_s, k, 0, levels, bp, bs, nb, bid_boundary, True) and _side_matches(
        snap_p, snap_s, k, levels, levels, ap, as_, na, ask_boundary, False
    )


def _deepest(snap_p, k, off, levels):
    deepest = 0
    for i in range(levels):
        if snap_p[k, off + i] != 0:
            deepest = snap_p[k, off + i]
    return deepest


_deepest = njit(cache=True)(_deepest)


@njit(cache=True)
def _apply_snapshot(snap_p, snap_s, k, bp, bs, nb, ap, as_, na, seeded):
    """Seed (first time) or resync: the snapshot's price range is replaced, deeper levels are kept."""
    levels = snap_p.shape[1] // 2
    if not seeded:
        nb = 0
        na = 0
    # bids: drop every kept level at or above the snapshot's deepest bid, then insert the snapshot's.
    deepest = 0
    for i in range(levels):
        if snap_p[k, i] != 0:
            deepest = snap_p[k, i]
    if deepest != 0:
        while nb > 0 and bp[nb - 1] >= deepest:
            nb, _ = set_level(bp, bs, nb, bp[nb - 1], 0, True)
    deepest = 0
    for i in range(levels):
        if snap_p[k, levels + i] != 0:
            deepest = snap_p[k, levels + i]
    if deepest != 0:
        while na > 0 and ap[na - 1] <= deepest:
            na, _ = set_level(ap, as_, na, ap[na - 1], 0, False)
    for i in range(levels):
        if snap_p[k, i] != 0:
            nb, _ = set_level(bp, bs, nb, snap_p[k, i], snap_s[k, i], True)
        if snap_p[k, levels + i] != 0:
            na, _ = set_level(ap, as_, na, snap_p[k, levels + i], snap_s[k, levels + i], False)
    return nb, na


@njit(cache=True)
def replay(
    ev_type,  # int8[n]: SNAPSHOT, DELTA, TRADE, in unified order
    seq,  # int64[n]: sequence number (deltas, snapshots)
    is_bid,  # bool[n]
    price,  # int64[n]
    size,  # int64[n]
    snap_idx,  # int64[n]: row of snap_p/snap_s for SNAPSHOT events
    snap_p,  # int64[k, 2*20]
    snap_s,
    state_p,  # int64[2, CAPACITY]: book prices (bids row 0, asks row 1), carried across chunks
    state_s,
    state,  # int64[10]: nb, na, seeded, last_seq, pending snapshot (-1: none), pending_seq, last_was_bid,
    #        seed_seq, bid boundary, ask boundary
    stats,  # int64[N_STATS]
    top_n,
    out_p,  # int64[n, 2*top_n] top-N after each event (bids then asks; 0 = no level)
    out_s,
    out_seq,  # int64[n]: the sequence number each row carries (trades: last applied)
    out_keep,  # bool[n]: False for rows not emitted (deltas before the seed or already in the snapshot)
    out_valid,  # bool[n]: the book columns are meaningful (seeded)
    out_known,  # int64[n, 2]: bid and ask price boundaries of the completely known book (see _side_matches)
    mismatch_seq,  # int64[k]: sequence numbers of the first k snapshots that disagreed with the book
    per_message,  # bool: the book is written after each message (its last row) and each trade/snapshot, not
    #               after every row inside a message (those rows get out_valid False: null book columns)
):
    bp, bs = state_p[0], state_s[0]
    ap, as_ = state_p[1], state_s[1]
    nb, na, seeded, last_seq = state[0], state[1], state[2] != 0, state[3]
    pending, pending_seq, last_was_bid, seed_seq = state[4], state[5], state[6] != 0, state[7]
    bid_boundary, ask_boundary = state[8], state[9]
    levels = snap_p.shape[1] // 2
    n = ev_type.shape[0]
    for r in range(n):
        t = ev_type[r]
        end_of_message = True
        # A pending snapshot is compared once every delta of its sequence number has been applied.
        if pending >= 0 and (t != DELTA or seq[r] > pending_seq):
            if _snapshot_matches(
                snap_p, snap_s, pending, bp, bs, nb, ap, as_, na, bid_boundary, ask_boundary
            ):
                stats[ST_SNAP_MATCH] += 1
            else:
                if stats[ST_SNAP_MISMATCH] < mismatch_seq.shape[0]:
                    mismatch_seq[stats[ST_SNAP_MISMATCH]] = pending_seq
                stats[ST_SNAP_MISMATCH] += 1
            # Either way the snapshot is applied: on a mismatch it resyncs the book; on a match it still adds
            # the levels beyond the known range that the book could not know. The known range grows to it.
            nb, na = _apply_snapshot(snap_p, snap_s, pending, bp, bs, nb, ap, as_, na, True)
            db, da = _deepest(snap_p, pending, 0, levels), _deepest(snap_p, pending, levels, levels)
            if db != 0:
                bid_boundary = min(bid_boundary, db)
            if da != 0:
                ask_boundary = max(ask_boundary, da)
            pending = -1
        if t == SNAPSHOT:
            k = snap_idx[r]
            if not seeded:
                nb, na = _apply_snapshot(snap_p, snap_s, k, bp, bs, nb, ap, as_, na, False)
                bid_boundary = _deepest(snap_p, k, 0, levels)
                ask_boundary = _deepest(snap_p, k, levels, levels)
                seeded = True
                last_seq = seq[r]
                seed_seq = seq[r]
                stats[ST_SEEDS] += 1
            elif seq[r] >= last_seq:
                pending = k
                pending_seq = seq[r]
            out_keep[r] = True
            out_seq[r] = seq[r]
        elif t == DELTA:
            if not seeded:
                stats[ST_UNSEEDED] += 1
                out_keep[r] = False
                out_seq[r] = seq[r]
                out_valid[r] = False
                continue
            if seq[r] <= seed_seq:
                # At or before the seeding snapshot: already in it.
                stats[ST_STALE] += 1
                out_keep[r] = False
                out_seq[r] = seq[r]
                out_valid[r] = False
                continue
            if is_bid[r]:
                nb, ev = set_level(bp, bs, nb, price[r], size[r], True)
            else:
                na, ev = set_level(ap, as_, na, price[r], size[r], False)
            stats[ST_EVICTED] += ev
            stats[ST_APPLIED] += 1
            last_was_bid = is_bid[r]
            last_seq = seq[r] if seq[r] > last_seq else last_seq
            out_keep[r] = True
            out_seq[r] = seq[r]
            # End of message: the next row is not a delta of the same sequence number.
            end_of_message = r + 1 == n or ev_type[r + 1] != DELTA or seq[r + 1] != seq[r]
            if end_of_message and nb > 0 and na > 0 and bp[nb - 1] >= ap[na - 1]:
                stats[ST_CROSSED] += 1
                nb, na, _ = _uncross(bp, bs, nb, ap, as_, na, last_was_bid)
        else:
            out_keep[r] = True
            out_seq[r] = last_seq
        if per_message and not end_of_message:
            out_valid[r] = False  # mid-message: the book after the message is on its last row
            continue
        out_valid[r] = seeded
        out_known[r, 0] = bid_boundary
        out_known[r, 1] = ask_boundary
        _write_top(out_p, out_s, r, bp, bs, nb, ap, as_, na, top_n)
    state[0], state[1], state[2], state[3] = nb, na, 1 if seeded else 0, last_seq
    state[4], state[5], state[6], state[7] = pending, pending_seq, 1 if last_was_bid else 0, seed_seq
    state[8], state[9] = bid_boundary, ask_boundary


@njit(cache=True)
def apply_rows(is_bid, price, size, state_p, state_s, counts):
    """Apply level updates to a book (no output): the engine's raw speed. ``counts`` = [n bids, n asks, evicted]."""
    nb, na, evicted = counts[0], counts[1], counts[2]
    for r in range(is_bid.shape[0]):
        if is_bid[r]:
            nb, ev = set_level(state_p[0], state_s[0], nb, price[r], size[r], True)
        else:
            na, ev = set_level(state_p[1], state_s[1], na, price[r], size[r], False)
        evicted += ev
    counts[0], counts[1], counts[2] = nb, na, evicted


def finish(snap_p, snap_s, state_p, state_s, state, stats, mismatch_seq=None) -> None:
    """Compare a snapshot still pending at the end of the chunk."""
    if state[4] >= 0:
        ok = _snapshot_matches(
            snap_p,
            snap_s,
            state[4],
            state_p[0],
            state_s[0],
            state[0],
            state_p[1],
            state_s[1],
            state[1],
            state[8],
            state[9],
        )
        if not ok and mismatch_seq is not None and stats[ST_SNAP_MISMATCH] < len(mismatch_seq):
            mismatch_seq[stats[ST_SNAP_MISMATCH]] = state[5]
        stats[ST_SNAP_MATCH if ok else ST_SNAP_MISMATCH] += 1
        state[4] = -1


def new_state() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(state_p, state_s, state, stats) for ``replay``: an empty, unseeded book."""
    state = np.zeros(10, dtype=np.int64)
    state[4] = -1
    return (
        np.zeros((2, CAPACITY), dtype=np.int64),
        np.zeros((2, CAPACITY), dtype=np.int64),
        state,
        np.zeros(N_STATS, dtype=np.int64),
    )


class Book:
    """A plain book for notebooks and tests: ``set(is_bid, price, size)``, ``top(n)``, ``bids()``, ``asks()``."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._p = np.zeros((2, capacity), dtype=np.int64)
        self._s = np.zeros((2, capacity), dtype=np.int64)
        self._n = [0, 0]
        self.evicted = 0

    def set(self, is_bid: bool, price: int, size: int) -> None:
        side = 0 if is_bid else 1
        self._n[side], ev = set_level(self._p[side], self._s[side], self._n[side], price, size, is_bid)
        self.evicted += ev

    def bids(self) -> dict[int, int]:
        n = self._n[0]
        return dict(zip(self._p[0, :n].tolist(), self._s[0, :n].tolist(), strict=True))

    def asks(self) -> dict[int, int]:
        n = self._n[1]
        return dict(zip(self._p[1, :n].tolist(), self._s[1, :n].tolist(), strict=True))

    def top(self, n: int = 1) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        out = []
        for side in (0, 1):
            k = self._n[side]
            lo = max(0, k - n)
            out.append(
                list(zip(self._p[side, lo:k][::-1].tolist(), self._s[side, lo:k][::-1].tolist(), strict=True))
            )
        return out[0], out[1]
