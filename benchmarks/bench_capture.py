"""Capture throughput: a local WebSocket server sends at increasing rates to `rlx-pipeline capture run` (a separate
process); reports the achieved rate, whether every sent frame is in the file (zero loss), and the capture process's
CPU per 1,000 messages. Peer figure: the same frames decoded with orjson alone in this process.

    /tmp/venv/bin/python benchmarks/bench_capture.py [--rates 2000,5000,10000,20000] [--seconds 5]

Until the exchange server lands this uses the test suite's MiniExchange (real websockets server, one symbol).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rlx_pipeline.capture.format import EVENT_STREAM, iter_capture_lines  # noqa: E402
from rlx_pipeline_tests.test_capture_service import MiniExchange  # noqa: E402


def run(rate: float, seconds: float) -> dict:
    out = Path(tempfile.mkdtemp(prefix="bench_capture_"))
    with MiniExchange(rate_hz=rate) as ex:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        cmd = [sys.executable, "-c", "from rlx_pipeline.cli import main; main()", "capture", "run"]
        cmd += ["--symbols", "btcusdt", "--streams", "trade,depth@100ms,bookTicker", "--ws-url", ex.ws_url]
        cmd += ["--rest-url", ex.rest_url, "--out", str(out), "--duration", str(seconds)]
        subprocess.run(cmd, check=True, capture_output=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        sent = [f for c in ex.sent for f in c]
    got = set()
    for f in out.rglob("*.jsonl.zst"):
        for _, _, s, d in iter_capture_lines(f):
            if s != EVENT_STREAM:
                got.add(b'{"stream":"%s","data":%s}' % (s.encode(), d))
    lost = sum(1 for f in sent[:-5] if f not in got)  # the last frames in flight at the stop do not count
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    t1 = time.perf_counter()
    for f in sent:
        orjson.loads(f)
    peer = time.perf_counter() - t1
    return {
        "nominal_rate": rate,
        "sent": len(sent),
        "achieved_rate": round(len(sent) / seconds),
        "lost": lost,
        "capture_cpu_s": round(cpu, 2),
        "cpu_ms_per_1000": round(1000 * cpu / max(len(sent), 1) * 1000, 2),
        "orjson_only_ms_per_1000": round(1000 * peer / max(len(sent), 1) * 1000, 3),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="2000,5000,10000,20000")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    best = 0
    for rate in (float(r) for r in args.rates.split(",")):
        r = run(rate, args.seconds)
        print(r, flush=True)
        if r["lost"] == 0:
            best = max(best, r["achieved_rate"])
    print(
        f"highest achieved rate with zero loss: {best} msgs/s (2 shared cores, CPU process-wide incl. startup)"
    )


if __name__ == "__main__":
    main()
