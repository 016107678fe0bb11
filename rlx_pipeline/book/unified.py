"""The unified stream of a day: Crypto Lake snapshots, deltas and trades merged and replayed through the book.

A day is two parquet files written together (same build id in their metadata, checked by the readers):

- ``events.parquet``, one row per event (``schemas.unified_events_schema``);
- ``book.parquet``, the top-N book state after each delta message (``schemas.unified_book_schema``), each
  row pointing at its event by ``event_index`` (the row number in ``events.parquet``). The book in force at an
  event is the last state at or before its index (``rlx_pipeline.book.read`` joins them).

Keeping the book out of the event rows is what makes the stream fast to write: a BTCUSDT message has ~34 rows,
so 40 book columns on every row would be 97% nulls, and encoding them cost more than everything else together.

Order (deterministic, documented in README): ``origin_time``, then event type (snapshot 0, delta 1, trade 2),
then sequence number (trades: trade id), then the row's position in its source file.

Rules (``rlx_pipeline.book.engine`` implements them):

- the first ``book`` snapshot seeds the book; deltas before it cannot be applied (counted as ``unseeded``, not
  emitted); deltas at or before its sequence number are already in it (``stale``, not emitted);
- every later snapshot is compared with the reconstructed top 20 once all deltas of its sequence number are
  applied (``snapshot_match`` / ``snapshot_mismatch``); either way it is then applied (its price range replaced,
  deeper levels kept; after a loss the book becomes the snapshot alone) and the resulting state is published at
  the row before the event that resolved it (the last delta of that sequence number, or the snapshot's row);
- trust (``book_valid``): a delta after an update id the golden samples show lost (``lost_update_ids``) starts an
  invalid span; a snapshot that disagrees with no loss located proves one since the last resolved snapshot, and
  the states since then are marked (they are held back until a snapshot resolves them, so across chunks too).
  Either span ends at the next snapshot, which re-seeds the book; the known range is then the snapshot's alone.
  The spans go to ``invalid_intervals.parquet`` (``intervals_path_for``);
- a book crossed at the end of a message is resolved by removing the crossing levels of the side that was not
  updated last (``crossed`` counts the messages);
- trades do not change the book (the exchange's deltas carry their effect);
- ``book_every="message"`` (default) publishes the book after each message, after the seeding snapshot and where
  a later snapshot was applied; ``"row"`` after every event, trades included.

Memory: the staged tables are read in one streaming pass and cut into time chunks (15 minutes by default); each
chunk is merged (a three-way merge, no sort) and replayed with the book carried between chunks, and written while
the next chunk is replayed, so peak memory follows the busiest chunk, not the day. A staged table that is not
sorted by (origin_time, sequence number or trade id) is first split by chunk into temporary Arrow files beside
``dest`` and each chunk sorted: slower, same output.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from rlx_pipeline import schemas, storage
from rlx_pipeline.book import engine
from rlx_pipeline.storage import ParquetBatchWriter

NS = 1_000_000_000
LEVELS = schemas.BOOK_LEVELS
MAX_MISMATCHES = 20  # disagreeing snapshots named in the result (all are counted)
BUILD_KEY = b"rlx.unified_build"  # the same id in events.parquet and book.parquet: written together
EVENTS_FILE, BOOK_FILE, INTERVALS_FILE = "events.parquet", "book.parquet", "invalid_intervals.parquet"
CAUSES = {
    engine.CAUSE_LOST_UPDATE_ID: "lost_update_id",
    engine.CAUSE_SNAPSHOT_DISAGREED: "snapshot_disagreed",
}
IN_FLIGHT = 2  # chunks queued for the writer: two keep both cores busy when replay and encoding alternate
BOOK_ROW_GROUP = 131_072  # book states per row group (~50 MB in memory at top 10)


def book_path_for(events: str | Path) -> Path:
    """Where the book states of an events file go: ``book.parquet`` beside ``events.parquet``, otherwise
    ``<stem>.book.parquet``."""
    events = Path(events)
    if events.name == EVENTS_FILE:
        return events.with_name(BOOK_FILE)
    return events.with_name(f"{events.stem}.book.parquet")


def intervals_path_for(events: str | Path) -> Path:
    """Where the invalid intervals of an events file go: ``invalid_intervals.parquet`` beside
    ``events.parquet``, otherwise ``<stem>.intervals.parquet``."""
    events = Path(events)
    if events.name == EVENTS_FILE:
        return events.with_name(INTERVALS_FILE)
    return events.with_name(f"{events.stem}.intervals.parquet")


@dataclass
class UnifiedResult:
    path: Path
    book_path: Path | None = None
    rows: int = 0
    book_rows: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    input_rows: int = 0
    mismatched_snapshots: list[int] = field(default_factory=list)  # sequence numbers of the first ones
    bucketed: list[str] = field(default_factory=list)  # staged tables that were not sorted (slower path)
    intervals_path: Path | None = None
    intervals: list[dict] = field(default_factory=list)  # the rows of invalid_intervals.parquet
    invalid_states: int = 0  # book states with book_valid false
    span_ns: int = 0  # from the first book state to the last

    @property
    def invalid_share_messages(self) -> float:
        """Share of the day's book states (one per delta message) inside invalid intervals."""
        return self.invalid_states / self.book_rows if self.book_rows else 0.0

    @property
    def invalid_share_time(self) -> float:
        """Share of the day's time (first to last book state) inside invalid intervals."""
        return sum(i["end"] - i["start"] for i in self.intervals) / self.span_ns if self.span_ns else 0.0

    @property
    def invalid_share(self) -> float:
        """The gated gap metric: the larger of the two shares."""
        return max(self.invalid_share_messages, self.invalid_share_time)

    @property
    def self_consistency(self) -> float | None:
        """Share of later snapshots that agreed with the book, those that disagreed because of a lost update id
        the golden samples named left out (the loss explains them; the interval flags them)."""
        n = (
            self.stats.get("snapshot_match", 0)
            + self.stats.get("snapshot_mismatch", 0)
            - self.stats.get("snapshot_mismatch_lost", 0)
        )
        return self.stats.get("snapshot_match", 0) / n if n else None

    @property
    def unseeded_share(self) -> float:
        deltas = self.stats.get("applied", 0) + self.stats.get("unseeded", 0) + self.stats.get("stale", 0)
        return self.stats.get("unseeded", 0) / deltas if deltas else 0.0


_STAT_NAMES = [
    "applied",
    "unseeded",
    "stale",
    "crossed",
    "evicted",
    "snapshot_match",
    "snapshot_mismatch",
    "seeds",
    "snapshot_mismatch_lost",
    "crossed_lost",
]

_SNAP_LEVELS = [
    f"{side}_{i}_{what}" for what in ("price", "size") for side in ("bid", "ask") for i in range(LEVELS)
]
COLUMNS = {
    "book": ["origin_time", "received_time", "sequence_number", *_SNAP_LEVELS],
    "book_delta": ["origin_time", "received_time", "sequence_number", "side_is_bid", "price", "size"],
    "trades": ["origin_time", "received_time", "trade_id", "side", "price", "quantity"],
}
KEYS = {"book": "sequence_number", "book_delta": "sequence_number", "trades": "trade_id"}
_BATCH = 1 << 18


@njit(cache=True)
def _sorted_run(t, key, prev_t, prev_key):
    """True when rows (after the previous row ``prev_t``, ``prev_key``) are in (time, key) order."""
    for i in range(t.shape[0]):
        if t[i] < prev_t or (t[i] == prev_t and key[i] < prev_key):
            return False
        prev_t, prev_key = t[i], key[i]
    return True


def _i64(col: pa.ChunkedArray | pa.Array, fill: int = 0) -> np.ndarray:
    if col.null_count:
        col = pc.fill_null(col, fill)
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.int64())
    return np.ascontiguousarray(col.to_numpy())


class _Unsorted(Exception):
    """A staged table is not in (origin_time, key) order: the build restarts with it split by chunk."""

    def __init__(self, table: str) -> None:
        super().__init__(table)
        self.table = table


class _Stream:
    """A staged table read in one pass and handed out chunk by chunk: ``take(edge)`` gives the rows before it.
    Checks, batch by batch, that the table is in (origin_time, key) order with no null time; raises
    ``_Unsorted`` when not (cheaper than a separate pass over every file when, as usual, it is)."""

    def __init__(self, table: str, path: Path, columns: list[str], key: str) -> None:
        pf = storage.streaming_parquet(path)
        self._table, self._key = table, key
        self._schema = pa.schema([pf.schema_arrow.field(c) for c in columns])
        self._it = pf.iter_batches(batch_size=_BATCH, columns=columns, use_threads=False)
        self._buf: list[pa.RecordBatch] = []
        self._last_t = self._last_k = np.iinfo(np.int64).min
        self._done = False

    def take(self, edge: int) -> pa.Table:
        while not self._done and self._last_t < edge:
            b = next(self._it, None)
            if b is None:
                self._done = True
            elif len(b):
                if b.column(0).null_count:
                    raise _Unsorted(self._table)
                t, k = _i64(b.column(0)), _i64(b.column(self._key))
                if not _sorted_run(t, k, self._last_t, self._last_k):
                    raise _Unsorted(self._table)
                self._buf.append(b)
                self._last_t, self._last_k = int(t[-1]), int(k[-1])
        if not self._buf:
            return self._schema.empty_table()
        table = pa.Table.from_batches(self._buf, schema=self._schema)
        cut = int(np.searchsorted(_i64(table.column(0)), edge, "left"))
        self._buf = [b for b in table.slice(cut).to_batches() if len(b)]
        return table.slice(0, cut)


class _Buckets:
    """An unsorted staged table split by time chunk in ONE streaming pass (Arrow IPC files in a temporary
    directory); ``take(chunk)`` gives the chunk sorted by (time, key, row).

    Scanning the parquet file once per chunk with a time filter would re-read the whole file every time when its
    row groups span the day (row-group statistics cannot prune them): quadratic in the day's size.
    """

    def __init__(
        self, path: Path, columns: list[str], key: str, lo: int, step: int, n_chunks: int, tmp: Path
    ):
        pf = storage.streaming_parquet(path)
        self._key = key
        self._schema = pa.schema([pf.schema_arrow.field(c) for c in columns])
        self._files: dict[int, Path] = {}
        writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
        opts = pa.ipc.IpcWriteOptions(compression="lz4")
        try:
            for batch in pf.iter_batches(batch_size=1 << 20, columns=columns):
                t = _i64(batch.column(0), lo - 1)
                k = (t - lo) // step
                k[(t < lo) | (k >= n_chunks)] = -1
                order = np.argsort(k, kind="stable")
                ks = k[order]
                starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
                for a, b in zip(starts, np.r_[starts[1:], len(ks)], strict=True):
                    c = int(ks[a])
                    if c < 0:
                        continue
                    if c not in writers:
                        self._files[c] = tmp / f"{path.parent.name}-{id(self)}-{c:05d}.arrow"
                        writers[c] = pa.ipc.new_file(self._files[c], self._schema, options=opts)
                    writers[c].write_batch(batch.take(pa.array(order[a:b])))
        finally:
            for w in writers.values():
                w.close()

    def take(self, chunk: int) -> pa.Table:
        f = self._files.pop(chunk, None)
        if f is None:
            return self._schema.empty_table()
        with pa.memory_map(str(f)) as src:
            table = pa.ipc.open_file(src).read_all()
        f.unlink()
        order = np.lexsort((_i64(table.column(self._key)), _i64(table.column(0))))  # stable: row order kept
        return table.take(pa.array(order))


def _footer(path: Path) -> bytes:
    """A parquet file's size and footer (every row group's offsets, sizes and statistics)."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(size - 8)
        n = int.from_bytes(f.read(4), "little")
        f.seek(size - 8 - n)
        return size.to_bytes(8, "little") + f.read(n)


def _build_id(
    paths: dict[str, Path], date: str, top_n: int, tolerance_s: int, book_every: str, breaks: np.ndarray
) -> str:
    """Pairs events.parquet with its book.parquet. Derived from the inputs and the settings, not drawn at random,
    so that rebuilding the same day gives byte-identical files (a rebuild of the same inputs writes the same
    content, so even a crash between the two renames cannot mix different builds)."""
    h = hashlib.sha256(f"{date}|{top_n}|{tolerance_s}|{book_every}".encode())
    for table in sorted(paths):
        h.update(table.encode() + _footer(Path(paths[table])))
    h.update(breaks.tobytes())
    return h.hexdigest()[:32]


def _day_ns(date: str) -> tuple[int, int]:
    start = int(dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC).timestamp()) * NS
    return start, start + 86_400 * NS


def _merge(snaps: pa.Table, deltas: pa.Table, trades: pa.Table) -> dict[str, np.ndarray]:
    n = len(snaps) + len(deltas) + len(trades)
    out = {
        "t": np.empty(n, np.int64),
        "r": np.empty(n, np.int64),
        "ev": np.empty(n, np.int8),
        "seq": np.empty(n, np.int64),
        "is_bid": np.empty(n, np.bool_),
        "price": np.empty(n, np.int64),
        "size": np.empty(n, np.int64),
        "trade_id": np.empty(n, np.int64),
        "snap": np.empty(n, np.int64),
    }
    engine.merge_events(
        _i64(snaps.column("origin_time")),
        _i64(snaps.column("received_time")),
        _i64(snaps.column("sequence_number")),
        _i64(deltas.column("origin_time")),
        _i64(deltas.column("received_time")),
        _i64(deltas.column("sequence_number")),
        np.ascontiguousarray(pc.fill_null(deltas.column("side_is_bid"), False).to_numpy()),
        _i64(deltas.column("price")),
        _i64(deltas.column("size")),
        _i64(trades.column("origin_time")),
        _i64(trades.column("received_time")),
        _i64(trades.column("trade_id")),
        np.ascontiguousarray(pc.fill_null(pc.equal(trades.column("side"), "buy"), False).to_numpy()),
        _i64(trades.column("price")),
        _i64(trades.column("quantity")),
        *out.values(),
    )
    return out


def _snapshot_levels(snaps: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Snapshot levels as (k, 40) arrays: 20 bids then 20 asks; 0 = no level."""
    p = np.zeros((len(snaps), 2 * LEVELS), np.int64)
    s = np.zeros((len(snaps), 2 * LEVELS), np.int64)
    for j, (side, i) in enumerate((side, i) for side in ("bid", "ask") for i in range(LEVELS)):
        p[:, j] = _i64(snaps.column(f"{side}_{i}_price"))
        s[:, j] = _i64(snaps.column(f"{side}_{i}_size"))
    return p, s


def _events_table(ev: dict[str, np.ndarray], keep: np.ndarray, last: np.ndarray, seq: np.ndarray) -> pa.Table:
    if not keep.all():
        ev = {k: v[keep] for k, v in ev.items()}
        last, seq = last[keep], seq[keep]
    kind = ev["ev"]
    not_trade = kind != engine.TRADE
    snap = kind == engine.SNAPSHOT
    snap_mask = snap if snap.any() else None
    return pa.Table.from_arrays(
        [
            pa.array(ev["t"]).view(schemas.TS),
            pa.array(ev["r"]).view(schemas.TS),
            pa.array(kind),
            pa.array(seq),
            pa.array(last),
            pa.array(ev["is_bid"], mask=snap_mask),
            pa.array(ev["price"], mask=snap_mask),
            pa.array(ev["size"], mask=snap_mask),
            pa.array(ev["trade_id"], mask=not_trade if not_trade.any() else None),
        ],
        schema=schemas.unified_events_schema(),
    )


def _book_piece(
    index: np.ndarray, ev: dict[str, np.ndarray], rows: np.ndarray, seq: np.ndarray, p, s, known, cause
):
    """One chunk's book states as arrays, held until no later snapshot can change their ``book_valid``."""
    return {
        "index": index,
        "t": ev["t"][rows],
        "r": ev["r"][rows],
        "ev": ev["ev"][rows],
        "seq": seq[rows],
        "p": p,
        "s": s,
        "known": known,
        "cause": cause.copy(),
    }


def _slice(piece: dict[str, np.ndarray], a: int, b: int | None = None) -> dict[str, np.ndarray]:
    return {k: v[a:b] for k, v in piece.items()}


def _book_table(piece: dict[str, np.ndarray], top_n: int) -> pa.Table:
    p, s, known = piece["p"], piece["s"], piece["known"]
    cols = [
        pa.array(piece["index"]),
        pa.array(piece["t"]).view(schemas.TS),
        pa.array(piece["r"]).view(schemas.TS),
        pa.array(piece["ev"]),
        pa.array(piece["seq"]),
        pa.array(np.ascontiguousarray(known[:, 0])),
        pa.array(np.ascontiguousarray(known[:, 1])),
        pa.array(piece["cause"] == engine.CAUSE_VALID),
    ]
    for off in (0, top_n):  # bids, then asks (the schema's order)
        for i in range(top_n):
            price = p[:, off + i]
            empty = price == 0
            mask = empty if empty.any() else None
            cols += [pa.array(price, mask=mask), pa.array(s[:, off + i], mask=mask)]
    return pa.Table.from_arrays(cols, schema=schemas.unified_book_schema(top_n))


class _Intervals:
    """Runs of untrusted book states, fed piece by piece in order: the rows of ``invalid_intervals.parquet``."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.open: dict | None = None  # the run in progress
        self.invalid = 0
        self.first_t: int | None = None
        self.last_t = 0

    def feed(self, piece: dict[str, np.ndarray]) -> None:
        cause = piece["cause"]
        bad = cause != engine.CAUSE_VALID
        n = len(bad)
        if n == 0:
            return
        if self.first_t is None:
            self.first_t = int(piece["t"][0])
        self.last_t = int(piece["t"][-1])
        self.invalid += int(bad.sum())
        frm = 0
        for e in np.flatnonzero(np.diff(np.r_[self.open is not None, bad].astype(np.int8))).tolist():
            if bad[e]:  # a run starts at row e
                self.open = {"start": int(piece["t"][e]), "first_update_id": int(piece["seq"][e]),
                             "first_event_index": int(piece["index"][e]), "messages": 0, "lost": False}  # fmt: skip
                frm = e
            else:  # the run ends: row e is the re-seeded state
                self._extend(piece, frm, e)
                self._close(int(piece["t"][e]), int(piece["index"][e]), True)
        if self.open is not None:
            self._extend(piece, frm, n)

    def _extend(self, piece: dict[str, np.ndarray], a: int, b: int) -> None:
        o = self.open
        if b > a:
            o["messages"] += b - a
            o["lost"] |= bool((piece["cause"][a:b] == engine.CAUSE_LOST_UPDATE_ID).any())
            o["last"] = (int(piece["t"][b - 1]), int(piece["seq"][b - 1]), int(piece["index"][b - 1]))

    def _close(self, end: int, end_index: int, resolved: bool) -> None:
        o, self.open = self.open, None
        cause = engine.CAUSE_LOST_UPDATE_ID if o["lost"] else engine.CAUSE_SNAPSHOT_DISAGREED
        self.rows.append(
            {
                "start": o["start"],
                "end": end,
                "first_update_id": o["first_update_id"],
                "last_update_id": o["last"][1],
                "cause": CAUSES[cause],
                "messages": o["messages"],
                "first_event_index": o["first_event_index"],
                "end_event_index": end_index,
                "resolved": resolved,
            }
        )

    def finish(self) -> list[dict]:
        if self.open is not None:  # the day ended before a snapshot re-seeded the book
            self._close(self.open["last"][0], self.open["last"][2] + 1, False)
        return self.rows

    def table(self) -> pa.Table:
        schema = schemas.invalid_intervals_schema()
        cols = [pa.array([r[f.name] for r in self.rows], pa.int64() if f.type == schemas.TS else f.type)
                for f in schema]  # fmt: skip
        return pa.Table.from_arrays([c.view(schemas.TS) if c.type == pa.int64() and f.type == schemas.TS else c
                                     for c, f in zip(cols, schema, strict=True)], schema=schema)  # fmt: skip


def _write(
    events_writer: ParquetBatchWriter, events: pa.Table, book_writer: ParquetBatchWriter, book
) -> None:
    events_writer.write(events)
    if book is not None:
        book_writer.write(book)


def build_unified(
    paths: dict[str, Path],
    date: str,
    dest: str | Path,
    *,
    book_dest: str | Path | None = None,
    top_n: int = 10,
    chunk_s: int = 900,
    tolerance_s: int = 60,
    progress: Callable[[str], None] | None = None,
    book_every: str = "message",
    lost_update_ids: np.ndarray | list[int] | None = None,
) -> UnifiedResult:
    """``paths`` maps ``trades``, ``book``, ``book_delta`` to staged parquet files; writes the events to ``dest``,
    the book states to ``book_dest`` (default ``book_path_for(dest)``) and the invalid intervals to
    ``intervals_path_for(dest)``, each atomically. ``lost_update_ids``: final update ids of depth messages the
    golden samples hold and the lake lacks (``validation`` finds them); each starts an invalid interval at the
    next message."""
    breaks = np.unique(np.asarray(lost_update_ids if lost_update_ids is not None else [], dtype=np.int64))
    if book_every not in ("message", "row"):
        raise ValueError(f"book_every={book_every!r}: expected 'message' or 'row'")
    bucketed: set[str] = set()
    while True:
        try:
            return _build(
                paths,
                date,
                dest,
                book_dest,
                top_n,
                chunk_s,
                tolerance_s,
                progress,
                book_every,
                bucketed,
                breaks,
            )
        except _Unsorted as e:
            # the partial output is discarded (atomic writers); rare: Crypto Lake tables come in time order
            bucketed.add(e.table)


def _build(
    paths: dict[str, Path],
    date: str,
    dest: str | Path,
    book_dest: str | Path | None,
    top_n: int,
    chunk_s: int,
    tolerance_s: int,
    progress: Callable[[str], None] | None,
    book_every: str,
    bucketed: set[str],
    breaks: np.ndarray,
) -> UnifiedResult:
    t0 = time.perf_counter()
    dest = Path(dest)
    book_dest = Path(book_dest) if book_dest is not None else book_path_for(dest)
    day_lo, day_hi = _day_ns(date)
    lo_all, hi_all = day_lo - tolerance_s * NS, day_hi + tolerance_s * NS
    build = {BUILD_KEY: _build_id(paths, date, top_n, tolerance_s, book_every, breaks).encode()}
    events_schema = schemas.unified_events_schema().with_metadata(build)
    book_schema = schemas.unified_book_schema(top_n).with_metadata(build)
    book_state, state, stats = engine.new_state()
    mismatch_seq = np.zeros(MAX_MISMATCHES, dtype=np.int64)
    result = UnifiedResult(dest, book_dest, intervals_path=intervals_path_for(dest))
    held: list[
        dict[str, np.ndarray]
    ] = []  # book states after the last resolved snapshot: their trust may change
    intervals = _Intervals()
    chunk_out = np.zeros(2, np.int64)
    by_type = np.zeros(3, dtype=np.int64)
    pending: list[Future] = []  # chunks queued for the writer thread
    book_buf: list[pa.Table] = []  # a chunk has ~9,000 book states: written in row groups of BOOK_ROW_GROUP
    step = chunk_s * NS
    edges = list(range(lo_all, hi_all, step)) + [hi_all]
    per_message = book_every == "message"
    written = 0  # events so far: the book's event_index base
    with (
        # no dictionary pages: the columns are high-cardinality ints; encoding is the end-to-end bottleneck
        # a level's price moves little from one book state to the next: delta-encoded it is smaller and cheaper
        # to write than zstd over plain values (sizes jump: plain)
        ParquetBatchWriter(
            book_dest,
            book_schema,
            use_dictionary=False,
            column_encoding={n: "DELTA_BINARY_PACKED" for n in book_schema.names if n.endswith("_price")},
        ) as book_writer,
        ParquetBatchWriter(dest, events_schema, use_dictionary=False) as writer,
        ThreadPoolExecutor(1, thread_name_prefix="rlx-write") as pool,
        tempfile.TemporaryDirectory(prefix=".unified-", dir=dest.parent) as tmp,
    ):
        sources: dict[str, _Stream | _Buckets] = {}
        for table, path in paths.items():
            cols, key = COLUMNS[table], KEYS[table]
            if table not in bucketed:
                sources[table] = _Stream(table, path, cols, key)
                sources[table].take(lo_all)  # before the day's tolerance window: dropped
            else:
                sources[table] = _Buckets(path, cols, key, lo_all, step, len(edges) - 1, Path(tmp))
                result.bucketed.append(table)

        def take(table: str, chunk: int, edge: int) -> pa.Table:
            src = sources[table]
            return src.take(edge) if isinstance(src, _Stream) else src.take(chunk)

        for chunk, edge in enumerate(edges[1:]):
            snaps, deltas, trades = (take(t, chunk, edge) for t in ("book", "book_delta", "trades"))
            n = len(snaps) + len(deltas) + len(trades)
            if n == 0:
                continue  # nothing in this time range (a short day, a quiet market)
            result.input_rows += n
            ev = _merge(snaps, deltas, trades)
            snap_p, snap_s = _snapshot_levels(snaps)
            kind, key = ev["ev"], ev["seq"]
            last = np.ones(n, dtype=bool)  # False where the next row is a delta of the same message
            last[:-1] = ~((kind[1:] == engine.DELTA) & (kind[:-1] == engine.DELTA) & (key[1:] == key[:-1]))
            cap = (int(np.count_nonzero(last & (kind != engine.TRADE))) + 1) if per_message else n
            seq = np.empty(n, np.int64)
            keep = np.empty(n, np.bool_)
            book_row = np.empty(cap, np.int64)
            book_p = np.empty(
                (cap, 2 * top_n), np.int64, order="F"
            )  # column-major: Arrow takes columns as is
            book_s = np.empty((cap, 2 * top_n), np.int64, order="F")
            book_known = np.empty((cap, 2), np.int64, order="F")
            book_cause = np.empty(cap, np.int8)
            chunk_out[:] = (-1, 0)
            m = engine.replay(
                kind, key, ev["is_bid"], ev["price"], ev["size"], ev["snap"], snap_p, snap_s,
                *book_state, state, stats, top_n,
                seq, keep, book_row, book_p, book_s, book_known, book_cause, mismatch_seq, per_message,
                breaks, chunk_out,
            )  # fmt: skip
            rows = book_row[:m]
            if keep.all():
                index = written + rows
                kept = n
            else:
                before = np.cumsum(keep) - 1  # the kept row at or before each row
                index = written + before[rows]
                kept = int(before[-1]) + 1
            events = _events_table(ev, keep, last, seq)
            piece = _book_piece(index, ev, rows, seq, book_p[:m], book_s[:m], book_known[:m], book_cause[:m])
            written += kept
            if chunk_out[
                1
            ]:  # a disagreeing snapshot proved a loss since the last resolved one: in held states
                for h in held:
                    h["cause"][h["cause"] == engine.CAUSE_VALID] = engine.CAUSE_SNAPSHOT_DISAGREED
            if chunk_out[0] >= 0:  # states up to the last resolved snapshot are final
                cut = int(chunk_out[0]) + 1
                held, ready = [_slice(piece, cut)], [*held, _slice(piece, 0, cut)]
            else:
                ready = []
                held.append(piece)
            for r in ready:
                intervals.feed(r)
                book_buf.append(_book_table(r, top_n))
            flush_book = sum(len(b) for b in book_buf) >= BOOK_ROW_GROUP
            books = pa.concat_tables(book_buf) if flush_book else None
            if flush_book:
                book_buf = []
            while len(pending) >= IN_FLIGHT:
                pending.pop(0).result()  # memory stays bounded
            # parquet encoding releases the GIL: it overlaps the next chunk's merge and replay
            pending.append(pool.submit(_write, writer, events, book_writer, books))
            by_type += np.bincount(kind[keep] if kept < n else kind, minlength=3)[:3]
            if progress:
                progress(f"{dt.datetime.fromtimestamp(edge / NS, dt.UTC):%H:%M} {written:,} rows")
        for f in pending:
            f.result()
        for r in held:  # the day ends: no snapshot disagreed since the last one
            intervals.feed(r)
            book_buf.append(_book_table(r, top_n))
        if book_buf:
            book_writer.write(pa.concat_tables(book_buf))
        result.intervals = intervals.finish()
        result.invalid_states = intervals.invalid
        result.span_ns = intervals.last_t - intervals.first_t if intervals.first_t is not None else 0
        storage.write_table(result.intervals_path, intervals.table().replace_schema_metadata(build),
                            fixed_point_scale=False)  # fmt: skip
        result.rows = writer.rows
        result.book_rows = book_writer.rows
    result.by_type = {"snapshot": int(by_type[0]), "delta": int(by_type[1]), "trade": int(by_type[2])}
    result.stats = {name: int(stats[i]) for i, name in enumerate(_STAT_NAMES)}
    result.mismatched_snapshots = mismatch_seq[
        : min(MAX_MISMATCHES, result.stats["snapshot_mismatch"])
    ].tolist()
    result.seconds = time.perf_counter() - t0
    return result
