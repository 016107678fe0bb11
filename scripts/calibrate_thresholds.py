"""What the validation statistics give on real Binance data that is NOT faulty, to justify the default thresholds.

    python scripts/calibrate_thresholds.py [--samples ../shared/real-samples]

The real ETHUSDT captures (hftbacktest format, two days) are imported and parsed into golden tables, then the
validation library's own statistics compare real data with real data:

- each day's first half against its second half (the same market minutes apart),
- one day against the other.

Printed per comparison: the K-S D of each metric the ``validation_ks`` check gates (trade size, trade
inter-arrival ms, 1 s log return, levels per depth message) with both sample sizes, and the CSN power-law alpha of
each side's trade sizes with |delta alpha| (``validation_tail``). Genuine data differs only by sampling and by the
market's own drift between windows, so these figures are the floor below which a threshold would fail good days.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from rlx_pipeline.capture.importers import import_files
from rlx_pipeline.fixed_point import SCALE
from rlx_pipeline.golden import build_golden, capture_files_for
from rlx_pipeline.settings import Thresholds
from rlx_pipeline.validation.stats import ks, power_law

MS = 1_000_000


def metrics(trades: pl.DataFrame, depth: pl.DataFrame) -> dict[str, np.ndarray]:
    """The gated K-S metrics, computed as ``validation.day`` does (whole ms, last price per second)."""
    t = trades.sort("trade_time")
    ms = (t["trade_time"].cast(pl.Int64) // MS).to_numpy()
    sec = (
        t.with_columns((pl.col("trade_time").cast(pl.Int64) // 1_000_000_000).alias("s"))
        .group_by("s", maintain_order=True)
        .agg(pl.col("price").last())
        .sort("s")
    )
    s, p = sec["s"].to_numpy(), np.log(sec["price"].to_numpy().astype(np.float64))
    consecutive = np.diff(s) == 1
    levels = depth.filter(pl.col("side_is_bid").is_not_null()).group_by("final_update_id").len()["len"]
    return {
        "trade_size": t["quantity"].to_numpy() / 10**SCALE,
        "inter_arrival_ms": np.diff(ms).astype(np.float64),
        "log_return_1s": np.diff(p)[consecutive],
        "levels_per_message": levels.to_numpy().astype(np.float64),
    }


def halves(trades: pl.DataFrame, depth: pl.DataFrame) -> tuple[tuple, tuple]:
    lo, hi = trades["trade_time"].cast(pl.Int64).min(), trades["trade_time"].cast(pl.Int64).max()
    mid = (lo + hi) // 2
    first = (
        trades.filter(pl.col("trade_time").cast(pl.Int64) < mid),
        depth.filter(pl.col("event_time").cast(pl.Int64) < mid),
    )
    second = (
        trades.filter(pl.col("trade_time").cast(pl.Int64) >= mid),
        depth.filter(pl.col("event_time").cast(pl.Int64) >= mid),
    )
    return first, second


def compare(name: str, a: tuple, b: tuple, th: Thresholds) -> list[str]:
    ma, mb = metrics(*a), metrics(*b)
    rows = []
    for metric in ma:
        r = ks(metric, ma[metric], mb[metric])
        verdict = "pass" if r is not None and r.d <= th.ks_d_max else "FAIL"
        d = f"{r.d:.4f}" if r is not None else "n/a"
        rows.append(f"| {name} | {metric} | {d} | {len(ma[metric]):,} / {len(mb[metric]):,} | {verdict} |")
    pa, pb = power_law(ma["trade_size"]), power_law(mb["trade_size"])
    if pa is None or pb is None:
        rows.append(f"| {name} | alpha | too few tail points | | |")
    else:
        diff = abs(pa.alpha - pb.alpha)
        verdict = "pass" if diff <= th.alpha_diff_max else "FAIL"
        rows.append(
            f"| {name} | alpha (xmin) | {pa.alpha:.2f} ({pa.xmin:g}) vs {pb.alpha:.2f} ({pb.xmin:g}),"
            f" diff {diff:.2f} | {pa.n_tail:,} / {pb.n_tail:,} tail | {verdict} |"
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(__file__).resolve().parents[2] / "shared" / "real-samples"
    ap.add_argument("--samples", type=Path, default=default)
    args = ap.parse_args()
    th = Thresholds()
    days: dict[str, tuple[pl.DataFrame, pl.DataFrame]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        import_files(sorted((args.samples / "hftbacktest").glob("*.gz")), Path(tmp) / "capture")
        for date in ("2024-08-08", "2024-08-09"):
            out = Path(tmp) / date
            files = capture_files_for(Path(tmp) / "capture", "ETH-USDT", date)
            build_golden(files, "ETH-USDT", date, lambda t, o=out: o / f"{t}.parquet")
            days[date] = (pl.read_parquet(out / "trades.parquet"), pl.read_parquet(out / "depth.parquet"))
    print(f"thresholds: ks_d_max {th.ks_d_max}, alpha_diff_max {th.alpha_diff_max}\n")
    print("| comparison | metric | D or alpha | n | verdict |")
    print("| --- | --- | --- | --- | --- |")
    for date, (trades, depth) in days.items():
        first, second = halves(trades, depth)
        for row in compare(f"{date} 1st vs 2nd half", first, second, th):
            print(row)
    for row in compare("2024-08-08 vs 2024-08-09", days["2024-08-08"], days["2024-08-09"], th):
        print(row)


if __name__ == "__main__":
    main()
