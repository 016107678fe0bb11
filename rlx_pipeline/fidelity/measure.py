"""Fidelity of a day's unified stream against the golden samples, component by component.

- ``trades``: golden trades found in the reconstruction with the same id, price, quantity and taker side, and the
  reverse (reconstructed trades Binance never sent) inside the golden window. Whether the lake's trade ids are
  trade ids or aggTrade ids is detected from the data (the share of lake ids found among each) and the matching
  golden table is used.
- ``book``: at every golden depth update id ``u`` that the reconstruction also ends a message at, the golden
  book (rebuilt from its REST snapshot and diffs by Binance's rules, ``golden_book``) against the reconstructed
  top 1 / 5 / N (the unified stream's ``book.parquet``: its last delta state at ``u``). Levels beyond the range
  the reconstruction knows completely (``bid_known_min_price`` / ``ask_known_max_price``: never in a lake
  snapshot, never touched by a delta) are *unknowable*, counted apart and excluded from the blocking figure;
  everything inside it must be exact. Trades are compared from ``events.parquet``. States inside the stream's
  invalid intervals (``book_valid`` false: a proven loss until the next snapshot) are *flagged, not wrong*:
  compared and counted apart (``flagged``), excluded from the blocking figure; a mismatch in a state marked
  valid is an error. The golden side likewise: after a silent gap in a capture the golden replay has no valid
  book until its next snapshot bridges the diffs (``golden_book``), so nothing is compared against it there
  (its spans: ``golden_invalid_spans``).
- ``book_ticker``: golden bookTicker messages at those update ids against the reconstructed best bid/ask; and,
  not gated, the golden book's own best bid/ask against bookTicker (is the reference itself consistent?).
- ``coverage``: golden update ids absent from the reconstruction's delta messages anywhere in the golden window
  (after the day's first golden snapshot, ``golden.window``: start, middle or end, so a lake day cut short cannot
  read 100%), a gated component; and, reported, the
  reconstruction's ids absent from golden inside the common id range; as counts and as runs of consecutive ids
  with their time ranges. Golden trades absent from the reconstruction are in ``trades_golden_in_recon``.
- ``timing``: reconstructed origin_time minus golden event time, and the receive-time difference, of matched
  trades and of matched book messages.

The blocking figure is the minimum over the components that could be measured (each with its numerator and
denominator in the report): a weak component cannot hide behind a strong one.

Memory: nothing held grows with the day's length except the timing samples, for exact percentiles and the
histograms (``TimingDist``: distinct values with their counts while they repeat, as origin times on Binance's
millisecond grid do, a handful of values a day; the values themselves, 8 bytes each, where most are distinct, as
receive times in ns are; only the origin series are kept for the plots). Update ids and trade ids are compared range by range
(``_id_ranges``: consecutive id ranges of about ``chunk`` ids each), each range reading only its own ids from each
side (parquet statistics prune the rest); what crosses a range edge is carried as bounded state (counts, the first
``MAX_LISTED`` mismatches, the open run of missing ids and the ``MAX_LISTED`` longest runs). The golden depth is
replayed message by message (``golden_book``; its book holds the levels Binance's does) and compared in chunks of
states, each chunk reading only its own range of the unified book states and of bookTicker: the states whose
reconstruction equals the golden top N (the usual case) are counted at once with numpy, the others compared level
by level (``compare_side``).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from rlx_pipeline import venues
from rlx_pipeline.book.read import check_pair
from rlx_pipeline.book.unified import intervals_path_for
from rlx_pipeline.fidelity.golden_book import GoldenBook, GoldenStates
from rlx_pipeline.golden.window import first_snapshot_update_id
from rlx_pipeline.layout import DataLayout

CHUNK = 200_000  # ids per range read (update ids, trade ids): a few MB of columns
STATES_CHUNK = 20_000  # golden book states compared per read of the unified book states
MAX_LISTED = 20  # first mismatches listed per component


@dataclass
class Ratio:
    matched: int = 0
    total: int = 0

    @property
    def value(self) -> float | None:
        return self.matched / self.total if self.total else None

    def to_dict(self) -> dict:
        return {"matched": self.matched, "total": self.total, "value": self.value}


@dataclass
class Fidelity:
    date: str
    symbol: str
    measurable: bool
    reason: str = ""
    top_n: int = 10
    trade_id_kind: str = "-"
    trades_golden_in_recon: Ratio = field(default_factory=Ratio)
    trades_recon_in_golden: Ratio = field(default_factory=Ratio)
    top1: Ratio = field(default_factory=Ratio)
    top5: Ratio = field(default_factory=Ratio)
    topn: Ratio = field(default_factory=Ratio)
    topn_raw: Ratio = field(default_factory=Ratio)  # all levels, unknowable ones included (not gated)
    unknowable_levels: int = 0
    flagged: Ratio = field(default_factory=Ratio)  # top-N comparisons in invalid intervals (not gated)
    intervals: list[dict] = field(
        default_factory=list
    )  # the stream's invalid intervals (invalid_intervals.parquet)
    golden_invalid_spans: list[dict] = field(
        default_factory=list
    )  # the golden reference's own untrusted spans
    book_ticker: Ratio = field(default_factory=Ratio)
    coverage: Ratio = field(
        default_factory=Ratio
    )  # golden update ids found among the reconstruction's messages
    golden_self_book_ticker: Ratio = field(default_factory=Ratio)  # golden replay vs bookTicker (not gated)
    golden_update_ids: int = 0
    recon_update_ids: int = 0
    golden_ids_missing: int = 0
    recon_ids_not_in_golden: int = 0
    missing_ranges: list[dict] = field(default_factory=list)
    extra_ranges: list[dict] = field(default_factory=list)
    replay: dict = field(default_factory=dict)
    timing_ms: dict = field(default_factory=dict)
    mismatches: list[dict] = field(default_factory=list)
    # per minute of the day: compared, topN mismatched, bookTicker compared/mismatched, spreads (sum, in 1e-8)
    timeline: list[dict] = field(default_factory=list)
    timing_samples: dict[str, TimingDist] = field(default_factory=dict, repr=False)  # for the histograms

    def components(self) -> dict[str, Ratio]:
        return {
            "trades_golden_in_recon": self.trades_golden_in_recon,
            "trades_recon_in_golden": self.trades_recon_in_golden,
            "book_top1": self.top1,
            "book_top5": self.top5,
            "book_topN": self.topn,
            "book_ticker": self.book_ticker,
            "coverage_update_ids": self.coverage,
        }

    @property
    def score(self) -> float | None:
        values = [r.value for r in self.components().values() if r.value is not None]
        return min(values) if values and self.measurable else None

    def to_dict(self) -> dict:
        return {
            "date": self.date,
            "symbol": self.symbol,
            "measurable": self.measurable,
            "reason": self.reason,
            "score": self.score,
            "top_n": self.top_n,
            "trade_id_kind": self.trade_id_kind,
            "components": {k: v.to_dict() for k, v in self.components().items()},
            "book_topN_all_levels": self.topn_raw.to_dict(),
            "unknowable_levels": self.unknowable_levels,
            "flagged_not_wrong": self.flagged.to_dict(),
            "invalid_intervals": self.intervals,
            "golden_invalid_spans": self.golden_invalid_spans,
            "golden_book_vs_book_ticker": self.golden_self_book_ticker.to_dict(),
            "golden_update_ids": self.golden_update_ids,
            "recon_update_ids": self.recon_update_ids,
            "golden_update_ids_missing_in_recon": self.golden_ids_missing,
            "recon_update_ids_not_in_golden": self.recon_ids_not_in_golden,
            "missing_in_recon_ranges": self.missing_ranges,
            "not_in_golden_ranges": self.extra_ranges,
            "golden_replay": self.replay,
            "timing_ms": self.timing_ms,
            "first_mismatches": self.mismatches,
            "timeline": self.timeline,
        }


def ns_to_ms(ns: np.ndarray) -> np.ndarray:
    return ns / 1e6


def ns_to_ms_polars(ns: np.ndarray) -> np.ndarray:
    """What polars gives for ``ns / 1e6``: it multiplies by the reciprocal, which differs from the division in the
    last bit for some values (the trade figures were computed in polars: the report keeps them to the bit)."""
    return ns * 1e-6


class TimingDist:
    """Time differences in ns (int64), for the report's figures in ms: ``summary`` gives what ``np.percentile``
    (linear) and min/max give on the values in ms (``to_ms``), exactly. Held as sorted distinct values with their
    counts while fewer than half the values are distinct (16 bytes a distinct value: at most 8 bytes a value), as
    the values themselves (8 bytes each) once more are. Values are taken in batches (``add``, ``append``)."""

    _FLUSH = 1 << 16

    def __init__(self, to_ms: Callable[[np.ndarray], np.ndarray] = ns_to_ms) -> None:
        self.to_ms = to_ms
        self.n = 0
        self.values = np.empty(0, np.int64)  # counts form: sorted distinct values ...
        self.counts = np.empty(0, np.int64)  # ... and how often each was seen
        self.raw: list[np.ndarray] | None = None  # values form: the values (one sorted array once read)
        self._raw_sorted = False
        self._pending = array("q")

    def __len__(self) -> int:
        return self.n + len(self._pending)

    def add(self, d: np.ndarray) -> None:
        self._pending.frombytes(np.ascontiguousarray(d, np.int64).tobytes())
        if len(self._pending) >= self._FLUSH:
            self._flush()

    def append(self, d: int) -> None:
        self._pending.append(d)
        if len(self._pending) >= self._FLUSH:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        d = np.frombuffer(self._pending, np.int64).copy()
        self._pending = array("q")
        self.n += d.size
        if self.raw is not None:
            self.raw.append(d)
            self._raw_sorted = False
            return
        u, c = np.unique(d, return_counts=True)
        v = np.concatenate([self.values, u])
        order = np.argsort(v, kind="stable")
        v, c = v[order], np.concatenate([self.counts, c])[order]
        first = np.r_[True, v[1:] != v[:-1]]
        self.values, self.counts = v[first], np.add.reduceat(c, np.flatnonzero(first))
        if 2 * self.values.size > self.n:  # mostly distinct: the values take less room than values and counts
            self.raw, self._raw_sorted = [np.repeat(self.values, self.counts)], True
            self.values = self.counts = np.empty(0, np.int64)

    def _sorted(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(sorted values, None) or (sorted distinct values, cumulative counts)."""
        self._flush()
        if self.raw is None:
            return self.values, np.cumsum(self.counts)
        if len(self.raw) != 1 or not self._raw_sorted:
            self.raw = [np.concatenate(self.raw)]
            self.raw[0].sort()
            self._raw_sorted = True
        return self.raw[0], None

    def summary(self) -> dict[str, float]:
        """p1, p50, p99, min, max (ms), nonzero and n: ``np.percentile``'s linear method on the sorted values."""
        v, cum = self._sorted()
        n = self.n

        def at(k: int) -> float:
            i = k if cum is None else int(np.searchsorted(cum, k, "right"))
            return float(self.to_ms(v[i : i + 1])[0])

        out = {}
        for q in (1, 50, 99):
            virtual = (n - 1) * (q / 100)
            lo = hi = n - 1
            if virtual < n - 1:
                lo = int(np.floor(virtual))
                hi = lo + 1
            a, b, gamma = at(lo), at(hi), virtual - lo
            diff = b - a
            out[f"p{q}"] = b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma
        i, j = np.searchsorted(v, 0, "left"), np.searchsorted(v, 0, "right")
        zeros = int(j - i) if cum is None else int(self.counts[i:j].sum())
        out.update(min=at(0), max=at(n - 1), nonzero=n - zeros, n=n)
        return out

    def histogram_input(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(values in ms, their counts or None): what ``np.histogram`` counts as the values themselves."""
        v, cum = self._sorted()
        return self.to_ms(v), (None if cum is None else self.counts)

    def values_ms(self) -> np.ndarray:
        """Every value in ms, sorted (for tests and notebooks: the day's size)."""
        v, cum = self._sorted()
        return self.to_ms(v if cum is None else np.repeat(v, self.counts))


def compare_side(
    golden: list[tuple[int, int]],
    recon: list[tuple[int, int]],
    bound: int | None,
    is_bid: bool,
    depth: int | None = None,
) -> tuple[bool, int]:
    """(exact, unknowable levels) for the golden top ``depth`` levels against the reconstruction's (best first).

    A reconstructed level Binance did not have, or with another size, is wrong. A golden level the reconstruction
    lacks is wrong inside the range the reconstruction knows completely (``bound``) and unknowable beyond it.
    ``golden`` shorter than ``depth`` is the whole side (a thin book): a reconstructed level beyond its last one,
    among the top ``depth``, is a phantom level and wrong.
    """
    j, unknowable = 0, 0
    for p, q in golden:
        if j < len(recon) and (recon[j][0] > p if is_bid else recon[j][0] < p):
            return False, unknowable
        if j < len(recon) and recon[j][0] == p:
            if recon[j][1] != q:
                return False, unknowable
            j += 1
        elif bound is not None and (p >= bound if is_bid else p <= bound):
            return False, unknowable
        else:
            unknowable += 1
    if depth is not None and len(golden) < depth and j < min(len(recon), depth):
        return False, unknowable
    return True, unknowable


def _in(col: str, lo: int, hi: int, first: bool) -> pl.Expr:
    """Rows whose id is in [lo, hi]; the first range also takes the rows without an id, so every row is read once."""
    inside = pl.col(col).is_between(lo, hi)
    return inside | pl.col(col).is_null() if first else inside


def _span(ids: pl.LazyFrame, col: str) -> tuple[int, int, int] | None:
    """(smallest id, largest id, about how many distinct ids) of ``col``, streaming; ``None`` without ids."""
    lo, hi, n = (
        ids.select(pl.col(col).min(), pl.col(col).max().alias("hi"), pl.col(col).approx_n_unique().alias("n"))
        .collect(engine="streaming")
        .row(0)
    )
    return None if lo is None else (int(lo), int(hi), max(int(n), 1))


def _id_ranges(spans: Sequence[tuple[int, int, int] | None], chunk: int) -> Iterator[tuple[int, int, bool]]:
    """Consecutive closed id ranges ``(lo, hi, first)`` covering every id of the sides' ``spans``, in increasing
    order, each holding about ``chunk`` distinct ids of the densest side; sides whose spans do not overlap are
    walked apart (no ranges over the ids between them)."""
    merged: list[list[int]] = []
    for lo, hi, n in sorted(s for s in spans if s is not None):
        width = max(1, chunk * (hi - lo + 1) // n)
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1], merged[-1][2] = max(merged[-1][1], hi), min(merged[-1][2], width)
        else:
            merged.append([lo, hi, width])
    first = True
    for lo, hi, width in merged:
        for a in range(lo, hi + 1, width):
            yield a, min(a + width - 1, hi), first
            first = False


_RUN_SCHEMA = {
    "first_u": pl.Int64,
    "last_u": pl.Int64,
    "count": pl.UInt32,
    "from_ns": pl.Int64,
    "to_ns": pl.Int64,
}


def _run_table(ids: pl.DataFrame) -> pl.DataFrame:
    """Runs of consecutive update ids (``ids``: columns ``u``, ``t``, sorted by ``u``) with their time range."""
    return (
        ids.with_columns(
            ((pl.col("u").diff().fill_null(0) != 1) & pl.col("u").diff().is_not_null()).alias("brk")
        )
        .with_columns(pl.col("brk").cum_sum().alias("run"))
        .group_by("run", maintain_order=True)
        .agg(
            pl.col("u").first().alias("first_u"),
            pl.col("u").last().alias("last_u"),
            pl.len().alias("count"),
            pl.col("t").min().alias("from_ns"),
            pl.col("t").max().alias("to_ns"),
        )
        .drop("run")
        .cast(_RUN_SCHEMA)
    )


def _longest(runs: pl.DataFrame, limit: int) -> pl.DataFrame:
    # the longest first, ties in id order
    return runs.sort(["count", "first_u"], descending=[True, False]).head(limit)


class _Runs:
    """Runs of consecutive update ids fed range by range in increasing id order (a run may span ranges): every id
    counted, the ``MAX_LISTED`` longest runs kept (ties: the first), listed in id order with their time range."""

    def __init__(self) -> None:
        self.top = pl.DataFrame(schema=_RUN_SCHEMA)
        self.open = pl.DataFrame(schema=_RUN_SCHEMA)  # the last run so far: the next range may continue it

    def add(self, ids: pl.DataFrame) -> None:
        if not len(ids):
            return
        runs = _run_table(ids)
        if len(self.open):
            o, n = self.open.row(0, named=True), runs.row(0, named=True)
            if o["last_u"] is not None and n["first_u"] == o["last_u"] + 1:
                times = [t for t in (o["from_ns"], n["from_ns"], o["to_ns"], n["to_ns"]) if t is not None]
                joined = {
                    "first_u": o["first_u"],
                    "last_u": n["last_u"],
                    "count": o["count"] + n["count"],
                    "from_ns": min(times) if times else None,
                    "to_ns": max(times) if times else None,
                }
                runs = pl.concat([pl.DataFrame([joined], schema=_RUN_SCHEMA), runs.slice(1)])
            else:
                runs = pl.concat([self.open, runs])
        self.open = runs.tail(1)
        self.top = _longest(pl.concat([self.top, runs.head(len(runs) - 1)]), MAX_LISTED)

    def listed(self) -> list[dict]:
        runs = _longest(pl.concat([self.top, self.open]), MAX_LISTED).sort("first_u")
        return [
            {
                **r,
                "from": str(np.datetime64(r["from_ns"], "ns")) + "Z" if r["from_ns"] is not None else None,
                "to": str(np.datetime64(r["to_ns"], "ns")) + "Z" if r["to_ns"] is not None else None,
            }
            for r in runs.iter_rows(named=True)
        ]


def _rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows if path.is_file() else 0


def _trades(f: Fidelity, layout: DataLayout, date: str, symbol: str, uni_path: Path, w0: int, w1: int,
            chunk: int) -> None:  # fmt: skip
    g_path, agg_path = layout.golden("trades", date, symbol), layout.golden("agg_trades", date, symbol)
    n_trades, n_agg = _rows(g_path), _rows(agg_path)
    if not n_trades and not n_agg:
        return
    r_all = (
        pl.scan_parquet(uni_path)
        .filter((pl.col("event_type") == 2) & pl.col("origin_time").cast(pl.Int64).is_between(w0, w1))
        .select(
            "trade_id",
            "price",
            "size",
            "side_is_bid",
            pl.col("origin_time").cast(pl.Int64).alias("t"),
            pl.col("received_time").cast(pl.Int64).alias("r"),
        )
    )
    r_span = _span(r_all, "trade_id")

    # the share of lake trade ids (rows) found among the golden trade ids, and among the aggTrade ids
    kinds = [(g_path, "trade_id"), (agg_path, "agg_trade_id")]
    golden_ids = [pl.scan_parquet(p).select(pl.col(c).alias("trade_id")) if n else None
                  for (p, c), n in zip(kinds, (n_trades, n_agg), strict=True)]  # fmt: skip
    found, seen = [0, 0], [0, 0]
    for lo, hi, first in _id_ranges([r_span], chunk):
        r = r_all.filter(_in("trade_id", lo, hi, first)).select("trade_id").collect()["trade_id"]
        for k, ids in enumerate(golden_ids):
            if ids is not None:
                x = r.is_in(ids.filter(_in("trade_id", lo, hi, first)).collect()["trade_id"].implode())
                found[k], seen[k] = found[k] + int(x.sum()), seen[k] + x.count()
    in_trade, in_agg = (found[k] / seen[k] if seen[k] else 0.0 for k in range(2))
    use_agg = (in_agg > in_trade) or not n_trades
    f.trade_id_kind = "aggTrade ids" if use_agg else "trade ids"
    g_all = pl.scan_parquet(agg_path if use_agg else g_path).select(
        pl.col("agg_trade_id" if use_agg else "trade_id").alias("trade_id"),
        "price",
        pl.col("quantity").alias("size"),
        (~pl.col("is_buyer_maker")).alias("side_is_bid"),  # m: the buyer is the maker, so the taker sold
        pl.col("trade_time").cast(pl.Int64).alias("gt"),
        pl.col("capture_ns").alias("gr"),
    )
    same = (
        (pl.col("price") == pl.col("price_r"))
        & (pl.col("size") == pl.col("size_r"))
        & (pl.col("side_is_bid") == pl.col("side_is_bid_r"))
    ).fill_null(False)
    wrong: list[dict] = []
    extra: list[dict] = []
    origin, receive = TimingDist(ns_to_ms_polars), TimingDist(ns_to_ms_polars)
    gi, rg = f.trades_golden_in_recon, f.trades_recon_in_golden
    for lo, hi, first in _id_ranges([r_span, _span(g_all, "trade_id")], chunk):
        g = g_all.filter(_in("trade_id", lo, hi, first)).collect()
        r = r_all.filter(_in("trade_id", lo, hi, first)).collect()
        joined = g.join(r, on="trade_id", how="left", suffix="_r")
        exact = joined.filter(same)
        gi.matched, gi.total = gi.matched + len(exact), gi.total + len(g)
        # one golden row per id: a trade id captured twice must not count its reconstructed trade twice
        back = r.join(g.select("trade_id", "gt").unique("trade_id", keep="first"), on="trade_id", how="left")
        rg.matched, rg.total = rg.matched + int(back["gt"].is_not_null().sum()), rg.total + len(r)
        for row in joined.filter(~same).sort("trade_id").head(MAX_LISTED - len(wrong)).iter_rows(named=True):
            wrong.append(
                {
                    "component": "trade" if row["price_r"] is not None else "trade_missing",
                    "trade_id": row["trade_id"],
                    "golden": [row["price"], row["size"], "buy" if row["side_is_bid"] else "sell"],
                    "recon": None
                    if row["price_r"] is None
                    else [row["price_r"], row["size_r"], "buy" if row["side_is_bid_r"] else "sell"],
                    "golden_trade_time_ns": row["gt"],
                }
            )
        for row in (
            back.filter(pl.col("gt").is_null())
            .sort("trade_id")
            .head(MAX_LISTED - len(extra))
            .iter_rows(named=True)
        ):
            extra.append(
                {
                    "component": "trade_extra",
                    "trade_id": row["trade_id"],
                    "recon": [row["price"], row["size"], "buy" if row["side_is_bid"] else "sell"],
                    "origin_time_ns": row["t"],
                }
            )
        m = exact.select(pl.col("t") - pl.col("gt"), pl.col("r") - pl.col("gr"))
        origin.add(m["t"].to_numpy())
        receive.add(m["r"].to_numpy())
    f.mismatches += wrong + extra
    if len(origin):
        f.timing_samples["trade_origin"] = origin
        f.timing_ms["origin_minus_golden_trade_time"] = origin.summary()
        f.timing_ms["lake_receive_minus_capture"] = receive.summary()


def _coverage(f: Fidelity, golden: pl.LazyFrame, recon: pl.LazyFrame, chunk: int) -> None:
    """Golden update ids absent from the reconstruction, and the reconstruction's absent from golden inside the
    common id range, range by range (``golden`` and ``recon``: columns ``u``, ``t``)."""
    g_span, r_span = _span(golden, "u"), _span(recon, "u")
    common = (max(g_span[0], r_span[0]), min(g_span[1], r_span[1])) if g_span and r_span else None
    missing, extra = _Runs(), _Runs()
    for lo, hi, first in _id_ranges([g_span, r_span], chunk):
        g = golden.filter(_in("u", lo, hi, first)).unique("u", keep="first").sort("u").collect()
        r = recon.filter(_in("u", lo, hi, first)).unique("u", keep="last").sort("u").collect()
        f.golden_update_ids += len(g)
        f.recon_update_ids += len(r)
        gone = g.join(r, on="u", how="anti").sort("u")
        f.golden_ids_missing += len(gone)
        missing.add(gone)
        if common is not None:
            more = r.filter(pl.col("u").is_between(*common)).join(g, on="u", how="anti").sort("u")
            f.recon_ids_not_in_golden += len(more)
            extra.add(more)
    if f.golden_update_ids:
        f.coverage = Ratio(f.golden_update_ids - f.golden_ids_missing, f.golden_update_ids)
        f.missing_ranges = missing.listed()
    f.extra_ranges = extra.listed()


def _intervals(events: Path) -> list[dict]:
    """The stream's invalid intervals (times as ns), or none for a stream built before they existed."""
    path = intervals_path_for(events)
    if not path.is_file():
        return []
    return pl.read_parquet(path).with_columns(pl.col("start", "end").cast(pl.Int64)).to_dicts()


def _message_states(book: pl.LazyFrame) -> pl.LazyFrame:
    """``book.parquet`` rows of deltas. One per message, unless the stream was built with ``book_every="row"``
    (one per row): callers keep the last one per sequence number, the book after the whole message."""
    return book.filter(pl.col("event_type") == 1)


_TOP = ("bid_price", "bid_qty", "ask_price", "ask_qty")
_TOP_SCHEMA = {"pos": pl.Int64, "u": pl.Int64, **dict.fromkeys(_TOP, pl.Int64)}


_NO_LEVEL = (None, None)


def _top(pos: int, u: int, bids: list, asks: list) -> tuple:
    """(position, u, best bid price and size, best ask price and size); a side with no level is null."""
    return (pos, u, *(bids[0] if bids else _NO_LEVEL), *(asks[0] if asks else _NO_LEVEL))


def _bt_items(compared: pl.DataFrame, kind: int, top_name: str) -> list[tuple]:
    """The first ``MAX_LISTED`` bookTicker mismatches of ``compared`` as ``(sort key, item)``, in walk order."""
    out = []
    for r in compared.filter(~pl.col("ok")).head(MAX_LISTED).iter_rows(named=True):
        top, bt = tuple(r[c] for c in _TOP), tuple(r[f"{c}_bt"] for c in _TOP)
        item = (
            {"u": r["u"], "golden_book": top, "book_ticker": bt}
            if top_name == "golden_book"
            else {"u": r["u"], "book_ticker": bt, "recon": top}
        )
        out.append(((r["pos"], kind, r["bt_row"]), item))
    return out


class _BookComparison:
    def __init__(self, f: Fidelity, book_path: Path, bt_path: Path, top_n: int) -> None:
        self.f, self.book_path, self.bt_path, self.n = f, book_path, bt_path, top_n
        self.cols = [f"{s}_{i}_{w}" for s in ("bid", "ask") for i in range(top_n) for w in ("price", "size")]
        self.timeline: dict[int, list[int]] = {}
        self.dt = TimingDist()  # origin and receive time differences of the compared states
        self.dr = TimingDist()
        self.listed = {"book": 0, "book_ticker": 0, "golden_book_ticker": 0}

    def _minute(self, event_ns: int) -> list[int]:
        # compared, topN bad, bookTicker compared, bookTicker bad, spread n, golden spread sum, recon spread sum,
        # flagged (inside invalid intervals)
        return self.timeline.setdefault((event_ns // 60_000_000_000) % 1440, [0, 0, 0, 0, 0, 0, 0, 0])

    def _list(self, listed: list[tuple[tuple[int, int, int], dict]], kind: str, rows: list[tuple]) -> None:
        """Mismatches of ``kind`` (``(sort key, item)``: in the order a state-by-state walk meets them) up to what
        is left of its ``MAX_LISTED``."""
        rows = rows[: MAX_LISTED - self.listed[kind]]
        self.listed[kind] += len(rows)
        listed += [(key, {"component": kind, **item}) for key, item in rows]

    @staticmethod
    def _book_ticker(bt: pl.DataFrame, top: pl.DataFrame) -> pl.DataFrame:
        """bookTicker messages at the states' update ids against their top (``top``: state position ``pos``,
        ``u``, best bid and ask price and size, null for a side with no level), in walk order, with ``ok``."""
        out = top.join(bt, on="u", how="inner").sort("pos", "bt_row")
        ok = pl.all_horizontal(pl.col(c).eq_missing(pl.col(f"{c}_bt")) for c in _TOP)
        return out.with_columns(ok.alias("ok"))

    def chunk(self, states: GoldenStates) -> None:
        if not len(states):
            return
        f, n, k = self.f, self.n, len(states)
        u, ev, cap = states.u, states.event_ns, states.capture_ns
        lo, hi = int(u.min()), int(u.max())
        recon = (
            _message_states(pl.scan_parquet(self.book_path))
            .filter(pl.col("sequence_number").is_between(lo, hi))
            .unique("sequence_number", keep="last", maintain_order=True)
            .select(
                "sequence_number",
                pl.lit(True).alias("has"),
                pl.col("origin_time").cast(pl.Int64),
                pl.col("received_time").cast(pl.Int64),
                "bid_known_min_price",
                "ask_known_max_price",
                "book_valid",
                *self.cols,
            )
            .collect()
        )
        # the reconstruction's state at each golden state's u, in the states' order (none: ``has`` false)
        at = pl.DataFrame({"sequence_number": u}).join(
            recon, on="sequence_number", how="left", maintain_order="left"
        )
        has = at["has"].fill_null(False).to_numpy()
        valid = at["book_valid"].fill_null(False).to_numpy()
        levels = at.select(self.cols)
        r_null = levels.select(pl.all().is_null()).to_numpy()
        r_val = levels.fill_null(0).to_numpy()
        # the golden top N flattened like the reconstruction's columns, 0 where a side has fewer levels
        g, nb, na = states.levels, states.nb, states.na
        slot = np.arange(2 * n) // 2
        g_pad = np.concatenate([slot >= nb[:, None], slot >= na[:, None]], axis=1)
        # the usual case: the reconstruction's levels are exactly the golden top N, so every comparison holds (no
        # level unknowable, none missing, none extra): counted here at once
        exact = has & (r_null == g_pad).all(axis=1) & (r_val == g).all(axis=1)
        fast = exact & valid
        nf = int(fast.sum())
        for ratio in (f.top1, f.top5, f.topn, f.topn_raw):
            ratio.total += nf
            ratio.matched += nf
        t = at["origin_time"].fill_null(0).to_numpy()
        rcv = at["received_time"].fill_null(0).to_numpy()
        self.dt.add(t[fast] - ev[fast])
        self.dr.add(rcv[fast] - cap[fast])
        minute = (ev // 60_000_000_000) % 1440
        both = fast & (nb > 0) & (na > 0)
        spread = g[:, 2 * n] - g[:, 0]
        for m in np.unique(minute[fast]).tolist():
            mn = self.timeline.setdefault(m, [0] * 8)
            sel = fast & (minute == m)
            mn[0] += int(sel.sum())
            sel &= both
            total = int(spread[sel].sum())
            mn[4] += int(sel.sum())
            mn[5] += total
            mn[6] += total  # the reconstruction's top is the golden one
        top_cols = {
            "bid_price": g[:, 0],
            "bid_qty": g[:, 1],
            "ask_price": g[:, 2 * n],
            "ask_qty": g[:, 2 * n + 1],
        }
        g_top = pl.DataFrame({"pos": np.arange(k), "u": u, **top_cols}).with_columns(
            *(pl.when(pl.lit(nb > 0)).then(pl.col(c)).alias(c) for c in ("bid_price", "bid_qty")),
            *(pl.when(pl.lit(na > 0)).then(pl.col(c)).alias(c) for c in ("ask_price", "ask_qty")),
        )
        r_tops: list[tuple] = []
        r_minutes: list[int] = []
        bad_books: list[tuple] = []
        slow = np.flatnonzero(has & ~fast)
        for pos, r in zip(slow.tolist(), at[slow].iter_rows(), strict=True):
            s = states[pos]
            rcv_t, kb, ka, ok_state = r[3], r[4], r[5], r[6]
            lv = r[7:]
            if exact[pos]:
                rb, ra = s.bids, s.asks
            else:
                rb = [
                    (p, q) for p, q in zip(lv[0 : 2 * n : 2], lv[1 : 2 * n : 2], strict=True) if p is not None
                ]
                ra = [
                    (p, q) for p, q in zip(lv[2 * n :: 2], lv[2 * n + 1 :: 2], strict=True) if p is not None
                ]
            if not ok_state:  # inside an invalid interval: flagged, not wrong (not in any gated figure)
                f.flagged.total += 1
                f.flagged.matched += bool(exact[pos]) or (
                    compare_side(s.bids[:n], rb, kb, True)[0] & compare_side(s.asks[:n], ra, ka, False)[0]
                )
                self._minute(s.event_ns)[7] += 1
                continue
            self.dt.append(r[2] - s.event_ns)
            self.dr.append(rcv_t - s.capture_ns)
            mn = self._minute(s.event_ns)
            for depth, ratio in ((1, f.top1), (5, f.top5), (n, f.topn)):
                ok_b, unk_b = compare_side(s.bids[:depth], rb, kb, True, depth)
                ok_a, unk_a = compare_side(s.asks[:depth], ra, ka, False, depth)
                ok = ok_b and ok_a
                ratio.total += 1
                ratio.matched += ok
                if depth == n:
                    f.unknowable_levels += unk_b + unk_a
                    mn[0] += 1
                    mn[1] += not ok
                    if not ok:
                        bad_books.append(
                            (
                                (pos, 1, 0),
                                {
                                    "u": s.u,
                                    "event_ns": s.event_ns,
                                    "golden_bids": s.bids[:3],
                                    "recon_bids": rb[:3],
                                    "golden_asks": s.asks[:3],
                                    "recon_asks": ra[:3],
                                    "known": [kb, ka],
                                },
                            )
                        )
            f.topn_raw.total += 1
            f.topn_raw.matched += (
                rb == s.bids[: len(rb)]
                and ra == s.asks[: len(ra)]
                and (len(rb), len(ra)) == (len(s.bids), len(s.asks))
            )
            if s.bids and s.asks and rb and ra:
                mn[4] += 1
                mn[5] += s.asks[0][0] - s.bids[0][0]
                mn[6] += ra[0][0] - rb[0][0]
            r_tops.append(_top(pos, s.u, rb, ra))
            r_minutes.append(s.event_ns // 60_000_000_000 % 1440)
        listed: list[tuple[tuple[int, int, int], dict]] = []
        self._list(listed, "book", bad_books)
        if self.bt_path.is_file():
            bt = (
                pl.scan_parquet(self.bt_path)
                .with_row_index("bt_row")
                .filter(pl.col("update_id").is_between(lo, hi))
                .select("bt_row", pl.col("update_id").alias("u"), *(pl.col(c).alias(f"{c}_bt") for c in _TOP))
                .collect()
            )
            gb = self._book_ticker(bt, g_top)
            f.golden_self_book_ticker.total += len(gb)
            f.golden_self_book_ticker.matched += int(gb["ok"].sum())
            self._list(listed, "golden_book_ticker", _bt_items(gb, 0, "golden_book"))
            r_top = pl.concat(
                [
                    g_top.filter(pl.lit(fast)).with_columns(minute=pl.lit(minute[fast])),
                    pl.DataFrame(r_tops, schema=_TOP_SCHEMA, orient="row").with_columns(
                        minute=pl.Series(r_minutes, dtype=pl.Int64)
                    ),
                ]
            )
            rb_ = self._book_ticker(bt, r_top)
            f.book_ticker.total += len(rb_)
            f.book_ticker.matched += int(rb_["ok"].sum())
            for m, c, bad in rb_.group_by("minute").agg(pl.len(), (~pl.col("ok")).sum()).iter_rows():
                self.timeline[m][2] += c
                self.timeline[m][3] += bad
            self._list(listed, "book_ticker", _bt_items(rb_, 2, "recon"))
        f.mismatches += [item for _, item in sorted(listed, key=lambda x: x[0])]

    def finish(self) -> None:
        f = self.f
        f.timeline = [
            {
                "minute": k,
                "compared": v[0],
                "topN_mismatched": v[1],
                "book_ticker_compared": v[2],
                "book_ticker_mismatched": v[3],
                "golden_spread_mean": v[5] / v[4] if v[4] else None,
                "recon_spread_mean": v[6] / v[4] if v[4] else None,
                "flagged": v[7],
            }
            for k, v in sorted(self.timeline.items())
        ]
        if len(self.dt):
            f.timing_samples["book_origin"] = self.dt
            f.timing_ms["origin_minus_golden_depth_event_time"] = self.dt.summary()
            f.timing_ms["lake_receive_minus_depth_capture"] = self.dr.summary()
            self.dr = TimingDist()


def measure(layout: DataLayout, date: str, symbol: str, top_n: int, chunk: int = CHUNK) -> Fidelity:
    uni_path, book_path = layout.unified(date, symbol), layout.unified_book(date, symbol)
    f = Fidelity(date, symbol, measurable=False, top_n=top_n)
    for p in (uni_path, book_path):
        if not p.is_file():
            f.reason = f"no unified stream at {p}"
            return f
    check_pair(uni_path, book_path)  # both files from the same build
    f.intervals = _intervals(uni_path)
    g_times = []
    for table, col in (("trades", "trade_time"), ("agg_trades", "trade_time"), ("depth", "event_time")):
        p = layout.golden(table, date, symbol)
        if p.is_file():
            mm = pl.scan_parquet(p).select(
                pl.col(col).cast(pl.Int64).min().alias("a"), pl.col(col).cast(pl.Int64).max().alias("b")
            )
            a, b = mm.collect(engine="streaming").row(0)
            g_times += [t for t in (a, b) if t is not None]
    if not g_times:
        f.reason = "no golden samples for this day: fidelity is not measurable"
        return f
    f.measurable = True
    w0, w1 = min(g_times), max(g_times)
    uni = pl.scan_parquet(uni_path)
    _trades(f, layout, date, symbol, uni_path, w0, w1, chunk)

    depth_path = layout.golden("depth", date, symbol)
    if not depth_path.is_file():
        return f
    from_u = first_snapshot_update_id(layout.golden("snapshots", date, symbol))
    golden_ids = (
        pl.scan_parquet(depth_path)
        .select(pl.col("final_update_id").alias("u"), pl.col("event_time").cast(pl.Int64).alias("t"))
        .filter(pl.col("u") > from_u if from_u is not None else pl.lit(True))
    )
    recon_ids = uni.filter(
        pl.col("event_type") == 1
    ).select(  # every delta message, seeded or not: the lake's
        pl.col("sequence_number").alias("u"), pl.col("origin_time").cast(pl.Int64).alias("t")
    )
    _coverage(f, golden_ids, recon_ids, chunk)

    # --- book and bookTicker, chunk by chunk -------------------------------------------------------------
    cmp = _BookComparison(f, book_path, layout.golden("book_ticker", date, symbol), top_n)
    rules = venues.for_symbol(symbol).depth_rules
    book = GoldenBook(layout.golden("snapshots", date, symbol), depth_path, top_n, rules)
    for states in book.chunks(min(chunk, STATES_CHUNK)):
        cmp.chunk(states)
    cmp.finish()
    f.replay = book.stats.to_dict()
    f.golden_invalid_spans = book.invalid_spans
    return f


def report_paths(layout: DataLayout, date: str, symbol: str) -> Path:
    return layout.report_dir("fidelity", date, symbol)
