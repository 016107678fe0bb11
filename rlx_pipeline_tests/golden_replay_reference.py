"""The golden book replay as it was before the numba kernel (``rlx_pipeline.fidelity.golden_book``), kept as the
straightforward reference the kernel is tested against (test_fidelity_golden_book): one Python object per message
and level, Binance's rules written out one by one.

The rules are the module's (its docstring); the states and stats are its own types, so the two compare field for
field. Each side: ``sortedcontainers`` keys beside a dict of sizes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sortedcontainers import SortedList

from rlx_pipeline import venues
from rlx_pipeline.fidelity.golden_book import BUFFER_MAX, GoldenState, ReplayStats


@dataclass
class DepthMessage:
    capture_ns: int
    line_no: int
    event_ns: int
    first_id: int  # U
    final_id: int  # u
    prev_final_id: int | None  # pu (USD-M)
    levels: list[tuple[bool, int, int]]  # (is_bid, price, size); size 0 deletes


@dataclass
class SnapshotMessage:
    capture_ns: int
    line_no: int
    last_update_id: int
    levels: list[tuple[bool, int, int]]


class _Side:
    """One side of the golden book: sizes by key (``-price`` for bids, so the best comes first) and the keys in
    order. Most diff levels update a level that exists: a plain dict write; only inserts and deletes touch the
    sorted keys (``SortedDict`` pays its method overhead on every write)."""

    __slots__ = ("keys", "sizes")

    def __init__(self, sizes: dict[int, int] | None = None) -> None:
        self.sizes: dict[int, int] = sizes or {}
        self.keys = SortedList(self.sizes)

    def top(self, n: int) -> list[tuple[int, int]]:
        sizes = self.sizes
        return [(k, sizes[k]) for k in self.keys[:n]]


class DepthReplay:
    def __init__(self, top_n: int, rules: venues.DepthRules = venues.SPOT_RULES) -> None:
        self.top_n = top_n
        self.rules = rules  # the venue's (``venues.for_symbol(symbol).depth_rules``)
        self.bids = _Side()  # key -price: best bid first
        self.asks = _Side()
        self.valid = False
        self.prev_u: int | None = None
        self.pending: int | None = None  # lastUpdateId of a snapshot no diff has bridged yet
        self.buffer: deque[DepthMessage] = deque()
        self.stats = ReplayStats()
        self.out: list[GoldenState] = []
        # spans with no valid golden book after a gap (event times, ns; end None: never bridged again)
        self.invalid_spans: list[dict] = []

    def snapshot(self, s: SnapshotMessage) -> None:
        self.stats.snapshots += 1
        if self.valid and self.prev_u is not None and s.last_update_id <= self.prev_u:
            self.stats.snapshots_ignored += 1
            return
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        for is_bid, p, q in s.levels:
            if q:
                if is_bid:
                    bids[-p] = q
                else:
                    asks[p] = q
        self.bids, self.asks = _Side(bids), _Side(asks)
        self.pending, self.valid, self.prev_u = s.last_update_id, False, None
        buffered, self.buffer = self.buffer, deque()
        for m in buffered:
            self._diff(m, replay=True)

    def diff(self, m: DepthMessage) -> None:
        self.stats.messages += 1
        self._diff(m, replay=False)

    def _diff(self, m: DepthMessage, replay: bool) -> None:
        U, u, pu = m.first_id, m.final_id, m.prev_final_id
        if self.pending is not None:
            if self.rules.in_snapshot(u, self.pending):
                self.stats.dropped_before_snapshot += 1
                return
            bridged = self.rules.bridges(U, u, self.pending)
            self.pending = None
            if not bridged:
                self.stats.unbridged += 1
                self._buffer(m)
                return
            self.valid = True
            if self.invalid_spans and self.invalid_spans[-1]["end_ns"] is None:
                self.invalid_spans[-1].update(end_ns=m.event_ns, resumed_at=u)
        elif self.valid:
            if u <= self.prev_u:
                self.stats.stale += 1
                return
            if not self.rules.continues(U, pu, self.prev_u):
                self.stats.gaps += 1
                self.valid = False
                self.invalid_spans.append(
                    {
                        "start_ns": m.event_ns,
                        "after_update_id": self.prev_u,
                        "end_ns": None,
                        "resumed_at": None,
                    }
                )
                self._buffer(m)
                return
        else:
            if not replay:
                self._buffer(m)
            else:
                self.stats.invalid_messages += 1
            return
        self.prev_u = u
        bids, asks = self.bids, self.asks
        for is_bid, p, q in m.levels:
            side, key = (bids, -p) if is_bid else (asks, p)
            sizes = side.sizes
            if q:
                if key not in sizes:
                    side.keys.add(key)
                sizes[key] = q
            elif sizes.pop(key, None) is not None:
                side.keys.remove(key)
        self.stats.applied += 1
        self.out.append(
            GoldenState(
                u,
                m.event_ns,
                m.capture_ns,
                [(-k, v) for k, v in bids.top(self.top_n)],
                asks.top(self.top_n),
            )
        )

    def _buffer(self, m: DepthMessage) -> None:
        self.stats.buffered += 1
        self.buffer.append(m)
        if len(self.buffer) > BUFFER_MAX:
            self.buffer.popleft()
            self.stats.buffer_overflow += 1


def read_snapshots(path: Path) -> list[SnapshotMessage]:
    """Every snapshot of the golden ``snapshots`` table (small: a few per day), in capture order."""
    if not path.is_file():
        return []
    t = pq.read_table(
        path, columns=["capture_ns", "line_no", "last_update_id", "side_is_bid", "price", "size"]
    )
    cols = [t.column(c).to_pylist() for c in t.column_names]
    out: dict[tuple[int, int, int], SnapshotMessage] = {}
    for cap, line, last, b, p, q in zip(*cols, strict=True):
        key = (cap, line, last)
        if key not in out:
            out[key] = SnapshotMessage(cap, line, last, [])
        out[key].levels.append((b, p, q))
    return sorted(out.values(), key=lambda s: (s.capture_ns, s.line_no))


def _changed(col: pa.Array) -> np.ndarray:
    """Row i (i >= 1) differs from row i - 1; nulls compare as Python's ``None`` does (equal to each other only)."""
    a, b = col.slice(1), col.slice(0, len(col) - 1)
    ne = pc.or_kleene(pc.not_equal(a, b), pc.xor(pc.is_null(a), pc.is_null(b)))
    return pc.fill_null(ne, False).to_numpy(zero_copy_only=False)


def _levels(rows: list, no_level: bool, lo: int, hi: int) -> list[tuple[bool, int, int]]:
    seg = rows[lo:hi]
    return [r for r in seg if r[0] is not None] if no_level else seg


def iter_depth_messages(path: Path, batch_rows: int = 1 << 16) -> Iterator[DepthMessage]:
    """The golden ``depth`` table (one row per level, in capture order) regrouped into messages, batch by batch.

    A message is a run of rows with the same (source file, line, ``u``); the runs' bounds are found per batch with
    Arrow compute and each message's levels are a slice of the batch's rows (no Python step per row)."""
    if not path.is_file():
        return
    f = pq.ParquetFile(path)
    cols = [
        "capture_ns",
        "source_file",
        "line_no",
        "event_time",
        "first_update_id",
        "final_update_id",
        "prev_final_update_id",
        "side_is_bid",
        "price",
        "size",
    ]
    cur: DepthMessage | None = None
    cur_key = None
    for batch in f.iter_batches(batch_size=batch_rows, columns=cols):
        n = batch.num_rows
        if not n:
            continue
        cap, src, line = (batch.column(i).to_pylist() for i in range(3))
        ev = batch.column(3).cast("int64").to_pylist()
        U, u, pu, b, p, q = (batch.column(i).to_pylist() for i in range(4, 10))
        change = np.zeros(n, dtype=bool)
        if n > 1:
            change[1:] = _changed(batch.column(1)) | _changed(batch.column(2)) | _changed(batch.column(5))
        change[0] = (src[0], line[0], u[0]) != cur_key
        starts = np.flatnonzero(change).tolist()
        rows = list(zip(b, p, q, strict=True))
        no_level = batch.column(7).null_count > 0  # a message with no levels is one row with nulls
        levels = partial(_levels, rows, no_level)
        if not starts or starts[0]:  # the batch opens inside the message the previous batch ended with
            cur.levels.extend(levels(0, starts[0] if starts else n))
        for j, lo in enumerate(starts):
            if cur is not None:
                yield cur
            hi = starts[j + 1] if j + 1 < len(starts) else n
            cur = DepthMessage(cap[lo], line[lo], ev[lo], U[lo], u[lo], pu[lo], levels(lo, hi))
            cur_key = (src[lo], line[lo], u[lo])
    if cur is not None:
        yield cur


@dataclass
class GoldenBook:
    """Replays a day's golden depth; ``states()`` yields the book after every validly applied message."""

    snapshots_path: Path
    depth_path: Path
    top_n: int
    rules: venues.DepthRules = venues.SPOT_RULES
    replay: DepthReplay = field(init=False)

    def __post_init__(self) -> None:
        self.replay = DepthReplay(self.top_n, self.rules)

    def states(self) -> Iterator[GoldenState]:
        snaps = read_snapshots(self.snapshots_path)
        r, k = self.replay, 0
        for m in iter_depth_messages(self.depth_path):
            # a snapshot goes before the depth messages received after it (same ns: the snapshot first)
            while k < len(snaps) and (snaps[k].capture_ns, 0, snaps[k].line_no) < (
                m.capture_ns,
                1,
                m.line_no,
            ):
                r.snapshot(snaps[k])
                k += 1
                yield from self._drain()
            r.diff(m)
            yield from self._drain()
        while k < len(snaps):
            r.snapshot(snaps[k])
            k += 1
            yield from self._drain()

    def _drain(self) -> Iterator[GoldenState]:
        if self.replay.out:
            out, self.replay.out = self.replay.out, []
            yield from out
