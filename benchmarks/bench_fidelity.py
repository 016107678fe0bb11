"""Fidelity computation on a simulated window fully covered by golden samples: wall time and peak RSS.

    python benchmarks/bench_fidelity.py --minutes 60        # a full day: --minutes 1440 (~25 min to prepare)

The simulated day is prepared first (simulator -> lake files -> staged -> unified; capture -> golden tables),
then each measured step runs in a fresh spawned process so that its peak RSS (VmHWM) is its own:
  - measure():          the whole fidelity computation (trades, coverage, golden replay, book + bookTicker compare)
  - peer replay only:   the golden book replay alone (GoldenBook.states() consumed, nothing compared)
  - peer trade join:    a bare polars join of golden trade ids against the unified stream's (events.parquet)
Figures measured on a shared 2-core machine are pessimistic.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from peak_memory import in_fresh_process, peak_rss_mb

DATE, SYM = "2024-08-09", "BTC-USDT"


def _measure(root: str) -> tuple:
    from rlx_pipeline.fidelity import measure
    from rlx_pipeline.layout import DataLayout

    t0 = time.perf_counter()
    f = measure(DataLayout(Path(root)), DATE, SYM, 10)
    return time.perf_counter() - t0, peak_rss_mb(), f.score, f.topn.total, f.trades_golden_in_recon.total


def _replay(root: str) -> tuple:
    from rlx_pipeline.fidelity.golden_book import GoldenBook
    from rlx_pipeline.layout import DataLayout

    layout = DataLayout(Path(root))
    t0 = time.perf_counter()
    n = sum(
        1
        for _ in GoldenBook(
            layout.golden("snapshots", DATE, SYM), layout.golden("depth", DATE, SYM), 10
        ).states()
    )
    return time.perf_counter() - t0, peak_rss_mb(), n


def _join(root: str) -> tuple:
    import polars as pl

    from rlx_pipeline.layout import DataLayout

    layout = DataLayout(Path(root))
    t0 = time.perf_counter()
    g = pl.read_parquet(layout.golden("trades", DATE, SYM), columns=["trade_id"])
    u = pl.scan_parquet(layout.unified(DATE, SYM)).select("trade_id").drop_nulls().collect()
    n = len(g.join(u, on="trade_id", how="left"))
    return time.perf_counter() - t0, peak_rss_mb(), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    from rlx_pipeline.book import build_unified
    from rlx_pipeline.golden import build_golden
    from rlx_pipeline.lake.source import LocalLake
    from rlx_pipeline.lake.staging import stage_day
    from rlx_pipeline.layout import DataLayout
    from rlx_pipeline.simulator import SimConfig, write_stream

    with tempfile.TemporaryDirectory(prefix="rlx-bench-fid-") as tmp:
        layout = DataLayout(Path(tmp))
        t0 = time.perf_counter()
        n = {"depth": 0, "levels": 0, "trades": 0}

        def count(w) -> None:
            n["depth"] += len(w.depth)
            n["levels"] += sum(len(d.bids) + len(d.asks) for d in w.depth)
            n["trades"] += len(w.trades)

        # window by window straight to disk: a full day never sits in memory
        cap = write_stream(
            SimConfig(symbol=SYM, start=f"{DATE}T00:00:00Z", duration_s=args.minutes * 60, seed=args.seed),
            lake_root=layout.lake_root,
            capture_path=layout.capture_dir / "imported" / "sim.jsonl.zst",
            chunk_s=min(3600.0, args.minutes * 60),
            progress=count,
        )["capture"]
        print(
            f"simulated {args.minutes:g} min: {n['depth']:,} depth msgs ({n['levels']:,} levels), "
            f"{n['trades']:,} trades in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        t0 = time.perf_counter()
        for t in ("trades", "book", "book_delta"):
            stage_day(LocalLake(layout.lake_root), t, "BINANCE", SYM, DATE, layout.staged(t, DATE, SYM))
        build_golden([cap], SYM, DATE, lambda t: layout.golden(t, DATE, SYM))
        build_unified(
            {t: layout.staged(t, DATE, SYM) for t in ("trades", "book", "book_delta")},
            DATE,
            layout.unified(DATE, SYM),
            book_dest=layout.unified_book(DATE, SYM),
        )
        print(f"prepared lake, golden and unified in {time.perf_counter() - t0:.1f} s")

        fid_s, fid_mb, score, n_book, n_trades = in_fresh_process(_measure, tmp)
        rep_s, rep_mb, n_states = in_fresh_process(_replay, tmp)
        join_s, join_mb, _ = in_fresh_process(_join, tmp)
        print(
            f"fidelity measure: {fid_s:.2f} s, peak RSS {fid_mb:.0f} MB; score {score}; "
            f"{n_book:,} book states and {n_trades:,} trades compared ({n_book / fid_s / 1e3:.0f} k states/s)"
        )
        print(
            f"peer golden replay only: {rep_s:.2f} s, peak RSS {rep_mb:.0f} MB ({n_states:,} states, "
            f"{n_states / rep_s / 1e3:.0f} k/s); measure / replay = {fid_s / rep_s:.2f}x"
        )
        print(
            f"peer bare trade-id join: {join_s * 1e3:.0f} ms, peak RSS {join_mb:.0f} MB; "
            f"measure / join = {fid_s / max(join_s, 1e-9):.0f}x"
        )
        if args.minutes < 1440:
            print(f"(a full day is ~{1440 / args.minutes:.0f}x this window; the book part scales linearly)")


if __name__ == "__main__":
    main()
