"""Order book kernels (numba): a price-indexed ladder per side, integer fixed-point prices and sizes.

Each side is a ladder of ``LADDER`` price slots (one per tick: sizes indexed by price, and an occupancy bitmap to
walk to the next level) around the market, plus a small sorted overflow for levels outside that window (a bid at
a tenth of the price). A level update is O(1) whatever its depth: the slot is computed, the size written, the bit
flipped; only deleting the best level walks to the next one (a few bitmap words). The window re-centres when the
market leaves it, and the tick (the gcd of the prices seen) is learned from the data: no instrument metadata.

Asks are stored with negated prices, so both sides share one ordering (higher is better) and one code path. A
book is five arrays with a row per side (0 bids, 1 asks), ``new_book()``: ``qty`` and ``bits`` (the ladders),
``meta`` (per side: slot 0's tick index, best slot, ladder levels, tick, overflow levels, capacity), ``ovp`` and
``ovs`` (the overflow, ascending, best last). ``merge_events`` (three sorted sources into unified order) and
``replay`` (the book through them, publishing top-N states) are the kernels ``rlx_pipeline.book.unified`` runs
per time chunk; ``Book`` keeps them usable from a notebook.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros

LADDER = 1 << 20  # price slots per side (ticks): at BTC's 0.01 tick, +-5,000 USD around the market
_WORDS = LADDER >> 6
CAPACITY = 1 << 16  # levels per side; the farthest level is evicted (and counted) beyond this

# Event types of the unified stream (rlx_pipeline.schemas).
SNAPSHOT, DELTA, TRADE = 0, 1, 2

# Counters returned by ``replay`` (indices into its stats array).
# ST_SNAP_LOST / ST_CROSSED_LOST: disagreeing snapshots and crossed messages explained by a lost update id the golden
# samples named (not the engine's doing; the invalid interval flags them).
(ST_APPLIED, ST_UNSEEDED, ST_STALE, ST_CROSSED, ST_EVICTED, ST_SNAP_MATCH, ST_SNAP_MISMATCH, ST_SEEDS, ST_SNAP_LOST,
 ST_CROSSED_LOST) = range(10)  # fmt: skip
N_STATS = 10
N_STATE = 12

# Why a book state is not trusted (``book_cause``; 0: valid): a lost message named by the golden samples (from
# the loss to the next snapshot), or a later snapshot that disagreed (from the last snapshot that agreed).
CAUSE_VALID, CAUSE_LOST_UPDATE_ID, CAUSE_SNAPSHOT_DISAGREED = 0, 1, 2

M_BASE, M_BEST, M_COUNT, M_TICK, M_OVN, M_CAP = range(6)  # meta columns
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_ONE = np.uint64(1)


def new_book(capacity: int = CAPACITY) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(qty, bits, meta, ovp, ovs): an empty book."""
    meta = np.zeros((2, 8), np.int64)
    meta[:, M_BEST] = -1
    meta[:, M_CAP] = capacity
    return (
        np.zeros((2, LADDER), np.int64),
        np.zeros((2, _WORDS), np.uint64),
        meta,
        np.zeros((2, capacity), np.int64),
        np.zeros((2, capacity), np.int64),
    )


@njit(cache=True, inline="always")
def _below(bits, s, k):
    """Highest occupied slot < k on side s, or -1."""
    if k <= 0:
        return -1
    w = (k - 1) >> 6
    word = bits[s, w] & (_ALL >> np.uint64(63 - ((k - 1) & 63)))
    while True:
        if word != 0:
            return (w << 6) + 63 - np.int64(leading_zeros(word))
        w -= 1
        if w < 0:
            return -1
        word = bits[s, w]


@njit(cache=True, inline="always")
def _above(bits, s, k):
    """Lowest occupied slot > k on side s, or -1."""
    k += 1
    if k >= LADDER:
        return -1
    w = k >> 6
    word = bits[s, w] & (_ALL << np.uint64(k & 63))
    while True:
        if word != 0:
            return (w << 6) + np.int64(trailing_zeros(word))
        w += 1
        if w >= _WORDS:
            return -1
        word = bits[s, w]


@njit(cache=True, inline="always")
def _ov_find(ovp, s, n, x):
    """Insertion index of x in the ascending overflow of side s."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if ovp[s, mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _ov_set(ovp, ovs, s, n, x, size):
    """Set a level in the sorted overflow (size 0 deletes); returns the new count."""
    i = _ov_find(ovp, s, n, x)
    if i < n and ovp[s, i] == x:
        if size > 0:
            ovs[s, i] = size
            return n
        for j in range(i, n - 1):
            ovp[s, j] = ovp[s, j + 1]
            ovs[s, j] = ovs[s, j + 1]
        return n - 1
    if size <= 0:
        return n
    for j in range(n, i, -1):
        ovp[s, j] = ovp[s, j - 1]
        ovs[s, j] = ovs[s, j - 1]
    ovp[s, i] = x
    ovs[s, i] = size
    return n + 1


@njit(cache=True)
def side_best(qty, bits, meta, ovp, ovs, s):
    """(has a level, best internal price, its size) of side s."""
    has, bx, bsz = False, 0, 0
    c = meta[s, M_BEST]
    if c >= 0:
        has, bx, bsz = True, (meta[s, M_BASE] + c) * meta[s, M_TICK], qty[s, c]
    n = meta[s, M_OVN]
    if n > 0 and (not has or ovp[s, n - 1] > bx):
        has, bx, bsz = True, ovp[s, n - 1], ovs[s, n - 1]
    return has, bx, bsz


@njit(cache=True)
def side_levels(qty, bits, meta, ovp, ovs, s, k, out_x, out_s):
    """The best ``k`` levels of side s (internal prices, best first) into out_x/out_s; returns how many."""
    c = meta[s, M_BEST]
    j = meta[s, M_OVN] - 1
    base, tick = meta[s, M_BASE], meta[s, M_TICK]
    i = 0
    while i < k:
        lx = (base + c) * tick if c >= 0 else 0
        if c >= 0 and (j < 0 or lx > ovp[s, j]):
            out_x[i] = lx
            out_s[i] = qty[s, c]
            c = _below(bits, s, c)
        elif j >= 0:
            out_x[i] = ovp[s, j]
            out_s[i] = ovs[s, j]
            j -= 1
        else:
            break
        i += 1
    return i


@njit(cache=True, inline="always")
def _lad_clear(qty, bits, meta, s, k):
    qty[s, k] = 0
    bits[s, k >> 6] &= ~(_ONE << np.uint64(k & 63))
    meta[s, M_COUNT] -= 1
    if k == meta[s, M_BEST]:
        meta[s, M_BEST] = _below(bits, s, k)


@njit(cache=True)
def _put(qty, bits, meta, ovp, ovs, s, x, size):
    """Insert a level known to be absent (rebuilds), without capacity checks."""
    tick = meta[s, M_TICK]
    k = x // tick - meta[s, M_BASE]
    if x % tick == 0 and 0 <= k < LADDER:
        qty[s, k] = size
        bits[s, k >> 6] |= _ONE << np.uint64(k & 63)
        meta[s, M_COUNT] += 1
        if k > meta[s, M_BEST]:
            meta[s, M_BEST] = k
    else:
        meta[s, M_OVN] = _ov_set(ovp, ovs, s, meta[s, M_OVN], x, size)


@njit(cache=True)
def _rebuild(qty, bits, meta, ovp, ovs, s, tick, center):
    """Re-lay side s with ``tick`` and slot LADDER/2 at tick index ``center``: every level is kept."""
    n = meta[s, M_COUNT] + meta[s, M_OVN]
    xs = np.empty(n, np.int64)
    ss = np.empty(n, np.int64)
    got = side_levels(qty, bits, meta, ovp, ovs, s, n, xs, ss)
    c = meta[s, M_BEST]
    while c >= 0:  # clear the ladder
        qty[s, c] = 0
        c = _below(bits, s, c)
    bits[s, :] = 0
    meta[s, M_BEST] = -1
    meta[s, M_COUNT] = 0
    meta[s, M_OVN] = 0
    meta[s, M_TICK] = tick
    meta[s, M_BASE] = center - LADDER // 2
    for i in range(got - 1, -1, -1):  # worst first: the overflow fills in order
        _put(qty, bits, meta, ovp, ovs, s, xs[i], ss[i])


@njit(cache=True)
def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


@njit(cache=True)
def _farthest(qty, bits, meta, ovp, ovs, s):
    """(has a level, the worst internal price) of side s."""
    has, fx = False, 0
    if meta[s, M_COUNT] > 0:
        has, fx = True, (meta[s, M_BASE] + _above(bits, s, -1)) * meta[s, M_TICK]
    if meta[s, M_OVN] > 0 and (not has or ovp[s, 0] < fx):
        has, fx = True, ovp[s, 0]
    return has, fx


@njit(cache=True)
def _make_room(qty, bits, meta, ovp, ovs, s, x):
    """Side s is full and x is a new level: evict the farthest level (True) or drop x when it is farther
    (False)."""
    has, fx = _farthest(qty, bits, meta, ovp, ovs, s)
    if x <= fx:
        return False
    if meta[s, M_OVN] > 0 and ovp[s, 0] == fx:
        meta[s, M_OVN] = _ov_set(ovp, ovs, s, meta[s, M_OVN], fx, 0)
    else:
        _lad_clear(qty, bits, meta, s, _above(bits, s, -1))
    return True


@njit(cache=True)
def _slow_set(qty, bits, meta, ovp, ovs, s, x, size):
    """``side_set`` off the hot path: first level, a finer tick, outside the window, a full side."""
    if x == 0:
        return 0  # price 0 is never a level (the staged tables' `prices_positive` check rejects such rows)
    if meta[s, M_TICK] == 0:
        if size <= 0:
            return 0
        meta[s, M_TICK] = abs(x)
        meta[s, M_BASE] = x // abs(x) - LADDER // 2
    tick = meta[s, M_TICK]
    if x % tick != 0:  # a finer tick than seen so far: learn it
        if size <= 0:
            return 0  # not on any level's price step: not in the book
        has, bx, _ = side_best(qty, bits, meta, ovp, ovs, s)
        tick = _gcd(tick, abs(x))
        _rebuild(qty, bits, meta, ovp, ovs, s, tick, (bx if has else x) // tick)
    ti = x // tick
    k = ti - meta[s, M_BASE]
    if size > 0 and (k < 0 or k >= LADDER):
        if meta[s, M_COUNT] == 0 and meta[s, M_OVN] == 0:
            meta[s, M_BASE] = ti - LADDER // 2  # empty: place the window here
        elif k >= LADDER or meta[s, M_COUNT] == 0:
            # the market left the window (or the window holds nothing): re-centre on the best
            has, bx, _ = side_best(qty, bits, meta, ovp, ovs, s)
            _rebuild(qty, bits, meta, ovp, ovs, s, tick, max(ti, bx // tick) if has else ti)
        k = ti - meta[s, M_BASE]
    ev = 0
    if 0 <= k < LADDER:
        old = qty[s, k]
        if size > 0:
            if old == 0:
                if meta[s, M_COUNT] + meta[s, M_OVN] >= meta[s, M_CAP]:
                    if not _make_room(qty, bits, meta, ovp, ovs, s, x):
                        return 1  # farther than every kept level: dropped
                    ev = 1
                bits[s, k >> 6] |= _ONE << np.uint64(k & 63)
                meta[s, M_COUNT] += 1
                if k > meta[s, M_BEST]:
                    meta[s, M_BEST] = k
            qty[s, k] = size
        elif old != 0:
            _lad_clear(qty, bits, meta, s, k)
        return ev
    n = meta[s, M_OVN]  # outside the window: the sorted overflow
    i = _ov_find(ovp, s, n, x)
    if size > 0 and not (i < n and ovp[s, i] == x) and meta[s, M_COUNT] + n >= meta[s, M_CAP]:
        if not _make_room(qty, bits, meta, ovp, ovs, s, x):
            return 1
        ev = 1
    meta[s, M_OVN] = _ov_set(ovp, ovs, s, meta[s, M_OVN], x, size)
    return ev


# No reference counting in the hot path: a numba function taking arrays increfs and decrefs each of them per call
# (atomic operations; inlining keeps them), which cost 4x the level update itself. ``_nrt=False`` compiles it
# without the runtime; it allocates nothing, and anything that would is left to ``_slow_set``.
@njit(cache=True, _nrt=False)
def _fast_set(qty, bits, meta, s, x, size):
    """The common level update: a slot of the window, the side not full. Returns 0, or -1 for ``_slow_set``."""
    tick = meta[s, M_TICK]
    if tick == 0:
        return -1
    ti = x // tick
    k = ti - meta[s, M_BASE]
    if ti * tick != x or k < 0 or k >= LADDER:
        return -1
    old = qty[s, k]
    if size > 0:
        if old != 0:
            qty[s, k] = size
            return 0
        if meta[s, M_COUNT] + meta[s, M_OVN] >= meta[s, M_CAP]:
            return -1
        qty[s, k] = size
        bits[s, k >> 6] |= _ONE << np.uint64(k & 63)
        meta[s, M_COUNT] += 1
        if k > meta[s, M_BEST]:
            meta[s, M_BEST] = k
        return 0
    if old != 0:
        _lad_clear(qty, bits, meta, s, k)
    return 0


@njit(cache=True)
def side_set(qty, bits, meta, ovp, ovs, s, x, size):
    """Set the level at internal price ``x`` of side s (size 0 deletes); returns the levels evicted (0 or 1)."""
    ev = _fast_set(qty, bits, meta, s, x, size)
    if ev < 0:
        ev = _slow_set(qty, bits, meta, ovp, ovs, s, x, size)
    return ev


@njit(cache=True)
def side_remove_best(qty, bits, meta, ovp, ovs, s):
    has, bx, _ = side_best(qty, bits, meta, ovp, ovs, s)
    if has:
        side_set(qty, bits, meta, ovp, ovs, s, bx, 0)


@njit(cache=True, inline="always")
def side_count(meta, s):
    return meta[s, M_COUNT] + meta[s, M_OVN]


@njit(cache=True)
def _uncross(qty, bits, meta, ovp, ovs, last_is_bid):
    """Resolve a crossed book by the documented rule: the side updated last is fresh, the other side's
    crossing levels are stale and removed. Returns the number removed."""
    removed = 0
    while True:
        hb, bx, _ = side_best(qty, bits, meta, ovp, ovs, 0)
        ha, ax, _ = side_best(qty, bits, meta, ovp, ovs, 1)
        if not (hb and ha and bx >= -ax):
            return removed
        if last_is_bid:
            side_set(qty, bits, meta, ovp, ovs, 1, ax, 0)
        else:
            side_set(qty, bits, meta, ovp, ovs, 0, bx, 0)
        removed += 1


@njit(cache=True)
def _write_top(out_p, out_s, row, qty, bits, meta, ovp, ovs, top_n, tmp_x, tmp_s):
    nb = side_levels(qty, bits, meta, ovp, ovs, 0, top_n, tmp_x, tmp_s)
    for i in range(top_n):
        out_p[row, i] = tmp_x[i] if i < nb else 0
        out_s[row, i] = tmp_s[i] if i < nb else 0
    na = side_levels(qty, bits, meta, ovp, ovs, 1, top_n, tmp_x, tmp_s)
    for i in range(top_n):
        out_p[row, top_n + i] = -tmp_x[i] if i < na else 0
        out_s[row, top_n + i] = tmp_s[i] if i < na else 0


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
def _side_matches(snap_p, snap_s, k, off, levels, qty, bits, meta, ovp, ovs, s, sign, boundary, tmp_x, tmp_s):
    """One side of snapshot ``k`` against the book. Every level the book has must be in the snapshot with the same
    size; a snapshot level the book lacks is wrong inside the range the book knows completely (bids: prices >=
    boundary; asks: prices <= boundary) and unknowable beyond it (never in a snapshot, never touched by a delta).
    Compared in internal prices (asks negated: higher is better on both sides)."""
    n = side_levels(qty, bits, meta, ovp, ovs, s, levels + 1, tmp_x, tmp_s)
    j = 0  # book index, best first
    for i in range(levels):
        p, sz = snap_p[k, off + i], snap_s[k, off + i]
        if p == 0:
            break
        x = sign * p
        if j < n and tmp_x[j] > x:
            return False  # the book has a level the exchange did not
        if j < n and tmp_x[j] == x:
            if tmp_s[j] != sz:
                return False
            j += 1
        elif x >= sign * boundary:
            return False  # missing inside the range the book knows completely
        # else: a level the lake data never showed (unknowable): skipped
    return True


@njit(cache=True)
def _snapshot_matches(snap_p, snap_s, k, qty, bits, meta, ovp, ovs, bid_boundary, ask_boundary, tmp_x, tmp_s):
    """Top levels of snapshot ``k`` (20 bids then 20 asks; price 0 = absent) equal the book where it is known?"""
    levels = snap_p.shape[1] // 2
    return _side_matches(
        snap_p, snap_s, k, 0, levels, qty, bits, meta, ovp, ovs, 0, 1, bid_boundary, tmp_x, tmp_s
    ) and _side_matches(
        snap_p, snap_s, k, levels, levels, qty, bits, meta, ovp, ovs, 1, -1, ask_boundary, tmp_x, tmp_s
    )


@njit(cache=True)
def _deepest(snap_p, k, off, levels):
    deepest = 0
    for i in range(levels):
        if snap_p[k, off + i] != 0:
            deepest = snap_p[k, off + i]
    return deepest


@njit(cache=True)
def _clear_side(qty, bits, meta, ovp, ovs, s):
    while side_count(meta, s) > 0:
        side_remove_best(qty, bits, meta, ovp, ovs, s)


@njit(cache=True)
def _apply_snapshot(snap_p, snap_s, k, qty, bits, meta, ovp, ovs, seeded):
    """Seed (first time) or resync: the snapshot's price range is replaced, deeper levels are kept."""
    levels = snap_p.shape[1] // 2
    if not seeded:
        _clear_side(qty, bits, meta, ovp, ovs, 0)
        _clear_side(qty, bits, meta, ovp, ovs, 1)
    for s, off, sign in ((0, 0, 1), (1, levels, -1)):
        deepest = _deepest(snap_p, k, off, levels)
        if (
            deepest != 0
        ):  # drop every kept level at or better than the snapshot's deepest, then insert its own
            while True:
                has, bx, _ = side_best(qty, bits, meta, ovp, ovs, s)
                if not has or bx < sign * deepest:
                    break
                side_set(qty, bits, meta, ovp, ovs, s, bx, 0)
        for i in range(levels):
            if snap_p[k, off + i] != 0:
                side_set(qty, bits, meta, ovp, ovs, s, sign * snap_p[k, off + i], snap_s[k, off + i])


@njit(cache=True)
def _resolve(
    snap_p,
    snap_s,
    k,
    k_seq,
    qty,
    bits,
    meta,
    ovp,
    ovs,
    bid_boundary,
    ask_boundary,
    stats,
    mismatch_seq,
    tmp_x,
    tmp_s,
    reseed,
):
    """Compare snapshot ``k`` with the book (counted), then apply it: on a mismatch it resyncs the book; on a
    match it still adds the levels beyond the known range that the book could not know. The known range grows
    to the snapshot's, unless the book was not trusted (``reseed``) or disagreed: then the book and its known
    range are the snapshot's alone. Returns (bid_boundary, ask_boundary, matched)."""
    levels = snap_p.shape[1] // 2
    matched = _snapshot_matches(
        snap_p, snap_s, k, qty, bits, meta, ovp, ovs, bid_boundary, ask_boundary, tmp_x, tmp_s
    )
    if matched:
        stats[ST_SNAP_MATCH] += 1
    else:
        if stats[ST_SNAP_MISMATCH] < mismatch_seq.shape[0]:
            mismatch_seq[stats[ST_SNAP_MISMATCH]] = k_seq
        stats[ST_SNAP_MISMATCH] += 1
        if reseed:
            stats[ST_SNAP_LOST] += 1
    fresh = reseed or not matched
    # After a loss the levels beyond the snapshot may be stale (a lost delete would later cross the book): the
    # book becomes the snapshot alone, as when seeding; deeper levels return as deltas touch them.
    _apply_snapshot(snap_p, snap_s, k, qty, bits, meta, ovp, ovs, not fresh)
    db, da = _deepest(snap_p, k, 0, levels), _deepest(snap_p, k, levels, levels)
    if db != 0:
        bid_boundary = db if fresh else min(bid_boundary, db)
    if da != 0:
        ask_boundary = da if fresh else max(ask_boundary, da)
    return bid_boundary, ask_boundary, matched


@njit(cache=True)
def _publish(
    book_row, book_p, book_s, book_known, book_cause, m, row, qty, bits, meta, ovp, ovs, top_n, bid_b, ask_b,
    cause, tmp_x, tmp_s,
):  # fmt: skip
    """Write the book state after event ``row`` (replacing one already written for that row); returns m."""
    if m > 0 and book_row[m - 1] == row:
        m -= 1
    book_row[m] = row
    book_known[m, 0] = bid_b
    book_known[m, 1] = ask_b
    book_cause[m] = cause
    _write_top(book_p, book_s, m, qty, bits, meta, ovp, ovs, top_n, tmp_x, tmp_s)
    return m + 1


@njit(cache=True)
def _resolve_and_publish(
    snap_p, snap_s, k, k_seq, qty, bits, meta, ovp, ovs, bid_b, ask_b, stats, mismatch_seq,
    book_row, book_p, book_s, book_known, book_cause, m, row, top_n, tmp_x, tmp_s, broken, agree_m, chunk_out,
):  # fmt: skip
    """A pending snapshot resolved (``_resolve``) and the state it leaves published after event ``row``: the
    book is re-seeded and trusted again. A disagreement with no located loss (``broken``) proves one somewhere
    since the last resolved snapshot (state ``agree_m`` of this chunk, -1: an earlier chunk, then
    ``chunk_out[1]`` is set for the caller's held states): those states are marked. Returns (m, bid boundary,
    ask boundary); ``chunk_out[0]`` is the published state's index."""
    bid_b, ask_b, matched = _resolve(
        snap_p, snap_s, k, k_seq, qty, bits, meta, ovp, ovs, bid_b, ask_b, stats, mismatch_seq, tmp_x, tmp_s,
        broken,
    )  # fmt: skip
    end = m - 1 if m > 0 and book_row[m - 1] == row else m  # the state at ``row`` is replaced
    if not matched and not broken:
        for i in range(agree_m + 1, end):
            if book_cause[i] == CAUSE_VALID:
                book_cause[i] = CAUSE_SNAPSHOT_DISAGREED
        if agree_m < 0:
            chunk_out[1] = 1
    m = _publish(
        book_row, book_p, book_s, book_known, book_cause, m, row, qty, bits, meta, ovp, ovs, top_n, bid_b, ask_b,
        CAUSE_VALID, tmp_x, tmp_s,
    )  # fmt: skip
    chunk_out[0] = m - 1
    return m, bid_b, ask_b


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
    qty,  # the book (``new_book``), carried across chunks
    bits,
    meta,
    ovp,
    ovs,
    state,  # int64[N_STATE]: see new_state
    stats,  # int64[N_STATS]
    top_n,
    out_seq,  # int64[n]: the sequence number each row carries (trades: last applied)
    out_keep,  # bool[n]: False for rows not emitted (deltas before the seed or already in the snapshot)
    book_row,  # int64[m]: the event row after which each book state holds
    book_p,  # int64[m, 2*top_n]: top-N book states (bids then asks; 0 = no level)
    book_s,
    book_known,  # int64[m, 2]: bid and ask price boundaries of the completely known book (see _side_matches)
    book_cause,  # int8[m]: CAUSE_VALID, or why the state is not trusted
    mismatch_seq,  # int64[k]: sequence numbers of the first k snapshots that disagreed with the book
    per_message,  # bool: a book state after each message (its last row) and where a snapshot was applied; else
    #               after every kept row, trades included
    breaks,  # int64[b], ascending: final update ids of messages the golden samples show the lake lost
    chunk_out,  # int64[2], in/out: (index of the last state a snapshot resolved in this chunk or -1, 1 when a
    #             disagreeing snapshot marks states of earlier chunks too)
):
    """Replay events in unified order; returns the number of book states written (``m`` is enough when it
    counts the message ends and snapshots, or the rows when not ``per_message``).

    Trust: a delta after a lost update id (``breaks``) starts an untrusted span; a snapshot that disagrees with
    the book, with no loss located, marks the states since the last resolved snapshot. Either ends at the next
    snapshot, which re-seeds the book and shrinks the known range to its own."""
    seeded, last_seq = state[2] != 0, state[3]
    pending, pending_seq, last_was_bid, seed_seq = state[4], state[5], state[6] != 0, state[7]
    bid_boundary, ask_boundary = state[8], state[9]
    bi, broken = state[10], state[11] != 0
    nb = breaks.shape[0]
    agree_m = -1  # the last state a snapshot resolved, in this chunk
    levels = snap_p.shape[1] // 2
    tmp_x = np.empty(max(top_n, levels + 1), np.int64)
    tmp_s = np.empty(max(top_n, levels + 1), np.int64)
    n = ev_type.shape[0]
    m = 0
    for r in range(n):
        t = ev_type[r]
        end_of_message = True
        # A pending snapshot is compared once every delta of its sequence number has been applied; the state
        # it leaves is published at the row before (the snapshot's own row, or its sequence number's last delta).
        if pending >= 0 and (t != DELTA or seq[r] > pending_seq):
            m, bid_boundary, ask_boundary = _resolve_and_publish(
                snap_p, snap_s, pending, pending_seq, qty, bits, meta, ovp, ovs, bid_boundary, ask_boundary,
                stats, mismatch_seq, book_row, book_p, book_s, book_known, book_cause, m, r - 1, top_n, tmp_x,
                tmp_s, broken, agree_m, chunk_out,
            )  # fmt: skip
            agree_m = m - 1
            broken = False
            while bi < nb and breaks[bi] <= pending_seq:  # losses the snapshot already contains
                bi += 1
            pending = -1
        if t == SNAPSHOT:
            k = snap_idx[r]
            if not seeded:
                _apply_snapshot(snap_p, snap_s, k, qty, bits, meta, ovp, ovs, False)
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
            while bi < nb and breaks[bi] < seq[r]:  # a message lost before this one
                if breaks[bi] > last_seq:  # (not one the book's last snapshot already contains)
                    broken = True
                bi += 1
            s = 0 if is_bid[r] else 1
            x = price[r] if is_bid[r] else -price[r]
            e = _fast_set(qty, bits, meta, s, x, size[r])  # called directly: see _fast_set
            if e < 0:
                stats[ST_EVICTED] += _slow_set(qty, bits, meta, ovp, ovs, s, x, size[r])
            stats[ST_APPLIED] += 1
            last_was_bid = is_bid[r]
            last_seq = seq[r] if seq[r] > last_seq else last_seq
            out_keep[r] = True
            out_seq[r] = seq[r]
            # End of message: the next row is not a delta of the same sequence number.
            end_of_message = r + 1 == n or ev_type[r + 1] != DELTA or seq[r + 1] != seq[r]
            if end_of_message and _uncross(qty, bits, meta, ovp, ovs, last_was_bid) > 0:
                stats[ST_CROSSED] += 1
                if broken:
                    stats[ST_CROSSED_LOST] += 1
        else:
            out_keep[r] = True
            out_seq[r] = last_seq
            if per_message:
                continue  # a trade does not change the book: the state in force is the previous one
        if not seeded or (per_message and not end_of_message):
            continue  # mid-message: the book after the message is written at its last row
        m = _publish(
            book_row, book_p, book_s, book_known, book_cause, m, r, qty, bits, meta, ovp, ovs, top_n,
            bid_boundary, ask_boundary, CAUSE_LOST_UPDATE_ID if broken else CAUSE_VALID, tmp_x, tmp_s,
        )  # fmt: skip
        if t == SNAPSHOT:
            agree_m = m - 1  # the seeding snapshot
            chunk_out[0] = agree_m
    if pending >= 0 and n > 0:  # the chunk ends: every delta of the snapshot's sequence number is in it
        m, bid_boundary, ask_boundary = _resolve_and_publish(
            snap_p, snap_s, pending, pending_seq, qty, bits, meta, ovp, ovs, bid_boundary, ask_boundary,
            stats, mismatch_seq, book_row, book_p, book_s, book_known, book_cause, m, n - 1, top_n, tmp_x, tmp_s,
            broken, agree_m, chunk_out,
        )  # fmt: skip
        broken = False
        while bi < nb and breaks[bi] <= pending_seq:
            bi += 1
        pending = -1
    state[2], state[3] = 1 if seeded else 0, last_seq
    state[4], state[5], state[6], state[7] = pending, pending_seq, 1 if last_was_bid else 0, seed_seq
    state[8], state[9] = bid_boundary, ask_boundary
    state[10], state[11] = bi, 1 if broken else 0
    return m


@njit(cache=True)
def apply_rows(is_bid, price, size, qty, bits, meta, ovp, ovs):
    """Apply level updates to a book (no output): the engine's raw speed. Returns the levels evicted."""
    evicted = 0
    for r in range(is_bid.shape[0]):
        s = 0 if is_bid[r] else 1
        x = price[r] if is_bid[r] else -price[r]
        if _fast_set(qty, bits, meta, s, x, size[r]) < 0:  # called directly: see _fast_set
            evicted += _slow_set(qty, bits, meta, ovp, ovs, s, x, size[r])
    return evicted


def new_state() -> tuple[tuple, np.ndarray, np.ndarray]:
    """(book, state, stats) for ``replay``: an empty, unseeded book (``new_book``). ``state``: unused, unused,
    seeded, last_seq, pending snapshot (-1: none), pending_seq, last_was_bid, seed_seq, bid boundary, ask
    boundary, next break, broken (a lost message since the last snapshot)."""
    state = np.zeros(N_STATE, dtype=np.int64)
    state[4] = -1
    return new_book(), state, np.zeros(N_STATS, dtype=np.int64)


class Book:
    """A plain book for notebooks and tests: ``set(is_bid, price, size)``, ``top(n)``, ``bids()``, ``asks()``."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._book = new_book(capacity)
        self.evicted = 0

    def set(self, is_bid: bool, price: int, size: int) -> None:
        self.evicted += side_set(*self._book, 0 if is_bid else 1, price if is_bid else -price, size)

    def _levels(self, is_bid: bool, n: int | None = None) -> list[tuple[int, int]]:
        s = 0 if is_bid else 1
        k = side_count(self._book[2], s) if n is None else n
        xs, ss = np.empty(k, np.int64), np.empty(k, np.int64)
        got = side_levels(*self._book, s, k, xs, ss)
        sign = 1 if is_bid else -1
        return [(sign * int(x), int(q)) for x, q in zip(xs[:got], ss[:got], strict=True)]

    def bids(self) -> dict[int, int]:
        return dict(self._levels(True))

    def asks(self) -> dict[int, int]:
        return dict(self._levels(False))

    def top(self, n: int = 1) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        return self._levels(True, n), self._levels(False, n)
