"""Order book kernels (numba): sorted price arrays per side, integer fixed-point prices and sizes.

Bids are kept ascending and asks descending, so the best level is the LAST element of each side: a level update
is a binary search plus a shift of the levels better than it, O(log n + distance from the top), which for market
data (almost every update near the top of a book of a few thousand levels) is a handful of cache lines.

Plain-Python wrappers (``Book``) keep the kernels usable from a notebook; ``merge_events`` (three sorted sources
into unified order) and ``replay`` (the book through them, publishing top-N states) are the kernels
``rlx_pipeline.book.unified`` runs per time chunk.
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
    """Index of ``price`` or of where it would be inserted (the count of levels before it in the side's order).

    Galloping from the best end (index n - 1) first: updates crowd near the top of the book, so the range is
    found in a few probes, then binary search inside it; an update k levels deep costs O(log k)."""
    lo, hi, d = 0, n, 1
    while d <= n:
        j = n - d
        p = prices[j]
        if (p < price) if ascending else (p > price):
            lo = j + 1
            break
        hi = j
        d <<= 1
    while lo < hi:
        mid = (lo + hi) >> 1
        p = prices[mid]
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
def merge_events(
    s_t,
    s_r,
    s_seq,  # snapshots, each source sorted by (time, key)
    d_t,
    d_r,
    d_seq,
    d_bid,
    d_price,
    d_size,  # deltas
    x_t,
    x_r,
    x_id,
    x_buy,
    x_price,
    x_qty,  # trades
    o_t,
    o_r,
    o_ev,
    o_seq,
    o_bid,
    o_price,
    o_size,
    o_tid,
    o_snap,  # merged, len = sum of the three
):
    """Three sorted sources into unified order: time, then snapshot < delta < trade, then each source's own
    order (sequence number or trade id, then row). One pass, no sort."""
    ns, nd, nx = s_t.shape[0], d_t.shape[0], x_t.shape[0]
    i = j = k = 0
    for r in range(ns + nd + nx):
        src = -1  # strict < on time: at equal times the earlier source (snapshot, delta, trade) wins
        best = 0
        if i < ns:
            src, best = 0, s_t[i]
        if j < nd and (src < 0 or d_t[j] < best):
            src, best = 1, d_t[j]
        if k < nx and (src < 0 or x_t[k] < best):
            src = 2
        if src == 0:
            o_t[r], o_r[r], o_ev[r], o_seq[r] = s_t[i], s_r[i], SNAPSHOT, s_seq[i]
            o_bid[r], o_price[r], o_size[r], o_tid[r], o_snap[r] = False, 0, 0, 0, i
            i += 1
        elif src == 1:
            o_t[r], o_r[r], o_ev[r], o_seq[r] = d_t[j], d_r[j], DELTA, d_seq[j]
            o_bid[r], o_price[r], o_size[r], o_tid[r], o_snap[r] = d_bid[j], d_price[j], d_size[j], 0, -1
            j += 1
        else:
            o_t[r], o_r[r], o_ev[r], o_seq[r] = x_t[k], x_r[k], TRADE, x_id[k]
            o_bid[r], o_price[r], o_size[r], o_tid[r], o_snap[r] = x_buy[k], x_price[k], x_qty[k], x_id[k], -1
            k += 1


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
def _resolve(
    snap_p, snap_s, k, k_seq, bp, bs, nb, ap, as_, na, bid_boundary, ask_boundary, stats, mismatch_seq
):
    """Compare snapshot ``k`` with the book (counted), then apply it: on a mismatch it resyncs the book; on a
    match it still adds the levels beyond the known range that the book could not know. The known range grows
    to the snapshot's. Returns (nb, na, bid_boundary, ask_boundary)."""
    levels = snap_p.shape[1] // 2
    if _snapshot_matches(snap_p, snap_s, k, bp, bs, nb, ap, as_, na, bid_boundary, ask_boundary):
        stats[ST_SNAP_MATCH] += 1
    else:
        if stats[ST_SNAP_MISMATCH] < mismatch_seq.shape[0]:
            mismatch_seq[stats[ST_SNAP_MISMATCH]] = k_seq
        stats[ST_SNAP_MISMATCH] += 1
    nb, na = _apply_snapshot(snap_p, snap_s, k, bp, bs, nb, ap, as_, na, True)
    db, da = _deepest(snap_p, k, 0, levels), _deepest(snap_p, k, levels, levels)
    if db != 0:
        bid_boundary = min(bid_boundary, db)
    if da != 0:
        ask_boundary = max(ask_boundary, da)
    return nb, na, bid_boundary, ask_boundary


@njit(cache=True)
def _publish(book_row, book_p, book_s, book_known, m, row, bp, bs, nb, ap, as_, na, top_n, bid_b, ask_b):
    """Write the book state after event ``row`` (replacing one already written for that row); returns m."""
    if m > 0 and book_row[m - 1] == row:
        m -= 1
    book_row[m] = row
    book_known[m, 0] = bid_b
    book_known[m, 1] = ask_b
    _write_top(book_p, book_s, m, bp, bs, nb, ap, as_, na, top_n)
    return m + 1


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
    out_seq,  # int64[n]: the sequence number each row carries (trades: last applied)
    out_keep,  # bool[n]: False for rows not emitted (deltas before the seed or already in the snapshot)
    book_row,  # int64[m]: the event row after which each book state holds
    book_p,  # int64[m, 2*top_n]: top-N book states (bids then asks; 0 = no level)
    book_s,
    book_known,  # int64[m, 2]: bid and ask price boundaries of the completely known book (see _side_matches)
    mismatch_seq,  # int64[k]: sequence numbers of the first k snapshots that disagreed with the book
    per_message,  # bool: a book state after each message (its last row) and each snapshot; else after every
    #               kept row, trades included
):
    """Replay events in unified order; returns the number of book states written (``m`` is enough when it
    counts the message ends and snapshots, or the rows when not ``per_message``)."""
    bp, bs = state_p[0], state_s[0]
    ap, as_ = state_p[1], state_s[1]
    nb, na, seeded, last_seq = state[0], state[1], state[2] != 0, state[3]
    pending, pending_seq, last_was_bid, seed_seq = state[4], state[5], state[6] != 0, state[7]
    bid_boundary, ask_boundary = state[8], state[9]
    levels = snap_p.shape[1] // 2
    n = ev_type.shape[0]
    m = 0
    for r in range(n):
        t = ev_type[r]
        end_of_message = True
        # A pending snapshot is compared once every delta of its sequence number has been applied; the state
        # it leaves is published at the row before (the snapshot's own row, or its sequence number's last delta).
        if pending >= 0 and (t != DELTA or seq[r] > pending_seq):
            nb, na, bid_boundary, ask_boundary = _resolve(
                snap_p, snap_s, pending, pending_seq, bp, bs, nb, ap, as_, na, bid_boundary, ask_boundary,
                stats, mismatch_seq,
            )  # fmt: skip
            pending = -1
            m = _publish(
                book_row, book_p, book_s, book_known, m, r - 1, bp, bs, nb, ap, as_, na, top_n,
                bid_boundary, ask_boundary,
            )  # fmt: skip
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
            else:
                if seq[r] >= last_seq:
                    pending = k
                    pending_seq = seq[r]
                end_of_message = False  # the book changes when the snapshot resolves, published then
            out_keep[r] = True
            out_seq[r] = seq[r]
        elif t == DELTA:
            if not seeded:
                stats[ST_UNSEEDED] += 1
                out_keep[r] = False
                out_seq[r] = seq[r]
                continue
            if seq[r] <= seed_seq:
                # At or before the seeding snapshot: already in it.
                stats[ST_STALE] += 1
                out_keep[r] = False
                out_seq[r] = seq[r]
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
            if per_message:
                continue  # a trade does not change the book: the state in force is the previous one
        if not seeded or (per_message and not end_of_message):
            continue  # mid-message: the book after the message is written at its last row
        m = _publish(
            book_row, book_p, book_s, book_known, m, r, bp, bs, nb, ap, as_, na, top_n,
            bid_boundary, ask_boundary,
        )  # fmt: skip
    if pending >= 0 and n > 0:  # the chunk ends: every delta of the snapshot's sequence number is in it
        nb, na, bid_boundary, ask_boundary = _resolve(
            snap_p, snap_s, pending, pending_seq, bp, bs, nb, ap, as_, na, bid_boundary, ask_boundary,
            stats, mismatch_seq,
        )  # fmt: skip
        pending = -1
        m = _publish(
            book_row, book_p, book_s, book_known, m, n - 1, bp, bs, nb, ap, as_, na, top_n,
            bid_boundary, ask_boundary,
        )  # fmt: skip
    state[0], state[1], state[2], state[3] = nb, na, 1 if seeded else 0, last_seq
    state[4], state[5], state[6], state[7] = pending, pending_seq, 1 if last_was_bid else 0, seed_seq
    state[8], state[9] = bid_boundary, ask_boundary
    return m


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
