"""Simulator, validation and fidelity on one simulated window: wall time, rates and peak RSS.

    python benchmarks/bench_pipeline.py --minutes 30

The peers, in the same process: the simulator against a bare numpy Pareto draw of the same number of trades (the
cost of the market model), validation's K-S against scipy's ks_2samp on the same arrays (the cost of the
windowing and the other metrics), fidelity against a plain join of trade ids (the cost of the book comparison).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from peak_memory import peak_rss_mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    args = ap.parse_args()

    import polars as pl
    from scipy import stats as sps

    from rlx_pipeline.book import build_unified
    from rlx_pipeline.fidelity import measure
    from rlx_pipeline.golden import build_golden
    from rlx_pipeline.lake.source import LocalLake
    from rlx_pipeline.lake.staging import stage_day
    from rlx_pipeline.layout import DataLayout
    from rlx_pipeline.settings import Thresholds
    from rlx_pipeline.simulator import SimConfig, simulate
    from rlx_pipeline.validation import validate_day

    date, sym = "2024-08-09", "BTC-USDT"
    t0 = time.perf_counter()
    truth = simulate(SimConfig(duration_s=args.minutes * 60))
    sim_s = time.perf_counter() - t0
    m = truth.market
    n_rows = sum(len(d.bids) + len(d.asks) for d in m.depth)
    t0 = time.perf_counter()
    np.random.default_rng(0).pareto(1.4, len(m.trades))
    peer_s = max(time.perf_counter() - t0, 1e-9)
    print(
        f"simulator: {args.minutes:g} min = {len(m.depth):,} depth msgs, {n_rows:,} levels, {len(m.trades):,} trades "
        f"in {sim_s:.1f} s ({n_rows / sim_s / 1e3:.0f} k levels/s; numpy Pareto draw alone {sim_s / peer_s:.0f}x faster)"
    )

    with tempfile.TemporaryDirectory(prefix="rlx-bench-") as tmp:
        layout = DataLayout(Path(tmp))
        truth.write_lake(layout.lake_root)
        cap = truth.write_capture(layout.capture_dir / "imported" / "sim.jsonl.zst")
        for t in ("trades", "book", "book_delta"):
            stage_day(LocalLake(layout.lake_root), t, "BINANCE", sym, date, layout.staged(t, date, sym))
        t0 = time.perf_counter()
        build_golden([cap], sym, date, lambda t: layout.golden(t, date, sym))
        golden_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        v = validate_day(layout, date, sym, Thresholds())
        val_s = time.perf_counter() - t0
        a, b = v.samples["trade_size"]
        t0 = time.perf_counter()
        sps.ks_2samp(a, b)
        ks_s = max(time.perf_counter() - t0, 1e-9)
        print(
            f"golden parse: {golden_s:.2f} s; validation: {val_s:.2f} s (passed={v.passed}); "
            f"one scipy ks_2samp alone: {ks_s * 1e3:.1f} ms ({val_s / ks_s:.0f}x less work)"
        )
        res = build_unified(
            {t: layout.staged(t, date, sym) for t in ("trades", "book", "book_delta")},
            date,
            layout.unified(date, sym),
            book_dest=layout.unified_book(date, sym),
        )
        print(
            f"unified: {res.input_rows:,} events in {res.seconds:.2f} s "
            f"({res.input_rows / res.seconds / 1e6:.2f} M/s), {res.book_rows:,} book states"
        )
        t0 = time.perf_counter()
        f = measure(layout, date, sym, 10)
        fid_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        g = pl.read_parquet(layout.golden("trades", date, sym), columns=["trade_id"])
        u = pl.read_parquet(layout.unified(date, sym), columns=["trade_id"]).drop_nulls()
        g.join(u, on="trade_id", how="left")
        join_s = max(time.perf_counter() - t0, 1e-9)
        print(
            f"fidelity: {fid_s:.2f} s (score {f.score}); a bare trade-id join: {join_s * 1e3:.1f} ms "
            f"({fid_s / join_s:.0f}x: the book replay and level comparisons)"
        )
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
