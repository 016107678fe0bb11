"""Fidelity against its peer, the golden book replay alone, on simulated days of several lengths: wall time,
ratio and peak RSS, to show the cost near the replay's and the memory flat in the day's length.

    python benchmarks/bench_fidelity.py --minutes 60 --minutes 180         # simulates and prepares each day
    python benchmarks/bench_fidelity.py --data-dir /path/day3h             # a day already prepared (golden + unified)

A day is prepared first (simulator -> lake files -> staged -> unified; its perfect capture -> golden tables), or
taken as it is from ``--data-dir`` (e.g. ``rlx-pipeline demo --prepare-only --capture perfect`` then the partition
materialized). Each day is then measured in a fresh spawned process, alternating (``--rounds``, the best of each
kept; wall and CPU time: the machine may be shared):
  - peer: the golden book replay alone (``GoldenBook.chunks()`` consumed: the state arrays fidelity compares,
    nothing compared)
  - fidelity: ``measure()``, the whole computation (trades, update-id coverage, golden replay, book and bookTicker
    compared)
then each once more alone in a fresh process for its peak RSS (VmHWM, imports included).
Figures measured on a shared 2-core machine are pessimistic.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from peak_memory import in_fresh_process, peak_rss_mb

DATE, SYM = "2024-08-09", "BTC-USDT"


def _timed(fn) -> tuple[float, float, object]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def _peer_and_fidelity(root: str, date: str, symbol: str, rounds: int) -> dict:
    from rlx_pipeline.fidelity import measure
    from rlx_pipeline.fidelity.golden_book import GoldenBook
    from rlx_pipeline.fidelity.measure import STATES_CHUNK
    from rlx_pipeline.layout import DataLayout

    layout = DataLayout(Path(root))

    def replay() -> int:
        book = GoldenBook(layout.golden("snapshots", date, symbol), layout.golden("depth", date, symbol), 10)
        return sum(len(c) for c in book.chunks(STATES_CHUNK))

    out: dict = {"replay_s": [], "replay_cpu": [], "fidelity_s": [], "fidelity_cpu": []}
    for _ in range(rounds):  # alternated, the best of each kept: a shared machine's noise hits both alike
        wall, cpu, out["states"] = _timed(replay)
        out["replay_s"].append(wall)
        out["replay_cpu"].append(cpu)
        wall, cpu, f = _timed(lambda: measure(layout, date, symbol, 10))
        out["fidelity_s"].append(wall)
        out["fidelity_cpu"].append(cpu)
    for k in ("replay_s", "replay_cpu", "fidelity_s", "fidelity_cpu"):
        out[k] = min(out[k])
    out.update(
        score=f.score,
        book=f.topn.total,
        trades=f.trades_golden_in_recon.total,
        update_ids=f.golden_update_ids,
        hours=(f.timeline[-1]["minute"] - f.timeline[0]["minute"] + 1) / 60 if f.timeline else 0.0,
    )
    return out


def _peak(root: str, date: str, symbol: str, step: str) -> float:
    """Peak RSS (MB) of a fresh process that runs ``step`` (``replay`` or ``fidelity``) once."""
    from rlx_pipeline.fidelity import measure
    from rlx_pipeline.fidelity.golden_book import GoldenBook
    from rlx_pipeline.fidelity.measure import STATES_CHUNK
    from rlx_pipeline.layout import DataLayout

    layout = DataLayout(Path(root))
    if step == "replay":
        book = GoldenBook(layout.golden("snapshots", date, symbol), layout.golden("depth", date, symbol), 10)
        sum(len(c) for c in book.chunks(STATES_CHUNK))
    else:
        measure(layout, date, symbol, 10)
    return peak_rss_mb()


def _prepare(root: Path, minutes: float, seed: int) -> None:
    from rlx_pipeline.book import build_unified
    from rlx_pipeline.golden import build_golden
    from rlx_pipeline.lake.source import LocalLake
    from rlx_pipeline.lake.staging import stage_day
    from rlx_pipeline.layout import DataLayout
    from rlx_pipeline.simulator import SimConfig, write_stream

    layout = DataLayout(root)
    t0 = time.perf_counter()
    cap = write_stream(  # window by window straight to disk: a long day never sits in memory
        SimConfig(symbol=SYM, start=f"{DATE}T00:00:00Z", duration_s=minutes * 60, seed=seed),
        lake_root=layout.lake_root,
        capture_path=layout.capture_dir / "imported" / "sim.jsonl.zst",
        chunk_s=min(3600.0, minutes * 60),
    )["capture"]
    for t in ("trades", "book", "book_delta"):
        stage_day(LocalLake(layout.lake_root), t, "BINANCE", SYM, DATE, layout.staged(t, DATE, SYM))
    build_golden([cap], SYM, DATE, lambda t: layout.golden(t, DATE, SYM))
    build_unified(
        {t: layout.staged(t, DATE, SYM) for t in ("trades", "book", "book_delta")},
        DATE,
        layout.unified(DATE, SYM),
        book_dest=layout.unified_book(DATE, SYM),
    )
    print(f"prepared {minutes:g} min (simulated, lake, golden, unified) in {time.perf_counter() - t0:.0f} s")


def _report(label: str, root: Path, date: str, symbol: str, rounds: int) -> dict:
    r = in_fresh_process(_peer_and_fidelity, str(root), date, symbol, rounds)
    r["replay_mb"] = in_fresh_process(_peak, str(root), date, symbol, "replay")
    r["fidelity_mb"] = in_fresh_process(_peak, str(root), date, symbol, "fidelity")
    print(
        f"{label}: {r['hours']:.2f} h of golden book, {r['states']:,} golden states, {r['update_ids']:,} update "
        f"ids, {r['trades']:,} trades; score {r['score']} (best of {rounds})\n"
        f"  peer golden replay alone {r['replay_s']:6.2f} s wall {r['replay_cpu']:6.2f} s CPU  "
        f"peak RSS {r['replay_mb']:5.0f} MB\n"
        f"  fidelity measure()       {r['fidelity_s']:6.2f} s wall {r['fidelity_cpu']:6.2f} s CPU  "
        f"peak RSS {r['fidelity_mb']:5.0f} MB\n"
        f"  fidelity / replay = {r['fidelity_s'] / r['replay_s']:.2f}x wall, "
        f"{r['fidelity_cpu'] / r['replay_cpu']:.2f}x CPU",
        flush=True,
    )
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, action="append", default=[], help="simulate a day this long")
    ap.add_argument("--data-dir", type=Path, action="append", default=[], help="a day already prepared")
    ap.add_argument("--date", default=DATE)
    ap.add_argument("--symbol", default=SYM)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=3, help="peer and fidelity alternated this many times")
    args = ap.parse_args()
    import rlx_pipeline

    print(f"rlx_pipeline from {Path(rlx_pipeline.__file__).parent}")
    if not args.minutes and not args.data_dir:
        args.minutes = [60.0]
    rows = []
    for root in args.data_dir:
        rows.append((str(root), _report(str(root), root, args.date, args.symbol, args.rounds)))
    for minutes in args.minutes:
        with tempfile.TemporaryDirectory(prefix="rlx-bench-fid-") as tmp:
            _prepare(Path(tmp), minutes, args.seed)
            rows.append(
                (f"{minutes:g} min", _report(f"simulated {minutes:g} min", Path(tmp), DATE, SYM, args.rounds))
            )
    if len(rows) > 1:
        print(
            "\nday                      golden h   states  replay s  fidelity s  ratio (CPU)  fidelity peak RSS MB"
        )
        for label, r in rows:
            print(
                f"{label[-24:]:24} {r['hours']:8.2f} {r['states']:8,} {r['replay_s']:9.2f} {r['fidelity_s']:11.2f} "
                f"{r['fidelity_s'] / r['replay_s']:6.2f} ({r['fidelity_cpu'] / r['replay_cpu']:.2f}) "
                f"{r['fidelity_mb']:20.0f}"
            )


if __name__ == "__main__":
    main()
