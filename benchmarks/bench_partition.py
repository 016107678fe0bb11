"""One partition end to end through Dagster on a simulated BTCUSDT-scale day, against reading its inputs once.

    python benchmarks/bench_partition.py [--hours 3] [--data-dir DIR] [--executor in_process]
    python benchmarks/bench_partition.py --golden [--per-line] [--data-dir DIR]   # golden parsing alone

Prepares the day once (``rlx-pipeline demo --prepare-only --capture perfect --minutes <hours*60> --symbols
BTC-USDT --data-dir DIR``; an existing DIR with a capture is reused), then materializes every asset of
``2024-08-09|BTC-USDT`` with Dagster's own CLI (``dagster asset materialize --select '*'``) into a fresh instance,
with ``RLX_EXECUTOR`` set (default ``in_process``). Prints:

- the whole run's wall time, and each step's (asset or check) wall time from the run's event log, with the peak
  RSS of the run's process tree while that step ran (sampled from /proc every 50 ms) and the number of processes
  seen (the process structure in force: one per step under the multiprocess executor);
- the read-once floor, in this process: every lake parquet file of the day read, every capture line decompressed
  and its ``data`` parsed with orjson; and the run's wall time as a multiple of it;
- golden parsing in capture lines/s (the ``golden_samples`` step).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

DATE, SYMBOL = "2024-08-09", "BTC-USDT"


def prepare(data_dir: Path, hours: float) -> None:
    if any((data_dir / "capture").rglob("*.jsonl.zst")):
        print(f"reusing the prepared day in {data_dir}")
        return
    cmd = ["rlx-pipeline", "demo", "--prepare-only", "--capture", "perfect", "--minutes", f"{hours * 60:g}"]
    cmd += ["--symbols", SYMBOL, "--data-dir", str(data_dir)]
    print("preparing:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def golden_only(data_dir: Path, per_line: bool) -> None:
    """Golden parsing alone, in this process, against decoding the same capture lines with orjson."""
    from rlx_pipeline.golden import build_golden

    files = sorted((data_dir / "capture").rglob("*.jsonl.zst"))
    build_golden(
        files[:0], SYMBOL, DATE, lambda t: Path(tempfile.mkdtemp()) / f"{t}.parquet"
    )  # imports loaded
    c0 = time.process_time()
    floor_s, _, lines = read_once(data_dir, lake=False)
    floor_cpu = time.process_time() - c0
    print(
        f"capture read-once floor: {floor_s:.2f} s wall, {floor_cpu:.2f} s CPU, {lines:,} lines: "
        f"{lines / floor_s:,.0f} lines/s wall, {lines / floor_cpu:,.0f} lines/CPU-s"
    )
    with tempfile.TemporaryDirectory(prefix="rlx-bench-golden-") as out:
        for columnar in (True, False) if per_line else (True,):
            t0, c0 = time.perf_counter(), time.process_time()
            build_golden(files, SYMBOL, DATE, lambda t: Path(out) / f"{t}.parquet", columnar=columnar)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            name = "columnar" if columnar else "per-line"
            print(
                f"golden parse ({name}): {dt:.2f} s wall, {cpu:.2f} s CPU (all threads): {lines / dt:,.0f} lines/s "
                f"wall, {lines / cpu:,.0f} lines/CPU-s; {dt / floor_s:.2f}x the floor's wall, "
                f"{cpu / floor_cpu:.2f}x its CPU"
            )


def read_once(data_dir: Path, lake: bool = True) -> tuple[float, int, int]:
    """Seconds to read every lake file of the day and decode every capture line; (s, lake rows, capture lines)."""
    import orjson
    import pyarrow.parquet as pq

    from rlx_pipeline.capture.format import iter_capture_lines

    t0 = time.perf_counter()
    rows = sum(pq.read_table(f).num_rows for f in sorted((data_dir / "lake").rglob("*.parquet")) if lake)
    lines = 0
    loads = orjson.loads
    for f in sorted((data_dir / "capture").rglob("*.jsonl.zst")):
        for _, _, _, data in iter_capture_lines(f):
            loads(data)
            lines += 1
    return time.perf_counter() - t0, rows, lines


class TreeSampler(threading.Thread):
    """RSS of a process and its descendants, sampled; keeps (time, total RSS MB) and every pid seen."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float]] = []
        self.pids: set[int] = set()
        self.done = threading.Event()

    def _tree(self) -> list[int]:
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            out.append(p)
            try:
                for task in Path(f"/proc/{p}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
        return out

    def run(self) -> None:
        while not self.done.is_set():
            total = 0
            for p in self._tree():
                try:
                    for line in Path(f"/proc/{p}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
                            self.pids.add(p)
                except OSError:
                    pass
            self.samples.append((time.time(), total / 1024))
            self.done.wait(self.every)

    def peak(self, start: float, end: float) -> float:
        inside = [mb for t, mb in self.samples if start <= t <= end + self.every]
        return max(inside, default=float("nan"))


def step_times(dagster_home: Path) -> list[tuple[str, float, float]]:
    """(step key, start, end) of the instance's only run, from its event log."""
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    import dagster as dg

    instance = dg.DagsterInstance.get()
    run = instance.get_runs(limit=1)[0]
    starts, ends = {}, {}
    for e in instance.all_logs(run.run_id):
        if not e.is_dagster_event or not e.step_key:
            continue
        kind = e.dagster_event.event_type_value
        if kind == "STEP_START":
            starts[e.step_key] = e.timestamp
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"):
            ends[e.step_key] = e.timestamp
    steps = [(k, starts[k], ends.get(k, starts[k])) for k in starts]
    print(f"run {run.run_id}: {run.status.value}")
    return sorted(steps, key=lambda s: s[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--data-dir", type=Path, default=None, help="default: /tmp/rlx-bench-partition-<hours>h")
    ap.add_argument("--executor", default="in_process", help="RLX_EXECUTOR for the run")
    ap.add_argument("--golden", action="store_true", help="golden parsing alone against the capture floor")
    ap.add_argument("--per-line", action="store_true", help="with --golden: also the per-line parser")
    args = ap.parse_args()
    data_dir = args.data_dir or Path(tempfile.gettempdir()) / f"rlx-bench-partition-{args.hours:g}h"
    prepare(data_dir, args.hours)
    if args.golden:
        golden_only(data_dir, args.per_line)
        return

    floor_s, lake_rows, lines = read_once(data_dir)
    print(f"read-once floor: {floor_s:.2f} s ({lake_rows:,} lake rows, {lines:,} capture lines)")

    with tempfile.TemporaryDirectory(prefix="rlx-bench-partition-") as home:
        # Outputs of an earlier run of this benchmark go; the prepared inputs (lake, capture) stay.
        for sub in ("staged", "golden", "unified", "reports", "checkpoints", "alerts", "dagster"):
            shutil.rmtree(data_dir / sub, ignore_errors=True)
        env = {
            **os.environ,
            "DAGSTER_HOME": home,
            "RLX_DATA_DIR": str(data_dir),
            "RLX_SYMBOLS": SYMBOL,
            "RLX_EXECUTOR": args.executor,
            # a simulated day shorter than 24 h covers only its hours (as the demo sets it)
            "RLX_LAKE_MIN_HOURS": str(min(24, math.floor(args.hours))),
        }
        cmd = ["dagster", "asset", "materialize", "-m", "rlx_pipeline.definitions", "--select", "*"]
        cmd += ["--partition", f"{DATE}|{SYMBOL}"]
        t0 = time.time()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        log, _ = proc.communicate()
        wall = time.time() - t0
        sampler.done.set()
        sampler.join()
        if proc.returncode:
            print(log[-4000:])
            sys.exit(f"dagster asset materialize failed ({proc.returncode})")
        steps = step_times(Path(home))

    print(
        f"\npartition {DATE}|{SYMBOL}, {args.hours:g} h, RLX_EXECUTOR={args.executor}: {wall:.1f} s wall, "
        f"peak RSS {sampler.peak(t0, t0 + wall):,.0f} MB (process tree), {len(sampler.pids)} processes seen"
    )
    print(f"{'step':<44} {'wall s':>8} {'peak RSS MB':>12}")
    in_steps = 0.0
    for key, start, end in steps:
        in_steps += end - start
        print(f"{key:<44} {end - start:8.2f} {sampler.peak(start, end):12,.0f}")
        if key == "golden_samples":
            print(f"{'  golden parse':<44} {lines / max(end - start, 1e-9):8,.0f} lines/s")
    print(f"{'wall minus the sum of steps (start-up, between)':<44} {wall - in_steps:8.2f}")
    print(f"\nwhole partition / read-once floor: {wall / floor_s:.1f}x ({wall:.1f} s / {floor_s:.2f} s)")
    print(json.dumps({"hours": args.hours, "wall_s": round(wall, 2), "floor_s": round(floor_s, 2)}))


if __name__ == "__main__":
    main()
