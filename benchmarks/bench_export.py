"""Exports: this project's hftbacktest and Tardis exports against hftbacktest's own Tardis converter, same day,
same run.

A simulated BTCUSDT-like day (the project's market simulator; default 2 hours of it, ~1/12 of a BTCUSDT day's
events) is staged and reconstructed, then, each step in a fresh process (its own peak RSS):
- ``rlx export hftbacktest``: unified stream -> .npz (streaming, compressed);
- ``rlx export tardis``: unified stream -> Tardis CSV (gzip);
- ``hftbacktest convert``: hftbacktest.data.utils.tardis.convert over those Tardis files -> .npz (its defaults,
  compressed): what a user of Tardis data runs to get the same array.

    python benchmarks/bench_export.py                   # 2 simulated hours
    python benchmarks/bench_export.py --simulated-hours 24

Measured on 2 cores shared with other work (load ~10), 3 simulated hours (3.94 M unified events): rlx .npz export
8.1 s (0.49 M events/s), peak RSS 668 MB; rlx Tardis export 25.7 s, 665 MB; hftbacktest's converter on those
Tardis files 22.1 s, 1,512 MB: the direct export 2.7x faster with 2.3x less peak RSS. Peak RSS over 0.25 / 1 / 3
simulated hours: rlx .npz 513 / 565 / 668 MB, the converter 424 / 707 / 1,512 MB (it holds the day).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from peak_memory import in_fresh_process, peak_rss_mb

DATE, SYMBOL = "2024-08-09", "BTC-USDT"


def _rlx_hftbacktest(root: str, dest: str) -> tuple[float, int, int, float]:
    from rlx_pipeline.export import export_hftbacktest

    t0 = time.perf_counter()
    r = export_hftbacktest(root, SYMBOL, DATE, DATE, dest)
    return time.perf_counter() - t0, r.events_in, r.rows, peak_rss_mb()


def _rlx_tardis(root: str, out: str) -> tuple[float, int, list[str], float]:
    from rlx_pipeline.export import export_tardis

    t0 = time.perf_counter()
    r = export_tardis(root, SYMBOL, DATE, DATE, out)
    return time.perf_counter() - t0, r.book_rows + r.trade_rows, [str(f) for f in r.files], peak_rss_mb()


def _convert(files: list[str], dest: str) -> tuple[float, int, float]:
    import contextlib
    import io

    from hftbacktest.data.utils.tardis import convert

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        data = convert([files[1], files[0]], output_filename=dest)  # trades first, as its docs ask
    return time.perf_counter() - t0, len(data), peak_rss_mb()


def _warm(root: str, tmp: str) -> None:
    """Compile (numba caches to disk) on a small range so that the timed runs measure work, not compilation."""
    _rlx_hftbacktest(root, f"{tmp}/warm.npz")
    _convert(_rlx_tardis(root, f"{tmp}/warm-tardis")[2], f"{tmp}/warm-conv.npz")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--simulated-hours", type=float, default=2.0)
    args = ap.parse_args()
    from rlx_pipeline import gate
    from rlx_pipeline.book import build_unified
    from rlx_pipeline.lake.source import LocalLake
    from rlx_pipeline.lake.staging import stage_day
    from rlx_pipeline.layout import DataLayout
    from rlx_pipeline.simulator import SimConfig, write_lake_stream

    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        layout = DataLayout(Path(tmp) / "data")
        t0 = time.perf_counter()
        write_lake_stream(SimConfig(duration_s=args.simulated_hours * 3600, seed=7), layout.lake_root)
        paths = {t: layout.staged(t, DATE, SYMBOL) for t in ("trades", "book", "book_delta")}
        for table, path in paths.items():
            stage_day(LocalLake(layout.lake_root), table, "BINANCE", SYMBOL, DATE, path)
        res = build_unified(
            paths, DATE, layout.unified(DATE, SYMBOL), book_dest=layout.unified_book(DATE, SYMBOL)
        )
        gate.write_verdict(layout, gate.Verdict(DATE, SYMBOL, True))
        print(
            f"simulated {args.simulated_hours} h: {res.rows:,} unified events ({res.by_type}) "
            f"prepared in {time.perf_counter() - t0:.0f} s"
        )
        root = str(layout.root)
        in_fresh_process(_warm, root, tmp)
        secs, events, rows, rss = in_fresh_process(_rlx_hftbacktest, root, f"{tmp}/rlx.npz")
        t_secs, t_rows, files, t_rss = in_fresh_process(_rlx_tardis, root, f"{tmp}/tardis")
        c_secs, c_rows, c_rss = in_fresh_process(_convert, files, f"{tmp}/conv.npz")
        size = {n: Path(f"{tmp}/{n}").stat().st_size / 1e6 for n in ("rlx.npz", "conv.npz")}
        tardis_mb = sum(Path(f).stat().st_size for f in files) / 1e6
        print(f"{'step':28} {'seconds':>8} {'M events/s':>11} {'peak RSS MB':>12} {'output':>24}")
        print(
            f"{'rlx export hftbacktest':28} {secs:8.2f} {events / secs / 1e6:11.2f} {rss:12.0f} "
            f"{rows:>12,} rows {size['rlx.npz']:5.0f} MB"
        )
        print(
            f"{'rlx export tardis':28} {t_secs:8.2f} {events / t_secs / 1e6:11.2f} {t_rss:12.0f} "
            f"{t_rows:>12,} rows {tardis_mb:5.0f} MB"
        )
        print(
            f"{'hftbacktest tardis.convert':28} {c_secs:8.2f} {events / c_secs / 1e6:11.2f} {c_rss:12.0f} "
            f"{c_rows:>12,} rows {size['conv.npz']:5.0f} MB"
        )
        print(
            f"ratios, rlx .npz export vs hftbacktest's converter on the same day: {c_secs / secs:.1f}x faster, "
            f"{c_rss / rss:.1f}x less peak RSS (events/s counted over the {events:,} unified events for all three)"
        )


if __name__ == "__main__":
    main()
