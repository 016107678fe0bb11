"""One streaming pass over a day's staged lake tables and golden tables, with checkpoints.

Memory: parquet is read one row group at a time in record batches of ``BATCH_ROWS`` (only the columns used),
and each table is folded into an accumulator whose size does not grow with the row count:

- value histograms (``stats.Hist``) of the compared metrics: bounded by the number of distinct values
  (fixed-point sizes, whole milliseconds, level counts, one log return per second);
- trade ids: one byte per id of the day's id range (``max - min + 1``; 3 MB for a 3 M-trade day), which finds
  missing and duplicated ids exactly in any file order;
- golden trade ids: runs of consecutive ids (``lake.quality.TradeIdRuns``, one on a complete capture), each batch
  checked against the lake's ids, scanned before it: only the ids the lake lacks are kept, with their times;
- golden depth: the levels per message here; which golden messages the lake lacks is found after the pass, range
  of update ids by range (``depth_coverage``: each range reads only its own ids from both tables, parquet
  statistics prune the rest), holding a range and the missing ids;
- everything else is counters and the carried last message/row of the previous batch.

Book-delta rows of one exchange message are contiguous and share ``sequence_number`` (Crypto Lake's layout), so
messages are runs of equal sequence numbers; a run cut by a batch boundary is carried to the next batch.

Checkpoints: after each row group (at most every ``checkpoint_every_s`` seconds) the accumulators are written
atomically to ``checkpoint_dir/state.npz`` together with the position (table, row group) and a fingerprint of
the inputs (path, size, mtime) and parameters. A rerun with the same fingerprint resumes from there and gives
the same result as an uninterrupted run; any other checkpoint is ignored. A finished scan deletes it.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rlx_pipeline import storage
from rlx_pipeline.lake.quality import TradeIdRuns
from rlx_pipeline.validation.stats import Hist

NS = 1_000_000_000
MS = 1_000_000
MINUTE = 60 * NS
NULL = np.iinfo(np.int64).min  # stands for a null time/id inside int64 arrays
BATCH_ROWS = 262_144
LATENCY_UNIT_NS = 100_000  # latency histogram resolution: 0.1 ms
SILENCE_NS = 5 * NS  # a pause between lake depth messages longer than this is listed in the gap timeline
TOP_SILENCES = 50
CHECKPOINT_VERSION = 3  # 2: golden trade ids kept (coverage); 3: lake trades first, golden trade ids as runs


@dataclass(frozen=True)
class Inputs:
    """The four tables one validation reads (golden ones may be missing: no capture that day)."""

    lake_trades: Path
    lake_delta: Path
    golden_trades: Path | None = None
    golden_depth: Path | None = None
    lake_book: Path | None = None  # quotes: Crypto Lake's `book` rows ...
    golden_ticker: Path | None = None  # ... against the golden bookTicker in force at the same update id
    golden_snapshots: Path | None = None  # where the golden window of update ids starts (``golden.window``)

    def present(self, name: str) -> Path | None:
        p = getattr(self, name)
        return Path(p) if p is not None and Path(p).is_file() else None


def _int64(batch: pa.RecordBatch, name: str) -> np.ndarray:
    col = batch.column(name)
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.int64())
    return pc.fill_null(col, NULL).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _valid(batch: pa.RecordBatch, name: str) -> np.ndarray:
    return pc.is_valid(batch.column(name)).to_numpy(zero_copy_only=False)


def iter_batches(pf: pq.ParquetFile, columns: list[str], row_group: int) -> Iterator[pa.RecordBatch]:
    yield from pf.iter_batches(batch_size=BATCH_ROWS, row_groups=[row_group], columns=columns)


class Coverage:
    """Minutes of the day the golden samples cover; lake rows are compared only inside them."""

    def __init__(self, day_lo: int, minutes: np.ndarray | None) -> None:
        self.day_lo = day_lo
        self.minutes = minutes  # bool[1440], None = compare everything (no window matching)

    def covered(self, t: np.ndarray) -> np.ndarray:
        if self.minutes is None:
            return t != NULL
        m = (t - self.day_lo) // MINUTE
        inside = (t != NULL) & (m >= 0) & (m < 1440)
        return inside & self.minutes[np.clip(m, 0, 1439)]

    @classmethod
    def from_golden(cls, day_lo: int, sources: list[tuple[Path, str]]) -> Coverage:
        mask = np.zeros(1440, bool)
        for path, col in sources:
            pf = pq.ParquetFile(path)
            for rg in range(pf.metadata.num_row_groups):
                for b in iter_batches(pf, [col], rg):
                    t = _int64(b, col)
                    m = (t[t != NULL] - day_lo) // MINUTE
                    mask[m[(m >= 0) & (m < 1440)]] = True
        return cls(day_lo, mask)


# --- accumulators ------------------------------------------------------------------------------------
class _Acc:
    """State = named scalars, arrays and histograms, so it round-trips through one ``.npz``."""

    SCALARS: tuple[str, ...] = ()
    ARRAYS: tuple[str, ...] = ()
    HISTS: tuple[str, ...] = ()

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for k in self.SCALARS:
            out[f"{prefix}.{k}"] = np.array(getattr(self, k))
        for k in self.ARRAYS:
            out[f"{prefix}.{k}"] = np.asarray(getattr(self, k))
        for k in self.HISTS:
            h = getattr(self, k).compact()
            out[f"{prefix}.{k}.values"], out[f"{prefix}.{k}.counts"] = h.values, h.counts
        return out

    def load(self, prefix: str, st: dict[str, np.ndarray]) -> None:
        for k in self.SCALARS:
            setattr(self, k, st[f"{prefix}.{k}"].item())
        for k in self.ARRAYS:
            setattr(self, k, st[f"{prefix}.{k}"].copy())
        for k in self.HISTS:
            setattr(self, k, Hist(st[f"{prefix}.{k}.values"].copy(), st[f"{prefix}.{k}.counts"].copy()))


class OriginCounts(_Acc):
    """Null, zero, out-of-day and backwards origin times (in file/message order) and receive-minus-origin lag."""

    SCALARS = ("rows", "null", "zero", "out_of_day", "backwards", "prev_t")
    HISTS = ("latency",)

    def __init__(self, day_lo: int, day_hi: int, tol_ns: int) -> None:
        self.lo, self.hi = day_lo - tol_ns, day_hi + tol_ns
        self.rows = self.null = self.zero = self.out_of_day = self.backwards = 0
        self.prev_t = NULL
        self.latency = Hist()

    def update(self, t: np.ndarray, r: np.ndarray | None) -> None:
        self.rows += len(t)
        ok = t != NULL
        self.null += int((~ok).sum())
        self.zero += int((t == 0).sum())
        self.out_of_day += int((ok & (t != 0) & ((t < self.lo) | (t >= self.hi))).sum())
        tv = t[ok]
        if len(tv):
            seq = np.r_[self.prev_t, tv] if self.prev_t != NULL else tv
            self.backwards += int((np.diff(seq) < 0).sum())
            self.prev_t = int(tv[-1])
        if r is not None:
            both = ok & (r != NULL)
            self.latency.add((r[both] - t[both]) // LATENCY_UNIT_NS)

    @property
    def invalid(self) -> int:
        return self.null + self.zero + self.out_of_day + self.backwards

    def summary(self) -> dict:
        lat = self.latency.compact()
        pct = (
            {f"p{q}": lat.quantile(q / 100) * LATENCY_UNIT_NS / MS for q in (1, 50, 90, 99)}
            | {
                "min": float(lat.values[0]) * LATENCY_UNIT_NS / MS,
                "max": float(lat.values[-1]) * LATENCY_UNIT_NS / MS,
            }
            if len(lat.values)
            else {}
        )
        return {
            "rows": self.rows,
            "null": self.null,
            "zero": self.zero,
            "out_of_day": self.out_of_day,
            "backwards": self.backwards,
            "invalid_share": self.invalid / self.rows if self.rows else 0.0,
            "latency_ms": pct,
        }


class TradeScan(_Acc):
    """Trade sizes, inter-arrival times (ms), 1 s log returns inside the covered minutes; origin times; ids."""

    SCALARS = ("rows", "covered_rows", "prev_ms", "cur_sec", "cur_price", "last_sec", "last_price")
    SCALARS += ("id_lo", "id_dups", "id_outside")
    ARRAYS = ("missing_ids", "missing_t", "run_starts", "run_ends")
    HISTS = ("size", "inter_ms", "ret_1s")

    def __init__(
        self,
        coverage: Coverage,
        origin: OriginCounts | None,
        id_range: tuple[int, int] | None,
        against: TradeScan | None = None,
    ):
        """``against``: the lake's scan, complete (golden: which ids the lake lacks, anywhere; each id at its first
        row in file order)."""
        self.cov, self.origin = coverage, origin
        self.against = against
        self.runs = TradeIdRuns()  # the ids seen (golden)
        self.missing_ids = np.zeros(0, np.int64)  # ids the lake lacks (golden), in the order found ...
        self.missing_t = np.zeros(0, np.int64)  # ... and the time of each one's first row
        self._missing: list[tuple[np.ndarray, np.ndarray]] = []
        self.rows = self.covered_rows = 0
        self.prev_ms = self.cur_sec = self.last_sec = NULL
        self.cur_price = self.last_price = 0
        self.size, self.inter_ms, self.ret_1s = Hist(), Hist(), Hist()
        self.id_lo, self.id_dups, self.id_outside = (id_range[0] if id_range else 0), 0, 0
        self.seen = np.zeros(id_range[1] - id_range[0] + 1 if id_range else 0, np.uint8)
        self.check_ids = id_range is not None

    run_starts = property(lambda self: self.runs.starts, lambda self, v: setattr(self.runs, "starts", v))
    run_ends = property(lambda self: self.runs.ends, lambda self, v: setattr(self.runs, "ends", v))

    def _flush_missing(self) -> None:
        if self._missing:
            self.missing_ids = np.concatenate([self.missing_ids, *(p[0] for p in self._missing)])
            self.missing_t = np.concatenate([self.missing_t, *(p[1] for p in self._missing)])
            self._missing.clear()

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        self._flush_missing()
        out = super().state(prefix)
        out[f"{prefix}.seen"] = np.packbits(self.seen)
        if self.origin is not None:
            out |= self.origin.state(prefix + ".origin")
        return out

    def load(self, prefix: str, st: dict[str, np.ndarray]) -> None:
        super().load(prefix, st)
        self.seen = np.unpackbits(st[f"{prefix}.seen"], count=len(self.seen)).copy()
        if self.origin is not None:
            self.origin.load(prefix + ".origin", st)

    def update(
        self, t: np.ndarray, r: np.ndarray | None, ids: np.ndarray, price: np.ndarray, qty: np.ndarray
    ):
        self.rows += len(t)
        if self.origin is not None:
            self.origin.update(t, r)
        if self.against is not None:
            ok = ids != NULL
            u, first = np.unique(ids[ok], return_index=True)
            new = ~self.runs.contains(u)
            u, ut = u[new], t[ok][first[new]]
            self.runs.add(u)
            lacks = self.against.lacks(u)
            if lacks.any():
                self._missing.append((u[lacks], ut[lacks]))
        if self.check_ids:
            ok = ids != NULL
            idx = ids[ok] - self.id_lo
            inside = (idx >= 0) & (idx < len(self.seen))
            self.id_outside += int((~inside).sum())
            u, c = np.unique(idx[inside], return_counts=True)
            self.id_dups += int((c - 1).sum()) + int(self.seen[u].sum())
            self.seen[u] = 1
        cov = self.cov.covered(t)
        if not cov.any():
            return
        t, price, qty = t[cov], price[cov], qty[cov]
        self.covered_rows += len(t)
        self.size.add(qty)
        # inter-arrival at Binance's resolution (ms), between consecutive covered trades of adjacent minutes
        ms = t // MS
        seq = np.r_[self.prev_ms, ms] if self.prev_ms != NULL else ms
        d = np.diff(seq)
        mins = seq // 60_000
        keep = (d >= 0) & (np.diff(mins) <= 1)
        self.inter_ms.add(d[keep])
        self.prev_ms = int(ms[-1])
        # last price of each second; a second still open at the batch end is carried
        sec = ms // 1000
        if self.cur_sec != NULL:
            sec, price = np.r_[self.cur_sec, sec], np.r_[self.cur_price, price]
        ends = np.flatnonzero(sec[1:] != sec[:-1])
        self._seconds(sec[ends], price[ends])
        self.cur_sec, self.cur_price = int(sec[-1]), int(price[-1])

    def _seconds(self, fin_sec: np.ndarray, fin_p: np.ndarray) -> None:
        if not len(fin_sec):
            return
        if self.last_sec != NULL:
            fin_sec, fin_p = np.r_[self.last_sec, fin_sec], np.r_[self.last_price, fin_p]
        ok = (np.diff(fin_sec) == 1) & (fin_p[1:] > 0) & (fin_p[:-1] > 0)
        p = fin_p.astype(np.float64)
        self.ret_1s.add(np.log(p[1:] / p[:-1])[ok])
        self.last_sec, self.last_price = int(fin_sec[-1]), int(fin_p[-1])

    def finish(self) -> None:
        if self.cur_sec != NULL:
            self._seconds(np.array([self.cur_sec]), np.array([self.cur_price]))
            self.cur_sec = NULL
        self._flush_missing()

    def lacks(self, ids: np.ndarray) -> np.ndarray:
        """Which of ``ids`` this (lake) scan never saw, inside its own id span or outside it."""
        if not self.check_ids:
            return np.ones(len(ids), bool)
        idx = ids - self.id_lo
        inside = (idx >= 0) & (idx < len(self.seen))
        out = ~inside
        out[inside] = self.seen[idx[inside]] == 0
        return out

    def id_summary(self) -> dict:
        if not self.check_ids:
            return {}
        missing = np.flatnonzero(self.seen == 0)
        ranges: list[list[int]] = []
        if len(missing):
            breaks = np.flatnonzero(np.diff(missing) != 1)
            starts = np.r_[missing[0], missing[breaks + 1]][:20]
            ends = np.r_[missing[breaks], missing[-1]][:20]
            ranges = [[int(a) + self.id_lo, int(b) + self.id_lo] for a, b in zip(starts, ends, strict=True)]
        return {
            "trade_id_span": len(self.seen),
            "trade_ids_missing": int(len(missing)),
            "trade_ids_duplicated": self.id_dups,
            "missing_trade_id_ranges": ranges,
        }


def _split_runs(
    key: np.ndarray, first: dict[str, np.ndarray], weight: np.ndarray, carry: dict[str, np.ndarray] | None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """Rows -> messages (runs of equal ``key``): first value of each column, sum of ``weight``.

    Returns the complete messages and the last one, which may continue in the next batch.
    """
    if not len(key):
        return {}, carry
    starts = np.r_[0, np.flatnonzero(key[1:] != key[:-1]) + 1]
    msgs = {k: v[starts] for k, v in first.items()}
    msgs["key"] = key[starts]
    msgs["levels"] = np.add.reduceat(weight.astype(np.int64), starts)
    if carry is not None:
        if carry["key"][0] == msgs["key"][0]:
            msgs["levels"][0] += carry["levels"][0]
            for k in first:
                msgs[k][0] = carry[k][0]
        else:
            msgs = {k: np.r_[carry[k], v] for k, v in msgs.items()}
    return {k: v[:-1] for k, v in msgs.items()}, {k: v[-1:].copy() for k, v in msgs.items()}


class _Runs(_Acc):
    """Carries the unfinished message across batches (stored with the state)."""

    CARRY = ("key", "levels", "t", "r", "first_u")

    def __init__(self) -> None:
        self.carry: dict[str, np.ndarray] | None = None

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        out = super().state(prefix)
        if self.carry is not None:
            out |= {f"{prefix}.carry.{k}": v for k, v in self.carry.items()}
        return out

    def load(self, prefix: str, st: dict[str, np.ndarray]) -> None:
        super().load(prefix, st)
        c = {k: st[f"{prefix}.carry.{k}"].copy() for k in self.CARRY if f"{prefix}.carry.{k}" in st}
        self.carry = c or None


class DeltaScan(_Runs):
    """Lake ``book_delta``: per message origin/latency, sequence order, silences, levels."""

    SCALARS = ("messages", "covered_messages", "seq_backwards", "prev_seq", "seq_min", "seq_max", "prev_t")
    ARRAYS = ("silence_t", "silence_ns")
    HISTS = ("levels",)

    def __init__(self, coverage: Coverage, origin: OriginCounts) -> None:
        super().__init__()
        self.cov, self.origin = coverage, origin
        self.messages = self.covered_messages = self.seq_backwards = 0
        self.prev_seq = self.seq_min = self.seq_max = self.prev_t = NULL
        self.silence_t = np.zeros(0, np.int64)
        self.silence_ns = np.zeros(0, np.int64)
        self.levels = Hist()

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        return super().state(prefix) | self.origin.state(prefix + ".origin")

    def load(self, prefix: str, st: dict[str, np.ndarray]) -> None:
        super().load(prefix, st)
        self.origin.load(prefix + ".origin", st)

    def update(self, seq: np.ndarray, t: np.ndarray, r: np.ndarray) -> None:
        msgs, self.carry = _split_runs(seq, {"t": t, "r": r}, np.ones(len(seq), np.int64), self.carry)
        if msgs:
            self._messages(msgs["key"], msgs["t"], msgs["r"], msgs["levels"])

    def finish(self) -> None:
        if self.carry is not None:
            c, self.carry = self.carry, None
            self._messages(c["key"], c["t"], c["r"], c["levels"])

    def _messages(self, seq: np.ndarray, t: np.ndarray, r: np.ndarray, levels: np.ndarray) -> None:
        if not len(seq):
            return
        self.messages += len(seq)
        self.origin.update(t, r)
        s = np.r_[self.prev_seq, seq] if self.prev_seq != NULL else seq
        self.seq_backwards += int((np.diff(s) <= 0).sum())
        self.prev_seq = int(seq[-1])
        lo, hi = int(seq.min()), int(seq.max())
        self.seq_min = lo if self.seq_min == NULL else min(self.seq_min, lo)
        self.seq_max = hi if self.seq_max == NULL else max(self.seq_max, hi)
        tv = t[t != NULL]
        if len(tv):
            tt = np.r_[self.prev_t, tv] if self.prev_t != NULL else tv
            gap = np.diff(tt)
            long = np.flatnonzero(gap > SILENCE_NS)
            if len(long):
                st = np.r_[self.silence_t, tt[long]]
                sn = np.r_[self.silence_ns, gap[long]]
                top = np.argsort(-sn, kind="stable")[:TOP_SILENCES]
                self.silence_t, self.silence_ns = st[top], sn[top]
            self.prev_t = int(tv[-1])
        cov = self.cov.covered(t)
        self.covered_messages += int(cov.sum())
        self.levels.add(levels[cov])


class GoldenDepthScan(_Runs):
    """Golden depth rows -> messages: levels per message (histogram, every message as captured)."""

    HISTS = ("levels",)

    def __init__(self) -> None:
        super().__init__()
        self.levels = Hist()

    def update(self, u: np.ndarray, first_u: np.ndarray, t: np.ndarray, has_level: np.ndarray) -> None:
        msgs, self.carry = _split_runs(u, {"t": t, "first_u": first_u}, has_level, self.carry)
        if msgs:
            self.levels.add(msgs["levels"])

    def finish(self) -> None:
        if self.carry is not None:
            c, self.carry = self.carry, None
            self.levels.add(c["levels"])


@dataclass
class DepthCoverage:
    """Golden depth messages (one per final update id ``u``, the first captured) against the lake's messages."""

    messages: int = 0  # golden messages
    breaks: int = 0  # messages whose first update id does not follow the previous one's final id
    before_first_snapshot: int = 0  # messages at or before ``from_u``: not counted below
    golden: int = 0  # messages after ``from_u``
    before_lake_start: int = 0  # ... the lake lacks, below its first sequence number
    inside_lake_range: int = 0
    after_lake_end: int = 0
    missing_ids: list[int] = field(default_factory=list)  # the first ``keep`` the lake lacks, ascending
    missing_t: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # each one's event time

    @property
    def missing(self) -> int:
        return self.before_lake_start + self.inside_lake_range + self.after_lake_end


DEPTH_RANGE_ROWS = 1_000_000  # golden depth rows per range of update ids (a few MB of three columns)


def depth_coverage(
    golden: Path, lake_delta: Path, from_u: int | None, lake: DeltaScan, keep: int
) -> DepthCoverage:
    """Golden messages the lake lacks, in ranges of update ids of about ``DEPTH_RANGE_ROWS`` golden rows each.
    ``lake``: the finished scan of ``lake_delta`` (its first and last sequence numbers, messages); messages after
    ``from_u`` (the day's first golden snapshot) are counted."""
    g_all = pl.scan_parquet(golden).select(
        pl.col("final_update_id").alias("u"),
        pl.col("first_update_id").fill_null(NULL).alias("first_u"),
        pl.col("event_time").cast(pl.Int64).fill_null(NULL).alias("t"),
    )
    r_all = pl.scan_parquet(lake_delta).select(pl.col("sequence_number").alias("u"))
    lo, hi, rows = (
        g_all.select(
            pl.col("u").min().alias("a"), pl.col("u").max().alias("b"), pl.col("u").count().alias("n")
        )
        .collect()
        .row(0)
    )
    out = DepthCoverage()
    if lo is None:
        return out
    width = (hi - lo) // max(1, rows // DEPTH_RANGE_ROWS) + 1
    prev_u: int | None = None
    times: list[np.ndarray] = []
    for a in range(lo, hi + 1, width):
        inside_range = pl.col("u").is_between(a, min(a + width - 1, hi))
        g = g_all.filter(inside_range).unique("u", keep="first", maintain_order=True).sort("u").collect()
        if not len(g):
            continue
        seen = g["u"].is_in(r_all.filter(inside_range).unique().collect()["u"].implode()).to_numpy()
        u, first_u, t = (g[c].to_numpy() for c in ("u", "first_u", "t"))
        out.messages += len(u)
        expect = np.r_[NULL if prev_u is None else prev_u + 1, u[:-1] + 1]
        out.breaks += int((first_u != expect)[0 if prev_u is not None else 1 :].sum())
        prev_u = int(u[-1])
        after_from = u > from_u if from_u is not None else np.ones(len(u), bool)
        out.before_first_snapshot += int((~after_from).sum())
        gu, gt = u[after_from], t[after_from]
        out.golden += len(gu)
        if lake.messages:
            lacks = ~seen[after_from]
            before, after = gu < lake.seq_min, gu > lake.seq_max
        else:
            lacks = np.ones(len(gu), bool)
            before = after = np.zeros(len(gu), bool)
        out.before_lake_start += int((lacks & before).sum())
        out.inside_lake_range += int((lacks & ~before & ~after).sum())
        out.after_lake_end += int((lacks & after).sum())
        out.missing_ids += gu[lacks][: keep - len(out.missing_ids)].tolist()
        times.append(gt[lacks])
    out.missing_t = np.concatenate(times) if times else np.zeros(0, np.int64)
    return out


# --- quotes ------------------------------------------------------------------------------------------
@dataclass
class QuoteScan:
    """Quoted spread and top-level depth (best bid size + best ask size), fixed point, of the lake ``book`` rows
    of the covered minutes and of the golden bookTicker in force at each row's sequence number (the ticker with
    the largest update id <= it: Binance sends one on every change of the best bid or ask)."""

    spread: tuple[Hist, Hist]
    depth: tuple[Hist, Hist]
    lake_rows: int = 0
    matched: int = 0


def scan_quotes(lake_book: Path, golden_ticker: Path, coverage: Coverage) -> QuoteScan:
    """One pass over each table; memory follows the lake ``book`` rows (one per snapshot), not the tickers."""
    cols = ["origin_time", "sequence_number", "bid_0_price", "bid_0_size", "ask_0_price", "ask_0_size"]
    parts: list[np.ndarray] = []
    pf = pq.ParquetFile(lake_book)
    for rg in range(pf.metadata.num_row_groups):
        for b in iter_batches(pf, cols, rg):
            a = np.stack([_int64(b, c) for c in cols])
            parts.append(a[:, coverage.covered(a[0]) & (a[2:] != NULL).all(axis=0)])
    lake = np.concatenate(parts, axis=1) if parts else np.zeros((len(cols), 0), np.int64)
    lake = lake[:, np.argsort(lake[1], kind="stable")]
    seq = lake[1]
    n = len(seq)
    best_u = np.full(n, NULL)
    best_spread = np.zeros(n, np.int64)
    best_depth = np.zeros(n, np.int64)
    pf = pq.ParquetFile(golden_ticker)
    tcols = ["update_id", "bid_price", "bid_qty", "ask_price", "ask_qty"]
    for rg in range(pf.metadata.num_row_groups if n else 0):
        for b in iter_batches(pf, tcols, rg):
            u = _int64(b, "update_id")
            k = np.searchsorted(seq, u, side="left")  # the first lake row this ticker can be in force at
            ok = k < n
            k, u = k[ok], u[ok]
            spread = (_int64(b, "ask_price") - _int64(b, "bid_price"))[ok]
            depth = (_int64(b, "bid_qty") + _int64(b, "ask_qty"))[ok]
            cand = np.full(n, NULL)
            order = np.lexsort((u, k))
            last = np.r_[k[order][1:] != k[order][:-1], True] if len(order) else np.zeros(0, bool)
            pick = order[last]
            cand[k[pick]] = u[pick]
            c_spread, c_depth = np.zeros(n, np.int64), np.zeros(n, np.int64)
            c_spread[k[pick]], c_depth[k[pick]] = spread[pick], depth[pick]
            # a ticker is in force at every later lake row too: running max over the rows, with its values
            run = np.maximum.accumulate(cand)
            src = np.maximum.accumulate(np.where((cand == run) & (cand != NULL), np.arange(n), 0))
            newer = run > best_u
            best_u[newer] = run[newer]
            best_spread[newer], best_depth[newer] = c_spread[src[newer]], c_depth[src[newer]]
    hit = best_u != NULL
    return QuoteScan(
        (Hist.of(lake[4][hit] - lake[2][hit]), Hist.of(best_spread[hit])),
        (Hist.of(lake[3][hit] + lake[5][hit]), Hist.of(best_depth[hit])),
        n,
        int(hit.sum()),
    )


# --- the pass ----------------------------------------------------------------------------------------
@dataclass
class Scans:
    coverage: Coverage
    golden_depth: GoldenDepthScan | None
    golden_trades: TradeScan | None
    lake_trades: TradeScan
    lake_delta: DeltaScan
    resumed_from: str | None = None
    checkpoints_written: int = 0


def _fingerprint(inputs: Inputs, params: dict) -> str:
    files = {}
    for name in ("lake_trades", "lake_delta", "golden_trades", "golden_depth"):
        p = inputs.present(name)
        files[name] = [str(p), p.stat().st_size, p.stat().st_mtime_ns] if p else None
    return json.dumps({"v": CHECKPOINT_VERSION, "files": files, "params": params}, sort_keys=True)


def _trade_id_range(path: Path) -> tuple[int, int] | None:
    """From the row-group statistics when every row group has them, else by one scan of the column."""
    pf = pq.ParquetFile(path)
    idx = pf.schema_arrow.get_field_index("trade_id")
    lo = hi = None
    for rg in range(pf.metadata.num_row_groups):
        st = pf.metadata.row_group(rg).column(idx).statistics
        if st is None or not st.has_min_max:
            lo = hi = None
            break
        if st.null_count == pf.metadata.row_group(rg).num_rows:
            continue
        lo = st.min if lo is None else min(lo, st.min)
        hi = st.max if hi is None else max(hi, st.max)
    else:
        return (int(lo), int(hi)) if lo is not None else None
    for rg in range(pf.metadata.num_row_groups):
        for b in iter_batches(pf, ["trade_id"], rg):
            mm = pc.min_max(b.column("trade_id"))
            if mm["min"].is_valid:
                lo = mm["min"].as_py() if lo is None else min(lo, mm["min"].as_py())
                hi = mm["max"].as_py() if hi is None else max(hi, mm["max"].as_py())
    return (int(lo), int(hi)) if lo is not None else None


ProgressFn = Callable[[str, int, int], None]


def scan_day(
    inputs: Inputs,
    day_lo: int,
    *,
    tol_ns: int,
    match_window: bool = True,
    checkpoint_dir: Path | None = None,
    checkpoint_every_s: float = 10.0,
    progress: ProgressFn | None = None,
) -> Scans:
    """Fold the four tables into accumulators in one pass each; resumable from ``checkpoint_dir``."""
    day_hi = day_lo + 86_400 * NS
    g_depth, g_trades = inputs.present("golden_depth"), inputs.present("golden_trades")
    g_sources = [(p, c) for p, c in ((g_depth, "event_time"), (g_trades, "trade_time")) if p]
    coverage = (
        Coverage.from_golden(day_lo, g_sources) if match_window and g_sources else Coverage(day_lo, None)
    )
    if match_window and not g_sources:
        coverage = Coverage(day_lo, np.zeros(1440, bool))
    gd = GoldenDepthScan() if g_depth else None
    lt = TradeScan(coverage, OriginCounts(day_lo, day_hi, tol_ns), _trade_id_range(inputs.lake_trades))
    gt = TradeScan(Coverage(day_lo, None), None, None, against=lt) if g_trades else None

    params = {"day_lo": day_lo, "tol_ns": tol_ns, "match_window": match_window, "batch": BATCH_ROWS}
    fingerprint = _fingerprint(inputs, params)
    ckpt = checkpoint_dir / "state.npz" if checkpoint_dir else None

    # phases in order: the golden trade ids are checked against the lake's as they are read, so lake trades come
    # first
    phases = ["lake_trades", "golden_trades", "golden_depth", "lake_delta"]
    scans = Scans(coverage, gd, gt, lt, None)  # type: ignore[arg-type]
    start_phase, start_rg = 0, 0
    loaded: dict[str, np.ndarray] | None = None
    if ckpt is not None and ckpt.is_file():
        try:
            with np.load(ckpt, allow_pickle=False) as z:
                st = {k: z[k] for k in z.files}
            if str(st["__fingerprint__"]) == fingerprint:
                loaded = st
                start_phase, start_rg = int(st["__phase__"]), int(st["__row_group__"])
        except (OSError, ValueError, KeyError):
            loaded = None  # unreadable or foreign checkpoint: start over
    if loaded is not None:
        for name, acc in (("golden_depth", gd), ("golden_trades", gt), ("lake_trades", lt)):
            if acc is not None and f"{name}.__present__" in loaded:
                acc.load(name, loaded)
        scans.resumed_from = f"{phases[start_phase]} row group {start_rg}"

    def build_delta() -> DeltaScan:
        return DeltaScan(coverage, OriginCounts(day_lo, day_hi, tol_ns))

    last_ckpt = time.monotonic()

    def save(phase: int, rg: int) -> None:
        nonlocal last_ckpt
        st: dict[str, np.ndarray] = {
            "__fingerprint__": np.array(fingerprint),
            "__phase__": np.array(phase),
            "__row_group__": np.array(rg),
        }
        for name, acc in (("golden_depth", gd), ("golden_trades", gt), ("lake_trades", lt)):
            if acc is not None:
                st |= acc.state(name) | {f"{name}.__present__": np.array(True)}
        if scans.lake_delta is not None:
            st |= scans.lake_delta.state("lake_delta") | {"lake_delta.__present__": np.array(True)}
        buf = io.BytesIO()
        np.savez(buf, **st)
        storage.write_bytes(ckpt, buf.getvalue())
        scans.checkpoints_written += 1
        last_ckpt = time.monotonic()

    for pi, phase in enumerate(phases):
        if pi < start_phase:
            continue
        path = {
            "golden_depth": g_depth,
            "golden_trades": g_trades,
            "lake_trades": Path(inputs.lake_trades),
            "lake_delta": Path(inputs.lake_delta),
        }[phase]
        if path is None:
            continue
        if phase == "lake_delta":
            scans.lake_delta = build_delta()
            if loaded is not None and pi == start_phase and "lake_delta.__present__" in loaded:
                scans.lake_delta.load("lake_delta", loaded)
        pf = pq.ParquetFile(path)
        n_rg = pf.metadata.num_row_groups
        for rg in range(start_rg if pi == start_phase else 0, n_rg):
            _scan_row_group(phase, pf, rg, gd, gt, lt, scans.lake_delta)
            if ckpt is not None and time.monotonic() - last_ckpt >= checkpoint_every_s:
                save(pi, rg + 1)
            if progress is not None:
                progress(phase, rg + 1, n_rg)
        acc = {"golden_depth": gd, "golden_trades": gt, "lake_trades": lt}.get(phase) or scans.lake_delta
        acc.finish()
    if ckpt is not None:
        ckpt.unlink(missing_ok=True)
    return scans


def _scan_row_group(phase, pf, rg, gd, gt, lt, ld) -> None:
    if phase == "golden_depth":
        for b in iter_batches(pf, ["event_time", "first_update_id", "final_update_id", "price"], rg):
            gd.update(
                _int64(b, "final_update_id"),
                _int64(b, "first_update_id"),
                _int64(b, "event_time"),
                _valid(b, "price"),
            )
    elif phase in ("golden_trades", "lake_trades"):
        golden = phase == "golden_trades"
        tcol, rcol = ("trade_time", None) if golden else ("origin_time", "received_time")
        # golden aggTrades (a USD-M venue's trade stream) are keyed by their aggTrade id, as its lake is
        id_col = "agg_trade_id" if golden and "agg_trade_id" in pf.schema_arrow.names else "trade_id"
        cols = [tcol, id_col, "price", "quantity"] + ([rcol] if rcol else [])
        acc = gt if golden else lt
        for b in iter_batches(pf, cols, rg):
            acc.update(
                _int64(b, tcol),
                _int64(b, rcol) if rcol else None,
                _int64(b, id_col),
                _int64(b, "price"),
                _int64(b, "quantity"),
            )
    else:
        for b in iter_batches(pf, ["origin_time", "received_time", "sequence_number"], rg):
            ld.update(_int64(b, "sequence_number"), _int64(b, "origin_time"), _int64(b, "received_time"))
