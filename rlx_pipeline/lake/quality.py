"""Quality of a staged Crypto Lake day: pure functions over batches, so a day of any size fits in memory.

Each ``assess_*`` consumes the staged table as an iterable of polars DataFrames (``iter_staged`` reads a
staged file by row groups) and returns a ``QualityReport``: the figures, and findings each with its limit
and verdict. Thresholds come from ``settings.Thresholds``; the Dagster checks only call these functions.

What the lake can and cannot tell: ``book_delta`` keeps Binance's final update id ``u`` per message but not
the first one ``U``, so a step between consecutive messages' ids is normal (every update of a 100 ms window
takes an id) and cannot be told from a lost message: steps are reported, never gated. A decrease can only
be an error and is gated. Trade ids are consecutive on Binance, so missing ids are lost trades; the day's ids are
held as runs of consecutive ids (``TradeIdRuns``), so the check's memory follows the number of gaps, not of trades.

A day cut short: Crypto Lake publishes whole UTC days, so each table must have rows in ``min_hours`` of the day's
24 hours (``RLX_LAKE_MIN_HOURS``, default 23: one quiet hour of a listed pair is allowed); the finding names the
hours without a row. And the three tables record the same market: a table whose first row comes more than a
tolerance after the other tables' first row, or whose last row comes that long before theirs, is truncated
whatever the day's length (``extent_findings``). The tolerance is ``TRUNCATION_TOLERANCE_S`` (5 minutes), far above
the tables' cadence (depth messages every 100 ms while the book moves, trades of a listed pair seconds apart: the
real ETHUSDT capture's longest pause between trades is 3.8 s, between depth messages 0.3 s), or 3 times the
table's own mean spacing when its rows are sparser (a ``book`` with a snapshot every few minutes is not cut short
because its last one comes minutes before the end).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandera.errors
import polars as pl

from rlx_pipeline import storage
from rlx_pipeline.lake import schemas as lake_schemas
from rlx_pipeline.schemas import BOOK_LEVELS
from rlx_pipeline.settings import Thresholds

NS_PER_S = 1_000_000_000
NS_PER_HOUR = 3600 * NS_PER_S
KEYS = {
    "trades": ("origin_time", "received_time", "trade_id", "side", "price", "quantity"),
    "book": ("origin_time", "received_time", "sequence_number"),
    "book_delta": ("origin_time", "received_time", "sequence_number", "side_is_bid", "price", "size"),
}
_LEVEL_PRICES = [f"{s}_{i}_price" for s in ("bid", "ask") for i in range(BOOK_LEVELS)]
_LEVEL_SIZES = [f"{s}_{i}_size" for s in ("bid", "ask") for i in range(BOOK_LEVELS)]
MAX_FAILURE_EXAMPLES = 5
TRUNCATION_TOLERANCE_S = 300.0


@dataclass(frozen=True)
class Finding:
    name: str
    value: float
    limit: str
    passed: bool
    detail: str = ""


@dataclass
class QualityReport:
    table: str
    date: str
    stats: dict[str, Any]
    findings: list[Finding]

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.findings)

    @property
    def failed(self) -> list[Finding]:
        return [f for f in self.findings if not f.passed]

    def to_markdown(self) -> str:
        lines = [
            f"**{self.table}** {self.date}: {'PASSED' if self.passed else 'FAILED'}",
            "",
            "| check | value | limit | verdict | detail |",
            "| --- | --- | --- | --- | --- |",
        ]
        for f in self.findings:
            value = f"{f.value:.6g}" if isinstance(f.value, float) else str(f.value)
            lines.append(f"| {f.name} | {value} | {f.limit} | {'ok' if f.passed else 'FAIL'} | {f.detail} |")
        return "\n".join(lines)


def iter_staged(
    path: str | Path, batch_rows: int = 1_000_000, columns: list[str] | None = None
) -> Iterator[pl.DataFrame]:
    """A staged parquet file as polars DataFrames of at most ``batch_rows`` rows."""
    pf = storage.streaming_parquet(path)
    for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
        yield pl.from_arrow(batch)


def day_window_ns(date: str, tolerance_s: float) -> tuple[int, int, int]:
    """(day start ns, lowest valid ns, highest valid ns) for a UTC day with ``tolerance_s`` either side."""
    start = int(dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC).timestamp()) * NS_PER_S
    tol = int(tolerance_s * NS_PER_S)
    return start, start - tol, start + 24 * NS_PER_HOUR + tol


def hour_ranges(hours: Iterable[int]) -> str:
    """``{0, 1, 2, 5}`` -> ``"00-02, 05"``: hours of the day as compact ranges."""
    out: list[str] = []
    for h in sorted(hours):
        if out and out[-1][1] == h - 1:
            out[-1][1] = h
        else:
            out.append([h, h])
    return ", ".join(f"{a:02d}" if a == b else f"{a:02d}-{b:02d}" for a, b in out)


Extent = tuple[int, int, int]  # first and last origin_time ns inside the day (+- tolerance), rows


def staged_extent(path: str | Path, date: str, tolerance_s: float) -> Extent | None:
    """The ``Extent`` of a staged table; ``None`` without rows inside the day."""
    _, lo, hi = day_window_ns(date, tolerance_s)
    ot = pl.col("origin_time").cast(pl.Int64)
    inside = ot.filter(ot.is_between(lo, hi))
    a, b, n = (
        pl.scan_parquet(path)
        .select(inside.min().alias("a"), inside.max().alias("b"), inside.len().alias("n"))
        .collect()
        .row(0)
    )
    return None if a is None else (int(a), int(b), int(n))


def extent_findings(
    table: str,
    extents: dict[str, Extent | None],
    tolerance_s: float = TRUNCATION_TOLERANCE_S,
    name: str = "not_truncated",
) -> list[Finding]:
    """Whether ``table`` starts late or ends early against the day's other tables (``extents``: table -> its
    ``Extent``, the table itself included). Not measurable without another table: reported, passes."""
    own = extents.get(table)
    if own is not None and own[2] > 1:  # a sparse table's own spacing widens its tolerance
        tolerance_s = max(tolerance_s, 3 * (own[1] - own[0]) / (own[2] - 1) / NS_PER_S)
    others = {k: v for k, v in extents.items() if k != table and v is not None}
    if own is None or not others:
        why = "no rows" if own is None else "no other staged table of the day to compare with"
        return [Finding(name, 0.0, "reported", True, f"{table} not compared ({why})")]
    first = min(v[0] for v in others.values())
    last = max(v[1] for v in others.values())
    late, early = (own[0] - first) / NS_PER_S, (last - own[1]) / NS_PER_S
    worst = max(late, early, 0.0)

    def ts(ns: int) -> str:
        return dt.datetime.fromtimestamp(ns // NS_PER_S, tz=dt.UTC).strftime("%H:%M:%S")

    parts = []
    if late > tolerance_s:
        parts.append(
            f"{table} starts {late:.0f} s late ({ts(own[0])} vs {ts(first)}): missing {ts(first)}-{ts(own[0])}"
        )
    if early > tolerance_s:
        parts.append(
            f"{table} ends {early:.0f} s early ({ts(own[1])} vs {ts(last)}): missing {ts(own[1])}-{ts(last)}"
        )
    return [
        Finding(
            name,
            worst,
            f"<= {tolerance_s:.0f} s later start / earlier end than {', '.join(sorted(others))}",
            not parts,
            "; ".join(parts) or f"{table} spans {ts(own[0])}-{ts(own[1])}, the others {ts(first)}-{ts(last)}",
        )
    ]


@dataclass
class _Common:
    """Figures every table shares, accumulated batch by batch."""

    table: str
    date: str
    tolerance_s: float
    rows: int = 0
    null_keys: dict[str, int] = field(default_factory=dict)
    nonpositive_prices: int = 0
    negative_sizes: int = 0
    origin_null: int = 0
    origin_zero: int = 0
    origin_outside: int = 0
    hours: set[int] = field(default_factory=set)
    first_ns: int | None = None  # first and last origin_time inside the day (+- tolerance)
    last_ns: int | None = None
    schema_failures: int = 0
    schema_examples: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.day_start, self.lo, self.hi = day_window_ns(self.date, self.tolerance_s)
        self.null_keys = {k: 0 for k in KEYS[self.table]}

    def add(self, df: pl.DataFrame, prices: list[str], sizes: list[str], nullable_levels: bool) -> None:
        self.rows += df.height
        for k in self.null_keys:
            self.null_keys[k] += df[k].null_count()
        # A null level is an absent one in `book`; in trades and deltas a null price is a null key (above).
        self.nonpositive_prices += int(
            df.select(pl.sum_horizontal([(pl.col(c) <= 0).sum() for c in prices])).item()
        )
        self.negative_sizes += int(
            df.select(pl.sum_horizontal([(pl.col(c) < 0).sum() for c in sizes])).item()
        )
        ot = df["origin_time"].cast(pl.Int64)
        self.origin_null += ot.null_count()
        self.origin_zero += int((ot == 0).sum())
        self.origin_outside += int(((ot != 0) & ((ot < self.lo) | (ot > self.hi))).sum())
        valid = ot.filter((ot >= self.lo) & (ot <= self.hi))
        if len(valid):
            a, b = int(valid.min()), int(valid.max())
            self.first_ns = a if self.first_ns is None else min(self.first_ns, a)
            self.last_ns = b if self.last_ns is None else max(self.last_ns, b)
        hours = ((ot - self.day_start) // NS_PER_HOUR).drop_nulls()
        self.hours.update(int(h) for h in hours.filter((hours >= 0) & (hours < 24)).unique())
        try:
            lake_schemas.BY_TABLE[self.table].validate(df, lazy=True)
        except pandera.errors.SchemaErrors as exc:
            fc = exc.failure_cases
            self.schema_failures += fc.height
            if len(self.schema_examples) < MAX_FAILURE_EXAMPLES:
                for row in fc.head(MAX_FAILURE_EXAMPLES).iter_rows(named=True):
                    self.schema_examples.append(f"{row['column']}:{row['check']}={row['failure_case']}")
        except pandera.errors.SchemaError as exc:  # structural: wrong columns or types
            self.schema_failures += max(df.height, 1)
            self.schema_examples.append(str(exc).splitlines()[0])

    @property
    def extent(self) -> Extent | None:
        return None if self.first_ns is None else (self.first_ns, self.last_ns, self.rows)

    @property
    def origin_invalid(self) -> int:
        return self.origin_null + self.origin_zero + self.origin_outside

    def stats(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "null_keys": dict(self.null_keys),
            "nonpositive_prices": self.nonpositive_prices,
            "negative_sizes": self.negative_sizes,
            "origin_time_null": self.origin_null,
            "origin_time_zero": self.origin_zero,
            "origin_time_outside_day": self.origin_outside,
            "origin_time_invalid_share": self.origin_invalid / self.rows if self.rows else 1.0,
            "origin_time_tolerance_s": self.tolerance_s,
            "hours_covered": len(self.hours),
            "hours_missing": hour_ranges(set(range(24)) - self.hours),
            "first_origin_ns": self.first_ns,
            "last_origin_ns": self.last_ns,
            "schema_failure_cases": self.schema_failures,
        }

    def findings(
        self,
        th: Thresholds,
        min_rows: int,
        min_hours: int,
        others: dict[str, Extent | None] | None,
    ) -> list[Finding]:
        extent = extent_findings(self.table, {**(others or {}), self.table: self.extent})
        nulls = sum(self.null_keys.values())
        share = self.origin_invalid / self.rows if self.rows else 1.0
        return [
            Finding("not_empty", self.rows, f">= {min_rows} rows", self.rows >= max(min_rows, 1)),
            Finding(
                "hours_covered",
                len(self.hours),
                f">= {min_hours} of 24 UTC hours (RLX_LAKE_MIN_HOURS)",
                len(self.hours) >= min_hours,
                f"hours (UTC) without a row: {hour_ranges(set(range(24)) - self.hours) or 'none'}",
            ),
            Finding(
                "schema_valid",
                self.schema_failures,
                "== 0 pandera failure cases",
                self.schema_failures == 0,
                "; ".join(self.schema_examples[:MAX_FAILURE_EXAMPLES]),
            ),
            Finding(
                "no_null_keys",
                nulls,
                "== 0",
                nulls == 0,
                ", ".join(f"{k}={v}" for k, v in self.null_keys.items() if v),
            ),
            Finding(
                "prices_positive", self.nonpositive_prices, "== 0 prices <= 0", self.nonpositive_prices == 0
            ),
            Finding("sizes_nonnegative", self.negative_sizes, "== 0 sizes < 0", self.negative_sizes == 0),
            Finding(
                "origin_time_valid",
                share,
                f"<= {th.origin_time_invalid_max} invalid share",
                self.rows > 0 and share <= th.origin_time_invalid_max,
                f"null={self.origin_null} zero={self.origin_zero} outside={self.origin_outside} "
                f"(day +/- {self.tolerance_s:g} s)",
            ),
            *extent,
        ]


# --- trades ------------------------------------------------------------------------------------------
class TradeIdRuns:
    """The ids seen so far as sorted, disjoint runs of consecutive ids (``starts[i]..ends[i]``, never adjacent), and
    how many ids were seen again: the figures of the whole day's sorted unique ids in any arrival order, in memory
    that follows the number of gaps (one run on a complete day), not of ids. An id far outside the others is one
    more run, reported like any other."""

    def __init__(self) -> None:
        self.starts = np.empty(0, np.int64)
        self.ends = np.empty(0, np.int64)
        self.ids = 0  # ids added, duplicates included
        self.duplicates = 0  # ids added that were already seen (in this batch or before)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Which of ``ids`` were seen."""
        run = np.searchsorted(self.starts, ids, "right") - 1
        return (run >= 0) & (ids <= self.ends[np.maximum(run, 0)]) if self.starts.size else run >= 0

    def add(self, ids: np.ndarray) -> None:
        if not ids.size:
            return
        self.ids += int(ids.size)
        u = np.unique(ids.astype(np.int64, copy=False))
        self.duplicates += int(ids.size - u.size)
        if self.starts.size:
            seen = self.contains(u)
            self.duplicates += int(seen.sum())
            u = u[~seen]
            if not u.size:
                return
        cut = np.flatnonzero(np.diff(u) != 1) + 1  # a wrapped difference is never 1: u is sorted
        starts = np.concatenate([self.starts, u[np.r_[0, cut]]])
        ends = np.concatenate([self.ends, u[np.r_[cut - 1, u.size - 1]]])
        order = np.argsort(starts, kind="stable")
        starts, ends = starts[order], ends[order]
        # the runs are disjoint; one follows on from the previous when it starts right after it (starts[1:] - 1
        # cannot wrap: only the first run can start at the smallest int64)
        new = np.r_[True, starts[1:] - 1 > ends[:-1]]
        self.starts, self.ends = starts[new], ends[np.r_[new[1:], True]]

    @property
    def unique(self) -> int:
        return int((self.ends - self.starts).sum()) + int(self.starts.size)

    @property
    def first(self) -> int | None:
        return int(self.starts[0]) if self.starts.size else None

    @property
    def last(self) -> int | None:
        return int(self.ends[-1]) if self.ends.size else None

    @property
    def gaps(self) -> int:
        """Steps of more than one between consecutive unique ids."""
        return max(int(self.starts.size) - 1, 0)

    @property
    def expected(self) -> int:
        """Ids from the first to the last."""
        return self.last - self.first + 1 if self.starts.size else 0


def assess_trades(
    batches: Iterable[pl.DataFrame],
    date: str,
    th: Thresholds,
    *,
    min_rows: int = 1,
    min_hours: int = 1,
    others: dict[str, Extent | None] | None = None,
) -> QualityReport:
    """``others``: the day's other staged tables' extents (``staged_extent``), for the truncation finding."""
    common = _Common("trades", date, th.origin_time_tolerance_s)
    ids = TradeIdRuns()
    side_invalid = 0
    for df in batches:
        common.add(df, ["price"], ["quantity"], nullable_levels=False)
        ids.add(df["trade_id"].drop_nulls().to_numpy())
        side_invalid += int((~df["side"].is_in(["buy", "sell"])).sum())
    duplicates, gaps, expected = ids.duplicates, ids.gaps, ids.expected
    missing = expected - ids.unique
    missing_share = missing / expected if expected else 0.0
    stats = common.stats() | {
        "trade_id_first": ids.first,
        "trade_id_last": ids.last,
        "trade_id_duplicates": duplicates,
        "trade_id_gaps": gaps,
        "trade_id_missing": missing,
        "trade_id_missing_share": missing_share,
        "side_invalid": side_invalid,
    }
    findings = common.findings(th, min_rows, min_hours, others) + [
        Finding("side_buy_or_sell", side_invalid, "== 0", side_invalid == 0),
        Finding("trade_id_no_duplicates", duplicates, "== 0", duplicates == 0),
        Finding(
            "trade_id_gaps",
            missing_share,
            "== 0 missing (a lost trade cannot be flagged in the stream)",
            missing_share == 0,
            f"{gaps} gaps, {missing} missing ids of {expected}",
        ),
    ]
    return QualityReport("trades", date, stats, findings)


# --- book --------------------------------------------------------------------------------------------
def first_usable_snapshot(df: pl.DataFrame) -> tuple[int, int] | None:
    """(sequence_number, origin_time ns) of the first row that can seed a book: both sides, not crossed."""
    usable = df.filter(
        pl.col("sequence_number").is_not_null()
        & pl.col("bid_0_price").is_not_null()
        & pl.col("ask_0_price").is_not_null()
        & (pl.col("bid_0_price") < pl.col("ask_0_price"))
    ).head(1)
    if usable.height == 0:
        return None
    return int(usable["sequence_number"][0]), int(usable["origin_time"].cast(pl.Int64)[0] or 0)


def first_usable_snapshot_in(batches: Iterable[pl.DataFrame]) -> tuple[int, int] | None:
    """The first usable snapshot of a staged book, reading only as far as needed."""
    for df in batches:
        found = first_usable_snapshot(df)
        if found is not None:
            return found
    return None


def assess_book(
    batches: Iterable[pl.DataFrame],
    date: str,
    th: Thresholds,
    *,
    min_rows: int = 1,
    min_hours: int = 1,
    others: dict[str, Extent | None] | None = None,
) -> QualityReport:
    """``others``: the day's other staged tables' extents (``staged_extent``), for the truncation finding."""
    common = _Common("book", date, th.origin_time_tolerance_s)
    first: tuple[int, int] | None = None
    decreases = crossed = 0
    prev_last: int | None = None
    for df in batches:
        common.add(df, _LEVEL_PRICES, _LEVEL_SIZES, nullable_levels=True)
        if first is None:
            first = first_usable_snapshot(df)
        crossed += int((df["bid_0_price"] >= df["ask_0_price"]).sum())
        seq = df["sequence_number"].drop_nulls().to_numpy()
        if seq.size:
            decreases += int((np.diff(seq) < 0).sum()) + int(prev_last is not None and seq[0] < prev_last)
            prev_last = int(seq[-1])
    stats = common.stats() | {
        "first_usable_sequence_number": first[0] if first else None,
        "first_usable_origin_ns": first[1] if first else None,
        "sequence_decreases": decreases,
        "crossed_rows": crossed,
    }
    findings = common.findings(th, min_rows, min_hours, others) + [
        Finding(
            "has_usable_snapshot", int(first is not None), "== 1", first is not None, "two-sided, not crossed"
        ),
        Finding("sequence_never_decreases", decreases, "== 0", decreases == 0),
        Finding("not_crossed", crossed, "== 0 rows with best bid >= best ask", crossed == 0),
    ]
    return QualityReport("book", date, stats, findings)


# --- book_delta --------------------------------------------------------------------------------------
def assess_book_delta(
    batches: Iterable[pl.DataFrame],
    date: str,
    th: Thresholds,
    *,
    first_snapshot_sequence: int | None,
    min_rows: int = 1,
    min_hours: int = 1,
    others: dict[str, Extent | None] | None = None,
) -> QualityReport:
    """``first_snapshot_sequence``: the staged book's first usable snapshot (``None``: there is none);
    ``others``: the day's other staged tables' extents (``staged_extent``). book_delta is staged last (after book
    and trades): its check also judges each of the others against the rest (``not_truncated_<table>``), so a
    table checked before its peers were staged is still compared."""
    common = _Common("book_delta", date, th.origin_time_tolerance_s)
    decreases = messages = repeats = unseeded_rows = unseeded_msgs = steps_gt1 = 0
    max_step = 0
    prev_seq: int | None = None
    prev_rt: int | None = None
    step_samples: list[np.ndarray] = []
    for df in batches:
        common.add(df, ["price"], ["size"], nullable_levels=False)
        part = df.select(pl.col("sequence_number"), pl.col("received_time").cast(pl.Int64)).drop_nulls()
        if part.height == 0:
            continue
        seq = part["sequence_number"].to_numpy()
        rt = part["received_time"].to_numpy()
        pseq = np.concatenate([[seq[0] if prev_seq is None else prev_seq], seq[:-1]])
        prt = np.concatenate([[rt[0] if prev_rt is None else prev_rt], rt[:-1]])
        new_msg = (seq != pseq) | (rt != prt)
        if prev_seq is None:
            new_msg[0] = True
        messages += int(new_msg.sum())
        repeats += int(((seq == pseq) & (rt != prt)).sum())
        step = seq - pseq
        decreases += int((step < 0).sum())
        pos = step[step > 0]
        steps_gt1 += int((pos > 1).sum())
        if pos.size:
            max_step = max(max_step, int(pos.max()))
            step_samples.append(pos[:: max(1, pos.size // 10_000)])
        if first_snapshot_sequence is None:
            unseeded_rows += seq.size
            unseeded_msgs += int(new_msg.sum())
        else:
            before = seq <= first_snapshot_sequence
            unseeded_rows += int(before.sum())
            unseeded_msgs += int((before & new_msg).sum())
        prev_seq, prev_rt = int(seq[-1]), int(rt[-1])
    rows = common.rows
    unseeded_share = unseeded_rows / rows if rows else 1.0
    samples = np.concatenate(step_samples) if step_samples else np.empty(0, np.int64)
    stats = common.stats() | {
        "messages": messages,
        "sequence_decreases": decreases,
        "sequence_repeated_in_new_message": repeats,
        "sequence_steps_gt1": steps_gt1,
        "sequence_step_median": float(np.median(samples)) if samples.size else None,
        "sequence_step_max": max_step,
        "first_snapshot_sequence_number": first_snapshot_sequence,
        "unseeded_rows": unseeded_rows,
        "unseeded_messages": unseeded_msgs,
        "unseeded_share": unseeded_share,
    }
    findings = common.findings(th, min_rows, min_hours, others) + [
        Finding("sequence_never_decreases", decreases, "== 0", decreases == 0),
        Finding(
            "sequence_steps",
            steps_gt1,
            "reported (no U in the lake: a step is not a gap)",
            True,
            f"{messages} messages, max step {max_step}, {repeats} repeated ids",
        ),
        Finding(
            "seeded_by_snapshot",
            unseeded_share,
            f"<= {th.unseeded_delta_max} share of deltas before the first usable book snapshot",
            unseeded_share <= th.unseeded_delta_max,
            f"{unseeded_rows} rows / {unseeded_msgs} messages precede snapshot seq {first_snapshot_sequence}",
        ),
    ]
    extents = {**(others or {}), "book_delta": common.extent}
    for table in sorted(others or {}):
        findings += extent_findings(table, extents, name=f"not_truncated_{table}")
    return QualityReport("book_delta", date, stats, findings)
