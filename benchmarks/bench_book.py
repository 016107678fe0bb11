"""Book engine and unified stream: this project's numba engine against the peers a user would otherwise pick.

Same staged deltas for everyone, in the same process:
- ``rlx engine``: ``rlx_pipeline.book.engine.apply_rows`` (numba, a price-indexed ladder per side);
- ``order_book``: the C extension cryptofeed uses (``order_book.OrderBook``), driven by a Python loop;
- ``sortedcontainers``: a ``SortedDict`` per side, driven by a Python loop.
Then end to end: ``build_unified`` (read staged parquet, merge with trades, replay, write the events and the
top-10 book after each message).

    python benchmarks/bench_book.py                          # 5 M delta rows
    python benchmarks/bench_book.py --delta-rows 30000000    # a BTCUSDT-scale day (synthetic)
    python benchmarks/bench_book.py --simulated-hours 24      # a BTCUSDT-scale day from the market simulator
    python benchmarks/bench_book.py --lake DIR                # a day already in a local lake (no generation)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from peak_memory import in_fresh_process, peak_rss_mb

DATE, SYMBOL = "2024-08-09", "BTC-USDT"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--delta-rows", type=int, default=5_000_000)
    ap.add_argument("--peer-rows", type=int, default=1_000_000, help="rows the Python-loop peers apply")
    ap.add_argument(
        "--simulated-hours",
        type=float,
        default=0.0,
        help="use the market simulator for this many hours instead",
    )
    ap.add_argument(
        "--lake",
        type=Path,
        default=None,
        help="an existing local Crypto Lake with BTC-USDT on 2024-08-09 (e.g. written by "
        "`rlx-pipeline simulate --lake DIR --minutes 1440`): measure it instead of generating a day",
    )
    args = ap.parse_args()

    from rlx_pipeline.book.engine import apply_rows, new_book
    from rlx_pipeline.lake.source import LocalLake
    from rlx_pipeline.lake.staging import stage_day
    from rlx_pipeline.lake.synthetic import RawDaySpec, write_raw_day
    from rlx_pipeline.simulator import SimConfig, write_lake_stream

    with tempfile.TemporaryDirectory(prefix="rlx-bench-book-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        lake = args.lake or tmp / "lake"
        if args.lake:
            print(f"measuring the day in {args.lake}")
        elif args.simulated_hours:
            # the project's simulator: BTCUSDT-like messages (~34 rows), prices near the top, consistent snapshots
            write_lake_stream(SimConfig(duration_s=args.simulated_hours * 3600, seed=7), lake)
        else:
            # synthetic: ~34 rows per message as real BTCUSDT, prices uniform over 500 ticks (the engine's worst)
            spec = RawDaySpec(
                delta_messages=args.delta_rows // 34,
                levels_per_message=34.0,
                trades=args.delta_rows // 10,
                snapshot_every=60,
            )
            write_raw_day(lake, spec)
        paths = {}
        for table in ("trades", "book", "book_delta"):
            paths[table] = tmp / f"{table}.parquet"
            stage_day(LocalLake(lake), table, "BINANCE", SYMBOL, DATE, paths[table])
        print(f"staged the day in {time.perf_counter() - t0:.1f} s")
        d = pq.read_table(paths["book_delta"], columns=["side_is_bid", "price", "size"])
        is_bid = d["side_is_bid"].to_numpy()
        price = d["price"].to_numpy()
        size = d["size"].to_numpy()
        n = len(price)
        rows = {}

        apply_rows(is_bid[:1000], price[:1000], size[:1000], *new_book())  # compile
        book = new_book()
        t0 = time.perf_counter()
        apply_rows(is_bid, price, size, *book)
        rows["rlx engine (numba)"] = n / (time.perf_counter() - t0)

        m = min(args.peer_rows, n)
        fb, fp, fs = is_bid[:m].tolist(), (price[:m] / 1e8).tolist(), (size[:m] / 1e8).tolist()
        import order_book

        ob = order_book.OrderBook()
        t0 = time.perf_counter()
        for b, p, q in zip(fb, fp, fs, strict=True):
            side = ob.bids if b else ob.asks
            if q:
                side[p] = q
            elif p in side:
                del side[p]
        rows["order_book (C ext, Python loop)"] = m / (time.perf_counter() - t0)

        from sortedcontainers import SortedDict

        bids, asks = SortedDict(), SortedDict()
        ib = price[:m].tolist()
        iq = size[:m].tolist()
        t0 = time.perf_counter()
        for b, p, q in zip(fb, ib, iq, strict=True):
            side = bids if b else asks
            if q:
                side[p] = q
            else:
                side.pop(p, None)
        rows["sortedcontainers (Python loop)"] = m / (time.perf_counter() - t0)

        ours = rows["rlx engine (numba)"]
        print(f"\nbook alone: {n:,} delta rows (peers: first {m:,})")
        for name, rate in rows.items():
            print(f"  {name:34} {rate / 1e6:8.2f} M rows/s   engine is {ours / rate:6.1f}x")
        # A sorted-array book's cost grows with an update's distance from the best price; the ladder's does not.
        # The synthetic day draws prices uniformly over 500 ticks; the same rows with prices crowding the top:
        rng = np.random.default_rng(1)
        ticks = np.minimum(rng.geometric(1 / 20, n), 5000)
        near = np.where(is_bid, 6_000_000 - ticks, 6_000_000 + ticks).astype(np.int64) * 1_000_000
        book = new_book()
        t0 = time.perf_counter()
        apply_rows(is_bid, near, size, *book)
        rate = n / (time.perf_counter() - t0)
        print(
            f"  {'rlx engine, updates near the top':34} {rate / 1e6:8.2f} M rows/s   (geometric, mean 20 ticks)"
        )

        secs, rows_in, rows_out, book_rows, e2e_mb = in_fresh_process(
            _end_to_end, paths, tmp / "unified.parquet"
        )
        sizes = [(tmp / f).stat().st_size / 1e6 for f in ("unified.parquet", "unified.book.parquet")]
        print(
            f"\nend to end (read, merge, replay, write events + top-10 after each message): {rows_in:,} events in"
            f" {secs:.1f} s = {rows_in / secs / 1e6:.2f} M rows/s; output {rows_out:,} events ({sizes[0]:.0f} MB)"
            f" + {book_rows:,} book states ({sizes[1]:.0f} MB); peak RSS {e2e_mb:.0f} MB (own process)"
        )
        print(
            f"peak RSS of the book-alone process: {peak_rss_mb():.0f} MB (includes the peers' Python lists)"
        )


def _end_to_end(paths: dict, dest: Path) -> tuple[float, int, int, int, float]:
    from rlx_pipeline.book import build_unified

    build_unified(paths, DATE, dest, top_n=10)  # compile the kernels (cached on disk) and warm the page cache
    t0 = time.perf_counter()
    res = build_unified(paths, DATE, dest, top_n=10)
    return time.perf_counter() - t0, res.input_rows, res.rows, res.book_rows, peak_rss_mb()


if __name__ == "__main__":
    main()
