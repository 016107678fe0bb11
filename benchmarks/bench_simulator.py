"""Simulator speed and memory: a BTCUSDT-scale day streamed to the lake files window by window, against the
in-memory path (the whole window simulated, then rendered) on a shorter window in the same process.

    python benchmarks/bench_simulator.py                   # 24 h streamed (about 30 M delta rows, 3 M trades)
    python benchmarks/bench_simulator.py --hours 1 --peer-minutes 30

Each step runs in a fresh spawned process so that its peak RSS (VmHWM) is its own. Prints simulated seconds per
wall second, delta rows/s and trades/s written, peak RSS, and the peer's figures with the ratios.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time

import pyarrow.parquet as pq
from peak_memory import in_fresh_process, peak_rss_mb


def _rows(paths: dict) -> dict[str, int]:
    return {t: pq.ParquetFile(p).metadata.num_rows for t, p in paths.items()}


def streamed(hours: float, window_s: float, out: str) -> dict:
    from rlx_pipeline.simulator import SimConfig, write_lake_stream

    t0 = time.perf_counter()
    done = []
    paths = write_lake_stream(
        SimConfig(duration_s=hours * 3600, seed=7),
        out,
        chunk_s=window_s,
        progress=lambda w: (
            done.append(w.config.duration_s)
            or print(
                f"  window {len(done)}: {sum(done) / 3600:.1f} h simulated, {time.perf_counter() - t0:.0f} s",
                flush=True,
            )
        ),
    )
    return {"wall_s": time.perf_counter() - t0, "rows": _rows(paths), "peak_mb": peak_rss_mb()}


def in_memory(minutes: float, out: str) -> dict:
    from rlx_pipeline.simulator import SimConfig, simulate

    t0 = time.perf_counter()
    truth = simulate(SimConfig(duration_s=minutes * 60, seed=7))
    paths = truth.write_lake(out)
    return {"wall_s": time.perf_counter() - t0, "rows": _rows(paths), "peak_mb": peak_rss_mb()}


def _line(name: str, simulated_s: float, r: dict) -> str:
    d, t = r["rows"]["book_delta_v2"], r["rows"]["trades"]
    return (
        f"{name:<28} {simulated_s / 3600:6.2f} h  {r['wall_s']:8.1f} s  {simulated_s / r['wall_s']:7.1f}x real time"
        f"  {d:>12,} delta rows ({d / r['wall_s'] / 1e3:6.1f} k/s)  {t:>10,} trades  peak {r['peak_mb']:7.0f} MB"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--window-minutes", type=float, default=60.0)
    ap.add_argument("--peer-minutes", type=float, default=60.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_sim_") as tmp:
        peer = in_fresh_process(in_memory, args.peer_minutes, f"{tmp}/peer")
        print(_line(f"peer: in memory, {args.peer_minutes:g} min", args.peer_minutes * 60, peer), flush=True)
        ours = in_fresh_process(streamed, args.hours, args.window_minutes * 60, f"{tmp}/stream")
        print(_line(f"streamed, {args.window_minutes:g}-min windows", args.hours * 3600, ours))
        peer_rate = peer["rows"]["book_delta_v2"] / peer["wall_s"]
        our_rate = ours["rows"]["book_delta_v2"] / ours["wall_s"]
        print(
            f"ratio streamed / in-memory: speed {our_rate / peer_rate:.2f}x, peak RSS {ours['peak_mb'] / peer['peak_mb']:.2f}x"
            f" for {args.hours * 60 / args.peer_minutes:.0f}x the simulated time"
        )
        print(f"machine: {mp.cpu_count()} cores")


if __name__ == "__main__":
    main()
