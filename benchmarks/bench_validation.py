"""Validation of a BTCUSDT-scale day: wall time, rows/s, peak RSS, resume cost, against an in-memory peer.

    python benchmarks/bench_validation.py                       # 30 M delta rows, 3 M trades, 2 h of golden
    python benchmarks/bench_validation.py --scale 0.1           # a tenth of that, for a quick look

The day is written with the contract schemas (STAGED_*, GOLDEN_*): ~10 depth messages/s with a lognormal level
count (median ~16, mean ~34, as real BTCUSDT), ~35 trades/s with Pareto sizes, golden = a perfect capture of
the first ``--golden-hours`` hours. Measured in this process, peak RSS reset (``/proc/self/clear_refs``)
before each step:

1. ``validate_day`` (streaming, exact histograms, checkpoints every 10 s);
2. the same, interrupted at about 60% of the delta table, then resumed (cost of the resumed half);
3. the peer: the same metrics the obvious way, in memory: polars reads the columns, groups the deltas by
   message, and ``scipy.stats.ks_2samp`` computes each D on the arrays.
The D values of both must agree (the script says whether they do).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from peak_memory import peak_rss_mb, reset_peak

NS = 1_000_000_000
MS = 1_000_000
LOT = 1_000


def write_day(layout, date: str, symbol: str, delta_rows: int, trades: int, golden_hours: float) -> dict:
    import pyarrow as pa

    from rlx_pipeline.schemas import GOLDEN_DEPTH, GOLDEN_TRADES, STAGED_BOOK_DELTA, STAGED_TRADES
    from rlx_pipeline.storage import ParquetBatchWriter
    from rlx_pipeline.validation.day import day_start_ns

    rng = np.random.default_rng(7)
    lo = day_start_ns(date)
    g_end = lo + int(golden_hours * 3600 * NS)
    levels = np.clip(np.round(rng.lognormal(np.log(16), 1.1, delta_rows // 20)), 1, 1000).astype(np.int64)
    levels = levels[: np.searchsorted(np.cumsum(levels), delta_rows)]
    n_msg = len(levels)
    msg_t = lo + np.sort(rng.integers(0, 86_400 * NS, n_msg))
    steps = rng.integers(1, 60, n_msg)
    u = 40_000_000_000 + np.cumsum(steps)

    def table(schema, cols):
        return pa.table({f.name: pa.array(cols[f.name], type=f.type) for f in schema}, schema=schema)

    rows = 0
    with (
        ParquetBatchWriter(layout.staged("book_delta", date, symbol), STAGED_BOOK_DELTA) as lake,
        ParquetBatchWriter(layout.golden("depth", date, symbol), GOLDEN_DEPTH) as golden,
    ):
        for part in np.array_split(np.arange(n_msg), max(1, n_msg // 50_000)):
            lv = levels[part]
            rep = np.repeat(part, lv)
            n = len(rep)
            side = rng.random(n) < 0.5
            price = rng.integers(5_000_000, 7_000_000, n) * 1_000_000
            size = rng.integers(0, 500, n) * LOT
            lake.write(
                table(
                    STAGED_BOOK_DELTA,
                    {
                        "origin_time": msg_t[rep],
                        "received_time": msg_t[rep] + 15 * MS,
                        "sequence_number": u[rep],
                        "side_is_bid": side,
                        "price": price,
                        "size": size,
                    },
                )
            )
            rows += n
            # golden = the same messages, but 3% of them one level shorter (so D is not trivially 0)
            first = np.r_[True, rep[1:] != rep[:-1]]
            g = (msg_t[rep] < g_end) & ~(first & (u[rep] % 33 == 0) & (levels[rep] > 1))
            if g.any():
                gr = rep[g]
                golden.write(
                    table(
                        GOLDEN_DEPTH,
                        {
                            "capture_ns": msg_t[gr],
                            "source_file": np.full(len(gr), "bench.jsonl.zst"),
                            "line_no": gr,
                            "event_time": msg_t[gr] // MS * MS,
                            "first_update_id": u[gr] - steps[gr] + 1,
                            "final_update_id": u[gr],
                            "prev_final_update_id": np.full(len(gr), None),
                            "side_is_bid": side[g],
                            "price": price[g],
                            "size": size[g],
                        },
                    )
                )
    t = lo + np.sort(rng.integers(0, 86_400 * NS, trades))
    qty = (
        np.maximum(np.round(0.0007 * (1 - rng.random(trades)) ** (-1 / 1.4) * 1e8 / LOT), 1).astype(np.int64)
        * LOT
    )
    price = ((60_000 + np.cumsum(rng.normal(0, 0.5, trades))).round(2) * 1e8).astype(np.int64)
    ids = np.arange(3_000_000_000, 3_000_000_000 + trades)
    with ParquetBatchWriter(layout.staged("trades", date, symbol), STAGED_TRADES) as w:
        w.write(
            table(
                STAGED_TRADES,
                {
                    "origin_time": t,
                    "received_time": t + rng.integers(5, 80, trades) * MS,
                    "trade_id": ids,
                    "side": np.where(rng.random(trades) < 0.5, "buy", "sell"),
                    "price": price,
                    "quantity": qty,
                },
            )
        )
    g = t < g_end
    tt = t[g] // MS * MS
    with ParquetBatchWriter(layout.golden("trades", date, symbol), GOLDEN_TRADES) as w:
        w.write(
            table(
                GOLDEN_TRADES,
                {
                    "capture_ns": tt,
                    "source_file": np.full(len(tt), "bench.jsonl.zst"),
                    "line_no": np.arange(len(tt)),
                    "event_time": tt,
                    "trade_time": tt,
                    "trade_id": ids[g],
                    "price": price[g],
                    "quantity": np.where(rng.random(len(tt)) < 0.02, qty[g] * 2, qty[g]),  # 2% differ
                    "is_buyer_maker": rng.random(len(tt)) < 0.5,
                },
            )
        )
    return {"delta_rows": rows, "messages": n_msg, "trades": trades, "golden_end": g_end}


def peer(layout, date: str, symbol: str, g_end: int) -> dict[str, float]:
    """The in-memory way: whole columns into polars, ks_2samp on arrays."""
    import polars as pl
    from scipy import stats as sps

    lt = pl.read_parquet(layout.staged("trades", date, symbol), columns=["origin_time", "quantity"])
    lt = lt.with_columns(pl.col("origin_time").cast(pl.Int64)).filter(pl.col("origin_time") < g_end)
    gt = pl.read_parquet(layout.golden("trades", date, symbol), columns=["trade_time", "quantity"])
    ld = pl.read_parquet(
        layout.staged("book_delta", date, symbol), columns=["origin_time", "sequence_number"]
    )
    lm = (
        ld.group_by("sequence_number", maintain_order=True)
        .agg(pl.col("origin_time").first().cast(pl.Int64), pl.len().alias("levels"))
        .filter(pl.col("origin_time") < g_end)
    )
    gd = pl.read_parquet(layout.golden("depth", date, symbol), columns=["final_update_id", "price"])
    gm = gd.group_by("final_update_id").agg(pl.col("price").is_not_null().sum().alias("levels"))
    lake_ms = lt["origin_time"].to_numpy() // MS
    gold_ms = gt["trade_time"].cast(pl.Int64).to_numpy() // MS
    return {
        "trade_size": sps.ks_2samp(
            lt["quantity"].to_numpy() / 1e8, gt["quantity"].to_numpy() / 1e8
        ).statistic,
        "inter_arrival_ms": sps.ks_2samp(np.diff(lake_ms), np.diff(gold_ms)).statistic,
        "levels_per_message": sps.ks_2samp(lm["levels"].to_numpy(), gm["levels"].to_numpy()).statistic,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="1.0 = 30 M delta rows and 3 M trades")
    ap.add_argument("--golden-hours", type=float, default=2.0)
    ap.add_argument("--dir", default=None, help="work directory (default: a temporary one)")
    ap.add_argument("--write-only", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    date, sym = "2024-08-09", "BTC-USDT"
    if args.write_only:
        from rlx_pipeline.layout import DataLayout

        info = write_day(
            DataLayout(Path(args.write_only)),
            date,
            sym,
            int(30e6 * args.scale),
            int(3e6 * args.scale),
            args.golden_hours,
        )
        print(json.dumps({k: int(v) for k, v in info.items()}))
        return

    from rlx_pipeline.layout import DataLayout
    from rlx_pipeline.settings import Thresholds
    from rlx_pipeline.validation import validate_day

    with tempfile.TemporaryDirectory(prefix="rlx-bench-val-", dir=args.dir) as tmp:
        layout = DataLayout(Path(tmp))
        t0 = time.perf_counter()
        # written by a child process, so this one's memory baseline is only the imports
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--write-only",
                tmp,
                "--scale",
                str(args.scale),
                "--golden-hours",
                str(args.golden_hours),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        info = json.loads(out.strip().splitlines()[-1])
        mb = (
            sum(
                p.stat().st_size
                for p in (layout.staged("book_delta", date, sym), layout.staged("trades", date, sym))
            )
            / 1e6
        )
        rows = info["delta_rows"] + info["trades"]
        print(
            f"day: {info['delta_rows']:,} delta rows in {info['messages']:,} messages, {info['trades']:,} trades "
            f"({mb:.0f} MB parquet), golden {args.golden_hours:g} h; written in {time.perf_counter() - t0:.0f} s"
        )

        gc.collect()
        base = reset_peak()
        t0 = time.perf_counter()
        v = validate_day(layout, date, sym, Thresholds())
        ours_s = time.perf_counter() - t0
        ours_rss = peak_rss_mb()
        print(
            f"validate_day:  {ours_s:6.1f} s  {rows / ours_s / 1e6:5.2f} M rows/s  peak RSS {ours_rss:6.0f} MB (baseline {base:.0f})  "
            f"passed={v.passed} checkpoints={v.scan['checkpoints_written']}"
        )

        class Stop(Exception):
            pass

        def stop(phase: str, done: int, total: int) -> None:
            if phase == "lake_delta" and done >= 0.6 * total:
                raise Stop

        t0 = time.perf_counter()
        with contextlib.suppress(Stop):
            validate_day(layout, date, sym, Thresholds(), checkpoint_every_s=0, progress=stop)
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = validate_day(layout, date, sym, Thresholds(), checkpoint_every_s=0)
        resume_s = time.perf_counter() - t0
        same = {k: x for k, x in r.to_dict().items() if k != "scan"} == {
            k: x for k, x in v.to_dict().items() if k != "scan"
        }
        print(
            f"interrupted at 60% of the deltas after {first_s:.1f} s (checkpoint every row group), resumed from "
            f"{r.scan['resumed_from']!r} in {resume_s:.1f} s; same result as uninterrupted: {same}"
        )

        gc.collect()
        base = reset_peak()
        t0 = time.perf_counter()
        d_peer = peer(layout, date, sym, info["golden_end"])
        peer_s = time.perf_counter() - t0
        peer_rss = peak_rss_mb()
        d_ours = {k.metric: k.d for k in v.ks}
        agree = all(abs(d_ours[m] - d) < 1e-12 for m, d in d_peer.items())
        print(
            f"peer (polars in memory + scipy ks_2samp, 3 metrics): {peer_s:6.1f} s  peak RSS {peer_rss:6.0f} MB (baseline {base:.0f})"
        )
        print(
            f"ratios: time ours/peer {ours_s / peer_s:.2f}, peak RSS ours/peer {ours_rss / peer_rss:.2f}; "
            f"D agree (1e-12): {agree}  ours {{{', '.join(f'{m}: {d_ours[m]:.6f}' for m in d_peer)}}} "
            f"peer {{{', '.join(f'{m}: {d:.6f}' for m, d in d_peer.items())}}}"
        )


if __name__ == "__main__":
    main()
