"""Stage a large raw Crypto Lake day from the local lake and from S3 (moto, through lakeapi + pyarrow S3).

Prints rows/s, MB/s and peak RSS per source; each staging runs in its own child process so its peak RSS is
its own. The peer is pyarrow's whole-file ``read_table`` of the same raw file (what an in-memory loader
does), run in a child process too, so the ratio shows what streaming costs and saves.

    python benchmarks/bench_lake.py                      # 3 M delta rows (about a minute)
    python benchmarks/bench_lake.py --delta-rows 30000000 # a BTCUSDT-scale day (30 M rows)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peak_memory import peak_rss_mb

DATE, SYMBOL, EXCHANGE, BUCKET = "2024-08-09", "BTC-USDT", "BINANCE", "qnt.data"


def _child(args: argparse.Namespace) -> None:
    """Runs in the child: one staging (or the in-memory peer), prints a JSON line."""
    from rlx_pipeline.lake.source import make_source
    from rlx_pipeline.lake.staging import stage_day

    t0 = time.perf_counter()
    if args.child == "peer":
        import pyarrow.parquet as pq

        from rlx_pipeline.layout import lake_key

        table = pq.read_table(Path(args.lake) / lake_key("book_delta_v2", EXCHANGE, SYMBOL, DATE))
        rows, raw = table.num_rows, table.nbytes
    else:
        source = make_source(
            args.child, lake_dir=args.lake, cache_dir=Path(args.work) / "cache", bucket=BUCKET
        )
        dest = Path(args.work) / f"staged-{args.child}.parquet"
        r = stage_day(source, "book_delta", EXCHANGE, SYMBOL, DATE, dest, batch_rows=args.batch_rows)
        rows, raw = r.rows, r.raw_bytes
    secs = time.perf_counter() - t0
    rss_mb = peak_rss_mb()
    print(json.dumps({"rows": rows, "raw_bytes": raw, "seconds": secs, "peak_rss_mb": rss_mb}))


def _run_child(kind: str, lake: Path, work: Path, batch_rows: int, env: dict[str, str]) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--lake", str(lake), "--work", str(work)]
    cmd += ["--batch-rows", str(batch_rows)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--delta-rows", type=int, default=3_000_000)
    ap.add_argument("--batch-rows", type=int, default=1_000_000)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--lake", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return

    import logging

    import boto3
    from boto3.s3.transfer import TransferConfig
    from moto.server import ThreadedMotoServer

    from rlx_pipeline.lake.synthetic import RawDaySpec, write_raw_day
    from rlx_pipeline.layout import lake_key

    with tempfile.TemporaryDirectory(prefix="rlx-bench-lake-") as tmp:
        work, lake = Path(tmp), Path(tmp) / "lake"
        t0 = time.perf_counter()
        levels = 3.0
        spec = RawDaySpec(
            delta_messages=int(args.delta_rows / levels), levels_per_message=levels, trades=1000
        )
        paths = write_raw_day(lake, spec)
        raw_path = lake / lake_key("book_delta_v2", EXCHANGE, SYMBOL, DATE)
        size_mb = raw_path.stat().st_size / 1e6
        print(f"raw book_delta_v2 day written: {size_mb:.1f} MB in {time.perf_counter() - t0:.1f} s")

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        env = dict(os.environ)
        env.update(
            AWS_ENDPOINT_URL=f"http://{host}:{port}",
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="eu-west-1",
        )
        s3 = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="eu-west-1",
        )
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        for p in paths.values():
            key = str(Path(p).relative_to(lake))
            s3.upload_file(str(p), BUCKET, key, Config=TransferConfig(multipart_threshold=64 * 2**20))

        results = {
            "local (pyarrow, streamed)": _run_child("local", lake, work, args.batch_rows, env),
            "lakeapi over S3 (moto, streamed)": _run_child("lakeapi", lake, work, args.batch_rows, env),
            "peer: pq.read_table whole file": _run_child("peer", lake, work, args.batch_rows, env),
        }
        server.stop()

    peer = results["peer: pq.read_table whole file"]
    print(f"\nbook_delta day: {args.delta_rows:,} rows requested, batch {args.batch_rows:,} rows")
    print(
        f"{'source':36} {'rows':>12} {'s':>7} {'Mrows/s':>8} {'MB/s':>7} {'peak RSS MB':>11} {'RSS/peer':>8}"
    )
    for name, r in results.items():
        mb_s = r["raw_bytes"] / 1e6 / r["seconds"] if "peer" not in name else size_mb / r["seconds"]
        print(
            f"{name:36} {r['rows']:>12,} {r['seconds']:>7.1f} {r['rows'] / r['seconds'] / 1e6:>8.2f} "
            f"{mb_s:>7.1f} {r['peak_rss_mb']:>11.0f} {r['peak_rss_mb'] / peer['peak_rss_mb']:>8.2f}"
        )
    print("(MB/s counts raw parquet bytes read; staging also normalizes, validates and writes the output)")


if __name__ == "__main__":
    main()
