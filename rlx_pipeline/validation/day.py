"""Validate one day and symbol: the staged Crypto Lake tables against the golden samples of the same minutes.

Checks (thresholds from ``Thresholds``; the Dagster checks are ``validation_<name>``):

- ``ks``: two-sample K-S D per metric, lake vs golden, inside the minutes the golden samples cover, gated on
  every D (the value shown is the largest): trade size (lake ``trades`` vs golden ``@trade``, both raw trades),
  inter-arrival time of those trades in whole ms (Binance's resolution), 1 s log returns of their prices (last
  price of consecutive seconds), levels per depth message (lake rows per ``sequence_number`` vs golden levels
  per ``@depth`` message). p-value, Wasserstein distance and n are reported, not gated (docs/statistics.md).
  Quoted spread and top-level depth (best bid + best ask size): lake ``book`` rows against the golden bookTicker
  in force at the same update id (like with like: the same book state seen by two recorders).
- ``tail``: |alpha_lake - alpha_golden| of trade sizes (CSN power-law fits of the same samples).
- ``gaps``: the worst of three rates: golden depth messages (by final update id ``u``) absent from the lake's
  ``book_delta`` inside the update-id range both have; missing plus duplicated lake trade ids over the id span;
  lake messages whose ``sequence_number`` does not increase. Long pauses between lake messages are listed.
- ``origin_time``: null, zero, out-of-day (with tolerance) and backwards origin times of lake trades and delta
  messages (the worse share of the two); receive-minus-origin latency percentiles are reported, not gated.

A check that could not measure (no golden samples that day or in the window, under 20 values a side for K-S, under
100 positive sizes a side for the tail) never reads passed: its status is ``not_checked`` (``passed`` False, a
warning in Dagster) with the reason. Policy ``require_golden`` (``RLX_REQUIRE_GOLDEN``) decides what that means for
the verdict: False (default) lets the checks that did measure (``gaps`` on trade ids and sequence order,
``origin_time``) decide it, and records the unchecked ones apart; True makes them ``failed``, so a day is never
reconstructed without a golden comparison.

Memory and checkpoints: ``validation.scan`` (the quote pass and the golden depth coverage, read range of update ids
by range after the scans, are not checkpointed: they rerun on resume).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlx_pipeline import venues
from rlx_pipeline.fixed_point import SCALE
from rlx_pipeline.golden.window import first_snapshot_update_id
from rlx_pipeline.lake.quality import hour_ranges
from rlx_pipeline.layout import DataLayout
from rlx_pipeline.settings import Thresholds
from rlx_pipeline.validation.scan import (
    NS,
    DepthCoverage,
    Inputs,
    ProgressFn,
    QuoteScan,
    Scans,
    depth_coverage,
    scan_day,
    scan_quotes,
)
from rlx_pipeline.validation.stats import KS, Hist, PowerLaw, ks_hist, power_law_hist

# lost update ids handed to reconstruction; beyond, snapshots that disagree still flag them
MAX_LOST_IDS = 100_000

METRICS = (
    "trade_size",
    "inter_arrival_ms",
    "log_return_1s",
    "levels_per_message",
    "quoted_spread",
    "top_level_depth",
)


PASSED, FAILED, NOT_CHECKED = "passed", "failed", "not_checked"


@dataclass
class CheckOutcome:
    name: str
    checked: bool
    passed: bool
    value: float | None
    threshold: float
    detail: str
    n: int = 0
    status: str = (
        ""  # passed | failed | not_checked (could not measure: never passed); default from ``passed``
    )

    def __post_init__(self) -> None:
        self.status = self.status or (PASSED if self.passed else FAILED)

    def to_dict(self) -> dict:
        return self.__dict__.copy()


@dataclass
class DayValidation:
    date: str
    symbol: str
    window_ns: tuple[int, int] | None  # first and last covered minute, None without golden samples
    covered_minutes: int = 0
    require_golden: bool = False
    ks: list[KS] = field(default_factory=list)
    tails: dict[str, PowerLaw | None] = field(default_factory=dict)
    gaps: dict = field(default_factory=dict)
    origin: dict = field(default_factory=dict)
    checks: list[CheckOutcome] = field(default_factory=list)
    scan: dict = field(default_factory=dict)
    hists: dict[str, tuple[Hist, Hist]] = field(default_factory=dict, repr=False)
    minutes: np.ndarray | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        """The verdict: no check failed (unchecked ones fail only under ``require_golden``)."""
        return not self.failed

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.status == FAILED]

    @property
    def not_checked(self) -> list[str]:
        return [c.name for c in self.checks if c.status == NOT_CHECKED]

    @property
    def samples(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The compared values (lake, golden) expanded from the histograms: for notebooks and in-memory peers."""
        return {
            k: (np.repeat(a.values, a.counts), np.repeat(b.values, b.counts))
            for k, (a, b) in self.hists.items()
        }

    def check(self, name: str) -> CheckOutcome:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict:
        return {
            "date": self.date,
            "symbol": self.symbol,
            "passed": self.passed,
            "failed_checks": self.failed,
            "not_checked_checks": self.not_checked,
            "golden_window": list(self.window_ns) if self.window_ns else None,
            "golden_minutes_covered": self.covered_minutes,
            "policy": {
                "require_golden": self.require_golden,
                "without_golden": "unchecked comparisons fail"
                if self.require_golden
                else "lake-only checks decide",
            },
            "compared": {
                "trade_size": "lake trades vs golden @trade (raw trades), base-asset units",
                "inter_arrival_ms": "same trades, whole ms, consecutive trades of covered minutes",
                "log_return_1s": "same trades, last price of consecutive seconds",
                "levels_per_message": "lake book_delta rows per sequence_number vs golden @depth levels",
                "quoted_spread": "lake `book` best ask - best bid vs the golden bookTicker in force at its sequence"
                " number (price units)",
                "top_level_depth": "same rows: best bid size + best ask size (base-asset units)",
            },
            "checks": [c.to_dict() for c in self.checks],
            "ks": [k.to_dict() for k in self.ks],
            "tails": {k: (v.to_dict() if v else None) for k, v in self.tails.items()},
            "gaps": self.gaps,
            "origin_time": self.origin,
            "scan": self.scan,
        }


def day_start_ns(date: str) -> int:
    return int(dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC).timestamp()) * NS


def inputs_for(layout: DataLayout, date: str, symbol: str) -> Inputs:
    """The day's files; the golden trades are those of the venue's trade stream (USD-M: ``agg_trades``)."""
    golden_trades = "agg_trades" if venues.for_symbol(symbol).trade_stream == "aggTrade" else "trades"
    return Inputs(
        layout.staged("trades", date, symbol),
        layout.staged("book_delta", date, symbol),
        layout.golden(golden_trades, date, symbol),
        layout.golden("depth", date, symbol),
        layout.staged("book", date, symbol),
        layout.golden("book_ticker", date, symbol),
        layout.golden("snapshots", date, symbol),
    )


def validate_day(
    layout: DataLayout,
    date: str,
    symbol: str,
    th: Thresholds,
    *,
    require_golden: bool = False,
    resume: bool = True,
    checkpoint_every_s: float = 10.0,
    progress: ProgressFn | None = None,
) -> DayValidation:
    """Validate the staged day against its golden samples (paths from ``layout``); checkpoints under
    ``layout.checkpoint_dir("validation", ...)`` when ``resume``."""
    return validate_inputs(
        inputs_for(layout, date, symbol),
        date,
        symbol,
        th,
        require_golden=require_golden,
        checkpoint_dir=layout.checkpoint_dir("validation", date, symbol) if resume else None,
        checkpoint_every_s=checkpoint_every_s,
        progress=progress,
    )


def _not_checked(name: str, threshold: float, why: str, require_golden: bool) -> CheckOutcome:
    policy = "fails: RLX_REQUIRE_GOLDEN" if require_golden else "a warning: the checks that measured decide"
    status = FAILED if require_golden else NOT_CHECKED
    return CheckOutcome(name, False, False, None, threshold, f"not checked ({why}); {policy}", status=status)


def validate_inputs(
    inputs: Inputs,
    date: str,
    symbol: str,
    th: Thresholds,
    *,
    require_golden: bool = False,
    match_window: bool = True,
    checkpoint_dir: Path | None = None,
    checkpoint_every_s: float = 10.0,
    progress: ProgressFn | None = None,
) -> DayValidation:
    """The checks over explicit table paths (``match_window=False`` compares whole tables, e.g. two captures)."""
    for p in (inputs.lake_trades, inputs.lake_delta):
        if not Path(p).is_file():
            raise FileNotFoundError(f"{date}|{symbol}: staged table {p} is missing: materialize lake_* first")
    day_lo = day_start_ns(date)
    s = scan_day(
        inputs,
        day_lo,
        tol_ns=int(th.origin_time_tolerance_s * NS),
        match_window=match_window,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every_s=checkpoint_every_s,
        progress=progress,
    )
    g_depth = inputs.present("golden_depth")
    from_u = first_snapshot_update_id(inputs.present("golden_snapshots"))
    depth = (
        depth_coverage(g_depth, inputs.lake_delta, from_u, s.lake_delta, MAX_LOST_IDS) if g_depth else None
    )
    lake_book, ticker = inputs.present("lake_book"), inputs.present("golden_ticker")
    quotes = scan_quotes(lake_book, ticker, s.coverage) if lake_book and ticker else None
    v = DayValidation(date, symbol, None, require_golden=require_golden)
    v.scan = {
        "resumed_from": s.resumed_from,
        "checkpoints_written": s.checkpoints_written,
        "lake_trade_rows": s.lake_trades.rows,
        "lake_trade_rows_compared": s.lake_trades.covered_rows,
        "lake_delta_messages": s.lake_delta.messages,
        "lake_delta_messages_compared": s.lake_delta.covered_messages,
        "golden_trades": s.golden_trades.rows if s.golden_trades else 0,
        "golden_depth_messages": depth.messages if depth else 0,
        "lake_book_rows_compared": quotes.lake_rows if quotes else 0,
        "lake_book_rows_with_golden_ticker": quotes.matched if quotes else 0,
    }
    mins = s.coverage.minutes
    if mins is not None and mins.any():
        idx = np.flatnonzero(mins)
        v.window_ns = (day_lo + int(idx[0]) * 60 * NS, day_lo + (int(idx[-1]) + 1) * 60 * NS)
        v.covered_minutes = int(len(idx))
        v.minutes = mins
    elif mins is None and (s.golden_trades or s.golden_depth):
        v.covered_minutes = -1  # whole tables compared
    _origin(v, s, th)
    _gaps(v, s, th, depth)
    _compare(v, s, th, depth, quotes)
    return v


def _origin(v: DayValidation, s: Scans, th: Thresholds) -> None:
    v.origin = {"trades": s.lake_trades.origin.summary(), "book_delta": s.lake_delta.origin.summary()}
    worst = max(v.origin["trades"]["invalid_share"], v.origin["book_delta"]["invalid_share"])
    v.checks.append(
        CheckOutcome(
            "origin_time",
            True,
            worst <= th.origin_time_invalid_max,
            worst,
            th.origin_time_invalid_max,
            f"worst invalid share of trades/book_delta (null, zero, out of day +-{th.origin_time_tolerance_s:g} s, "
            "backwards)",
            s.lake_trades.origin.rows + s.lake_delta.origin.rows,
        )
    )


def _golden_coverage(s: Scans, depth: DepthCoverage | None) -> dict:
    """Golden depth update ids and golden trade ids the lake lacks anywhere in the golden window: before the lake's
    first id (it starts late), inside its range (a hole), after its last (it ends early). Depth ids count after
    the day's first golden snapshot (``golden.window``)."""
    gt = s.golden_trades
    out: dict = {}
    times: list[np.ndarray] = []
    if depth is not None and depth.messages:
        out["depth"] = {
            "golden": depth.golden,
            "before_first_golden_snapshot": depth.before_first_snapshot,  # not counted: no golden book for them
            "missing": depth.missing,
            "before_lake_start": depth.before_lake_start,
            "inside_lake_range": depth.inside_lake_range,
            "after_lake_end": depth.after_lake_end,
            "first_missing_update_ids": depth.missing_ids[:20],
            # every one (up to MAX_LOST_IDS): reconstruction starts an invalid interval at each (book_valid)
            "missing_update_ids": depth.missing_ids[:MAX_LOST_IDS],
        }
        times.append(depth.missing_t)
    if gt is not None and gt.runs.unique:
        order = np.argsort(gt.missing_ids, kind="stable")  # each id once: by id
        out["trades"] = {
            "golden": gt.runs.unique,
            "missing": len(order),
            "first_missing_trade_ids": gt.missing_ids[order[:20]].tolist(),
        }
        times.append(gt.missing_t[order])
    t = np.concatenate(times) if times else np.zeros(0, np.int64)
    day_lo = s.coverage.day_lo
    hours = {int(h) for h in np.unique((t[t >= day_lo] - day_lo) // (3600 * NS)) if 0 <= h < 24}
    out["missing_hours"] = hour_ranges(hours)
    out["missing_times_ns"] = t[:: max(1, len(t) // 200)][:200].tolist()
    return out


def _gaps(v: DayValidation, s: Scans, th: Thresholds, depth_cov: DepthCoverage | None) -> None:
    ld = s.lake_delta
    g = s.lake_trades.id_summary() or {"trade_id_span": 0, "trade_ids_missing": 0, "trade_ids_duplicated": 0}
    cov = _golden_coverage(s, depth_cov)
    depth = cov.get("depth", {"golden": 0, "missing": 0, "first_missing_update_ids": []})
    trades = cov.get("trades", {"golden": 0, "missing": 0})
    golden_msgs, missing_msgs = depth["golden"], depth["missing"]
    silences = sorted(zip(ld.silence_t.tolist(), ld.silence_ns.tolist(), strict=True))
    g |= {
        "golden_depth_messages": golden_msgs,
        "lake_missing_messages": missing_msgs,
        "first_missing_update_ids": depth["first_missing_update_ids"],
        "missing_update_ids": depth.get("missing_update_ids", []),
        "missing_update_id_times_ns": cov["missing_times_ns"],
        "golden_coverage": cov,
        "golden_own_breaks": depth_cov.breaks if depth_cov else 0,
        "lake_messages": ld.messages,
        "sequence_backwards": ld.seq_backwards,
        "silences_over_5s": [{"start_ns": a, "seconds": b / NS} for a, b in silences],
    }
    rates = {
        "depth_messages": missing_msgs / golden_msgs if golden_msgs else 0.0,
        "golden_trade_ids": trades["missing"] / trades["golden"] if trades["golden"] else 0.0,
        "trade_ids": (g["trade_ids_missing"] + g["trade_ids_duplicated"]) / g["trade_id_span"]
        if g["trade_id_span"]
        else 0.0,
        "sequence_order": ld.seq_backwards / ld.messages if ld.messages else 0.0,
    }
    g["rates"] = rates
    v.gaps = g
    # a lost depth message costs seconds (the stream flags them until the next snapshot): RLX_GAP_RATE_MAX; a
    # lost trade cannot be flagged in the stream: trade ids must be complete
    limits = {k: 0.0 if "trade" in k else th.gap_rate_max for k in rates}
    over = {k: r - limits[k] for k, r in rates.items()}
    worst = max(over, key=over.get)
    if golden_msgs or trades["golden"]:
        where = ", ".join(
            f"{depth.get(k, 0)} {label}"
            for k, label in (
                ("before_lake_start", "before the lake's first"),
                ("inside_lake_range", "inside its range"),
                ("after_lake_end", "after its last"),
            )
        )
        golden_part = (
            f"{missing_msgs} of {golden_msgs} golden depth messages absent from the lake ({where}), "
            f"{trades['missing']} of {trades['golden']} golden trade ids; hours with losses (UTC): "
            f"{cov['missing_hours'] or 'none'}"
        )
    else:
        golden_part = "lake vs golden not checked (no golden samples)"
    v.checks.append(
        CheckOutcome(
            "gaps",
            True,
            over[worst] <= 0,
            rates[worst],
            limits[worst],
            f"worst: {worst}; {golden_part}; {g['trade_ids_missing']} missing and {g['trade_ids_duplicated']} "
            f"duplicated of {g['trade_id_span']} trade ids; {ld.seq_backwards} of {ld.messages} messages out of "
            "sequence order",
            golden_msgs + trades["golden"] + g["trade_id_span"] + ld.messages,
        )
    )


def _as_units(h: Hist) -> Hist:
    h.compact()
    return Hist(h.values / 10**SCALE, h.counts)


def _compare(
    v: DayValidation, s: Scans, th: Thresholds, depth: DepthCoverage | None, quotes: QuoteScan | None = None
) -> None:
    gt, gd, lt, ld = s.golden_trades, s.golden_depth, s.lake_trades, s.lake_delta
    if not ((gt is not None and gt.rows) or (depth is not None and depth.messages)):
        v.checks.append(_not_checked("ks", th.ks_d_max, "no golden samples", v.require_golden))
        v.checks.append(_not_checked("tail", th.alpha_diff_max, "no golden samples", v.require_golden))
        return
    empty = Hist()
    v.hists = {
        "trade_size": (_as_units(lt.size), _as_units(gt.size) if gt else empty),
        "inter_arrival_ms": (lt.inter_ms.compact(), gt.inter_ms.compact() if gt else empty),
        "log_return_1s": (lt.ret_1s.compact(), gt.ret_1s.compact() if gt else empty),
        "levels_per_message": (ld.levels.compact(), gd.levels.compact() if gd else empty),
    }
    if quotes is not None:
        v.hists["quoted_spread"] = (_as_units(quotes.spread[0]), _as_units(quotes.spread[1]))
        v.hists["top_level_depth"] = (_as_units(quotes.depth[0]), _as_units(quotes.depth[1]))
    v.ks = [r for r in (ks_hist(m, a, b) for m, (a, b) in v.hists.items()) if r is not None]
    if v.ks:
        worst = max(v.ks, key=lambda r: r.d)
        over = [k.metric for k in v.ks if k.d > th.ks_d_max]
        v.checks.append(
            CheckOutcome(
                "ks",
                True,
                not over,
                worst.d,
                th.ks_d_max,
                f"max D over {len(v.ks)} metrics ({worst.metric}); over the threshold: {', '.join(over) or 'none'}",
                worst.n_hist + worst.n_golden,
            )
        )
    else:
        v.checks.append(
            _not_checked(
                "ks",
                th.ks_d_max,
                "too few golden samples in the window: fewer than 20 values a side",
                v.require_golden,
            )
        )
    a, b = v.hists["trade_size"]
    v.tails = {"lake": power_law_hist(a), "golden": power_law_hist(b)}
    if v.tails["lake"] and v.tails["golden"]:
        diff = abs(v.tails["lake"].alpha - v.tails["golden"].alpha)
        v.checks.append(
            CheckOutcome(
                "tail",
                True,
                diff <= th.alpha_diff_max,
                diff,
                th.alpha_diff_max,
                f"alpha lake {v.tails['lake'].alpha:.3f} +- {v.tails['lake'].alpha_se:.3f} vs golden "
                f"{v.tails['golden'].alpha:.3f} +- {v.tails['golden'].alpha_se:.3f}",
                v.tails["lake"].n_tail + v.tails["golden"].n_tail,
            )
        )
    else:
        v.checks.append(
            _not_checked(
                "tail",
                th.alpha_diff_max,
                "too few golden samples: a tail needs 100 positive sizes a side",
                v.require_golden,
            )
        )
