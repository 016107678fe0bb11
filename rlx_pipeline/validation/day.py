"""Validate one day and symbol: the staged Crypto Lake tables against the golden samples of the same minutes.

Checks (thresholds from ``Thresholds``):

- ``ks``: two-sample K-S D per metric, lake vs golden over the golden-covered window: trade size, trade
  inter-arrival time, 1 s log returns of trade prices, levels per depth message. Gated on the max D.
- ``tail``: |alpha_lake - alpha_golden| of trade sizes (CSN power-law fits).
- ``gaps``: depth messages the golden stream has (by final update id ``u``) that the lake's ``book_delta``
  lacks inside the window where both exist, plus missing lake trade ids over the whole day; gated on the rate.
- ``origin_time``: null, zero, out-of-day (with tolerance) and backwards origin times of lake trades and deltas.

Golden comparisons need golden samples: a day without them runs ``gaps`` (trade ids) and ``origin_time`` only and
says so (``checked: false``); the verdict then rests on the lake-only checks. Quoted spread and top-level depth
need the reconstructed book, so they are compared in the fidelity report, not here.

Memory: columns are read with polars (only the columns used); the largest input, ``book_delta``, is reduced to
one row per message by a streaming group-by, so peak memory follows the message count, not the row count.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from rlx_pipeline.layout import DataLayout
from rlx_pipeline.settings import Thresholds
from rlx_pipeline.validation.stats import KS, PowerLaw, ks, power_law

NS = 1_000_000_000


@dataclass
class CheckOutcome:
    name: str
    checked: bool
    passed: bool
    value: float | None
    threshold: float
    detail: str
    n: int = 0

    def to_dict(self) -> dict:
        return self.__dict__.copy()


@dataclass
class DayValidation:
    date: str
    symbol: str
    window_ns: tuple[int, int] | None  # golden-covered window, None without golden samples
    ks: list[KS] = field(default_factory=list)
    tails: dict[str, PowerLaw | None] = field(default_factory=dict)
    gaps: dict = field(default_factory=dict)
    origin: dict = field(default_factory=dict)
    checks: list[CheckOutcome] = field(default_factory=list)
    samples: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks if c.checked)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.checked and not c.passed]

    def check(self, name: str) -> CheckOutcome:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict:
        return {
            "date": self.date,
            "symbol": self.symbol,
            "passed": self.passed,
            "failed_checks": self.failed,
            "golden_window": list(self.window_ns) if self.window_ns else None,
            "checks": [c.to_dict() for c in self.checks],
            "ks": [k.to_dict() for k in self.ks],
            "tails": {k: (v.to_dict() if v else None) for k, v in self.tails.items()},
            "gaps": self.gaps,
            "origin_time": self.origin,
        }


def _day_ns(date: str) -> tuple[int, int]:
    start = int(dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC).timestamp()) * NS
    return start, start + 86_400 * NS


def _ns(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Int64)


def _read(path: Path, columns: list[str]) -> pl.LazyFrame | None:
    return pl.scan_parquet(path).select(columns) if path.is_file() else None


def _log_returns_1s(t_ns: np.ndarray, price: np.ndarray) -> np.ndarray:
    if len(t_ns) < 3:
        return np.zeros(0)
    sec = t_ns // NS
    last = np.r_[sec[1:] != sec[:-1], True]
    p = price[last].astype(np.float64)
    s = sec[last]
    ok = np.diff(s) == 1  # consecutive seconds only: a fixed 1 s horizon
    return np.diff(np.log(p))[ok]


def validate_day(layout: DataLayout, date: str, symbol: str, th: Thresholds) -> DayValidation:
    lo, hi = _day_ns(date)
    g_trades = _read(layout.golden("trades", date, symbol), ["trade_time", "trade_id", "price", "quantity"])
    g_depth = _read(layout.golden("depth", date, symbol), ["event_time", "final_update_id", "price"])
    gt = g_trades.with_columns(_ns("trade_time").alias("t")).collect() if g_trades is not None else None
    gd = (
        g_depth.group_by("final_update_id")
        .agg(_ns("event_time").first().alias("t"), pl.col("price").is_not_null().sum().alias("levels"))
        .sort("final_update_id")
        .collect()
        if g_depth is not None
        else None
    )
    times = [
        x
        for x in (
            (gt["t"].min(), gt["t"].max()) if gt is not None and len(gt) else None,
            (gd["t"].min(), gd["t"].max()) if gd is not None and len(gd) else None,
        )
        if x
    ]
    window = (min(t[0] for t in times), max(t[1] for t in times)) if times else None
    v = DayValidation(date, symbol, window)

    trades_path = layout.staged("trades", date, symbol)
    delta_path = layout.staged("book_delta", date, symbol)
    lt = (
        pl.scan_parquet(trades_path)
        .select(
            _ns("origin_time").alias("t"), _ns("received_time").alias("r"), "trade_id", "price", "quantity"
        )
        .collect()
    )
    ld = (
        pl.scan_parquet(delta_path)
        .group_by("sequence_number")
        .agg(
            _ns("origin_time").first().alias("t"),
            _ns("received_time").first().alias("r"),
            pl.len().alias("levels"),
        )
        .sort("sequence_number")
        .collect(engine="streaming")
    )

    # --- origin_time ---------------------------------------------------------------------------------
    tol = int(th.origin_time_tolerance_s * NS)

    def invalid(df: pl.DataFrame, order: str) -> dict:
        t = df["t"]
        n = len(df)
        bad_null = int(t.is_null().sum())
        bad_zero = int((t == 0).sum())
        out_of_day = int(((t < lo - tol) | (t >= hi + tol)).sum())
        backwards = int((df.sort(order)["t"].diff() < 0).sum())
        lat = (df["r"] - df["t"]).drop_nulls().to_numpy() / 1e6
        return {
            "rows": n,
            "null": bad_null,
            "zero": bad_zero,
            "out_of_day": out_of_day,
            "backwards": backwards,
            "invalid_share": (bad_null + bad_zero + out_of_day + backwards) / n if n else 0.0,
            "latency_ms": {f"p{q}": float(np.percentile(lat, q)) for q in (50, 90, 99)} if len(lat) else {},
        }

    v.origin = {"trades": invalid(lt, "trade_id"), "book_delta": invalid(ld, "sequence_number")}
    worst = max(v.origin["trades"]["invalid_share"], v.origin["book_delta"]["invalid_share"])
    v.checks.append(
        CheckOutcome(
            "origin_time",
            True,
            worst <= th.origin_time_invalid_max,
            worst,
            th.origin_time_invalid_max,
            f"worst invalid share of trades/book_delta (tolerance {th.origin_time_tolerance_s:g} s)",
            len(lt) + len(ld),
        )
    )

    # --- gaps ----------------------------------------------------------------------------------------
    ids = lt["trade_id"].sort()
    missing_ids = int((ids.diff().drop_nulls() - 1).clip(lower_bound=0).sum()) if len(ids) > 1 else 0
    trade_span = int(ids.max() - ids.min() + 1) if len(ids) else 0
    v.gaps = {"trade_ids_missing": missing_ids, "trade_id_span": trade_span}
    missing_msgs, golden_msgs, missing_at = 0, 0, []
    if gd is not None and len(gd) and len(ld):
        seq = ld["sequence_number"]
        lo_u, hi_u = seq.min(), seq.max()
        inside = gd.filter(pl.col("final_update_id").is_between(lo_u, hi_u))
        golden_msgs = len(inside)
        miss = inside.filter(~pl.col("final_update_id").is_in(seq.implode()))
        missing_msgs = len(miss)
        missing_at = miss["final_update_id"].head(20).to_list()
    v.gaps.update(
        {
            "golden_depth_messages": golden_msgs,
            "lake_missing_messages": missing_msgs,
            "first_missing_update_ids": missing_at,
            "lake_messages": len(ld),
        }
    )
    rate = (missing_msgs + missing_ids) / max(golden_msgs + trade_span, 1)
    v.checks.append(
        CheckOutcome(
            "gaps",
            True,
            rate <= th.gap_rate_max,
            rate,
            th.gap_rate_max,
            f"{missing_msgs} of {golden_msgs} golden depth messages absent from the lake; "
            f"{missing_ids} of {trade_span} trade ids missing",
            golden_msgs + trade_span,
        )
    )

    # --- golden comparisons --------------------------------------------------------------------------
    if window is None:
        for name, thr in (("ks", th.ks_d_max), ("tail", th.alpha_diff_max)):
            v.checks.append(
                CheckOutcome(name, False, True, None, thr, "not checked: no golden samples for this day")
            )
        return v
    w0, w1 = window
    lw = lt.filter(pl.col("t").is_between(w0, w1))
    ldw = ld.filter(pl.col("t").is_between(w0, w1))
    scale = 1e8
    pairs = {
        "trade_size": (lw["quantity"].to_numpy() / scale, gt["quantity"].to_numpy() / scale),
        "inter_arrival_ms": (
            np.diff(np.sort(lw["t"].to_numpy())) / 1e6,
            np.diff(np.sort(gt["t"].to_numpy())) / 1e6,
        ),
        "log_return_1s": (
            _log_returns_1s(lw.sort("t")["t"].to_numpy(), lw.sort("t")["price"].to_numpy()),
            _log_returns_1s(gt.sort("t")["t"].to_numpy(), gt.sort("t")["price"].to_numpy()),
        ),
        "levels_per_message": (
            ldw["levels"].to_numpy(),
            gd.filter(pl.col("t").is_between(w0, w1))["levels"].to_numpy(),
        ),
    }
    v.samples = pairs
    v.ks = [r for r in (ks(m, a, b) for m, (a, b) in pairs.items()) if r is not None]
    if v.ks:
        worst_ks = max(v.ks, key=lambda r: r.d)
        v.checks.append(
            CheckOutcome(
                "ks",
                True,
                worst_ks.d <= th.ks_d_max,
                worst_ks.d,
                th.ks_d_max,
                f"max D over {len(v.ks)} metrics ({worst_ks.metric})",
                worst_ks.n_hist + worst_ks.n_golden,
            )
        )
    else:
        v.checks.append(
            CheckOutcome("ks", False, True, None, th.ks_d_max, "not checked: fewer than 20 values a side")
        )
    v.tails = {"lake": power_law(pairs["trade_size"][0]), "golden": power_law(pairs["trade_size"][1])}
    if v.tails["lake"] and v.tails["golden"]:
        diff = abs(v.tails["lake"].alpha - v.tails["golden"].alpha)
        v.checks.append(
            CheckOutcome(
                "tail",
                True,
                diff <= th.alpha_diff_max,
                diff,
                th.alpha_diff_max,
                f"alpha lake {v.tails['lake'].alpha:.3f} vs golden {v.tails['golden'].alpha:.3f}",
                v.tails["lake"].n_tail + v.tails["golden"].n_tail,
            )
        )
    else:
        v.checks.append(
            CheckOutcome("tail", False, True, None, th.alpha_diff_max, "not checked: tail too small")
        )
    return v
