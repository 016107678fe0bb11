"""One partition end to end through Dagster on a simulated BTCUSDT-scale day, against reading its inputs once.

    python benchmarks/bench_partition.py [--hours 3] [--data-dir DIR] [--executor in_process] [--json F]
    python benchmarks/bench_partition.py --hours 24 --data-dir DIR24 --against F   # memory flat: 24 h vs F's day
    python benchmarks/bench_partition.py --golden [--per-line] [--data-dir DIR]   # golden parsing alone

Prepares the day once (``rlx-pipeline demo --prepare-only --capture perfect --minutes <hours*60> --symbols
BTC-USDT --data-dir DIR``; an existing DIR with a capture is reused), then materializes every asset of
``2024-08-09|BTC-USDT`` with Dagster's own CLI (``dagster asset materialize --select '*'``) into a fresh instance,
with ``RLX_EXECUTOR`` set (default ``in_process``). Prints:

- the whole run's wall time, and each step's (asset or check) wall time from the run's event log, with the peak
  RSS of the run's process tree while that step ran (sampled from /proc every 50 ms) and the number of processes
  seen (the process structure in force: one per step under the multiprocess executor);
- the read-once floor, in this process: every lake parquet file of the day read, every capture line decompressed
  (zstandard's stream reader) and its ``data`` parsed with orjson; and the run's wall and CPU time as multiples;
- golden parsing in capture lines/s (the ``golden_samples`` step);
- the machine's load average before and after (the figures are wall times on a shared machine), and one line per
  target of issue #18 (met / not met, with the figure): a 3 h day's run at most 8x its floor; a full day's every
  asset under 2 minutes and peak RSS under 1.5 GB; golden parsing at 500,000 lines/s; with ``--against`` the
  figures (``--json``) of a run of another day's length, memory flat: what each step adds to the RSS it started
  from at most 1.25x (or 50 MB).

Under the in-process executor every step runs in the run's one process, so a step's peak RSS includes what the
earlier steps left allocated (the ``at start`` column); ``--executor multiprocess`` gives each step its own process.
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
from collections.abc import Callable
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
    from rlx_pipeline.formats.capture_file import write_capture
    from rlx_pipeline.golden import build_golden

    files = sorted((data_dir / "capture").rglob("*.jsonl.zst"))
    with tempfile.TemporaryDirectory(prefix="rlx-bench-golden-warm-") as warm:
        # imports and the cached numba kernels loaded (a trade and a depth diff of the day), not timed below
        e = 1723161600000
        lines = [
            (e, "btcusdt@trade", b'{"E":%d,"T":%d,"t":1,"p":"1","q":"1","m":true}' % (e, e)),
            (e, "btcusdt@depth@100ms", b'{"E":%d,"U":1,"u":1,"b":[["1","1"]],"a":[]}' % e),
        ]
        capture = write_capture(Path(warm) / "warm.jsonl.zst", lines, venue="binance_spot")
        build_golden([capture], SYMBOL, DATE, lambda t: Path(warm) / f"{t}.parquet")
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
            if columnar:
                golden_cpu_parts(files, Path(out), cpu)


def golden_cpu_parts(files: list[Path], tables: Path, total_cpu: float) -> None:
    """Where the columnar parse's CPU goes, each part run alone: zstd decompression of the frames; the reader
    (decompression, batches, line ends and the numba scan); the parquet writes of the tables it wrote, in the
    sink's chunks; the rest (state, Arrow tables, threads) is the total less those."""
    import numpy as np
    import pyarrow.parquet as pq

    from rlx_pipeline import instruments, venues
    from rlx_pipeline.formats.capture_file import iter_frames
    from rlx_pipeline.golden import columnar, line_scan
    from rlx_pipeline.golden.parse import FLUSH_ROWS, TABLES
    from rlx_pipeline.storage import ParquetBatchWriter

    def cpu(work: Callable[[], object]) -> float:
        c0 = time.process_time()
        work()
        return time.process_time() - c0

    sym = np.frombuffer(instruments.to_binance(SYMBOL).lower().encode(), np.uint8)
    masks = line_scan.field_masks(venues.for_symbol(SYMBOL).frames)
    decompress = cpu(lambda: [None for f in files for _ in iter_frames(f)])
    reader = cpu(lambda: [None for f in files for _ in columnar._read_ahead(f, sym, masks)])

    written = {
        table: pq.read_table(tables / f"{table}.parquet").cast(schema) for table, schema in TABLES.items()
    }

    def write() -> None:
        with tempfile.TemporaryDirectory(prefix="rlx-bench-golden-write-") as d:
            for table, rows in written.items():
                with ParquetBatchWriter(Path(d) / f"{table}.parquet", TABLES[table]) as w:
                    for start in range(0, len(rows), FLUSH_ROWS):
                        w.write(rows.slice(start, FLUSH_ROWS).combine_chunks())

    writes = cpu(write)
    rest = total_cpu - reader - writes
    print(
        f"  its CPU, part by part: zstd decompression {decompress:.2f} s, batches and numba scan "
        f"{reader - decompress:.2f} s, parquet writes {writes:.2f} s, state and tables (the rest) {rest:.2f} s"
    )


def read_once(data_dir: Path, lake: bool = True) -> tuple[float, int, int]:
    """Seconds to read every lake file of the day and decode every capture line; (s, lake rows, capture lines).

    The capture is read with zstandard's own stream reader across frames, each line's ``data`` sliced out
    (``split_line``) and parsed with orjson: the floor does not go through the project's frame reader
    (``formats.capture_file.iter_frames``), whose cost is part of what is measured against it."""
    import io

    import orjson
    import pyarrow.parquet as pq
    import zstandard

    from rlx_pipeline.formats.capture_file import split_line

    t0 = time.perf_counter()
    rows = sum(pq.read_table(f).num_rows for f in sorted((data_dir / "lake").rglob("*.parquet")) if lake)
    lines = 0
    loads = orjson.loads
    for f in sorted((data_dir / "capture").rglob("*.jsonl.zst")):
        with (
            open(f, "rb") as fh,
            zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True) as r,
        ):
            for line in io.BufferedReader(r, 1 << 20):
                lines += 1
                loads(split_line(line.rstrip(b"\n"), f, lines)[2])
    return time.perf_counter() - t0, rows, lines


_TICK = os.sysconf("SC_CLK_TCK")


class TreeSampler(threading.Thread):
    """RSS and CPU time of a process and its descendants, sampled; keeps (time, total RSS MB, CPU s) and every
    pid seen. CPU time (user + system, reaped children included) is what a step costs whatever the machine's
    load; wall time on a shared machine is not."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float, float]] = []
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
            total = ticks = 0
            for p in self._tree():
                try:
                    for line in Path(f"/proc/{p}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
                            self.pids.add(p)
                    # fields after the command: state is [0]; utime, stime, cutime, cstime are [11:15]
                    stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
                    ticks += sum(int(x) for x in stat[11:15])
                except OSError:
                    pass
            self.samples.append((time.time(), total / 1024, ticks / _TICK))
            self.done.wait(self.every)

    def at(self, when: float) -> tuple[float, float]:
        """(RSS MB, CPU s) at the last sample at or before ``when`` (the first sample before any)."""
        before = [(mb, cpu) for t, mb, cpu in self.samples if t <= when]
        if before:
            return before[-1]
        return self.samples[0][1:] if self.samples else (float("nan"), float("nan"))

    def peak(self, start: float, end: float) -> float:
        inside = [mb for t, mb, _ in self.samples if start <= t <= end + self.every]
        return max(inside, default=float("nan"))

    def cpu(self, start: float, end: float) -> float:
        """CPU seconds of the tree between two times (to the sampling interval)."""
        return self.at(end + self.every)[1] - self.at(start)[1]


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


TARGET_RATIO = 8.0  # the 3 h day's whole partition against its read-once floor
TARGET_STEP_S = 120.0  # a full day: every asset on 2 cores
TARGET_RSS_MB = 1536.0  # a full day: peak RSS
TARGET_LINES_S = 500_000  # golden parsing, end to end
FLAT_MAX = (
    1.25  # memory flat: what each step adds on the longer day at most this multiple of the shorter's ...
)
FLAT_FLOOR_MB = 50  # ... or of this (sampling noise)


def summary(figures: dict, against: dict | None) -> list[str]:
    """One line per target of the issue: met / not met with the figure."""

    def line(ok: bool, what: str) -> str:
        return f"{'met    ' if ok else 'NOT met'}  {what}"

    out = []
    steps = figures["steps"]
    ratio = figures["wall_s"] / figures["floor_s"]
    if figures["hours"] <= 3:
        out.append(
            line(
                ratio <= TARGET_RATIO,
                f"whole partition {ratio:.1f}x the read-once floor in wall time (<= {TARGET_RATIO:g}x; "
                f"{figures['cpu_s'] / figures['floor_cpu_s']:.1f}x in CPU time)",
            )
        )
    else:
        slow = {k: v["wall_s"] for k, v in steps.items() if v["wall_s"] >= TARGET_STEP_S}
        out.append(
            line(
                not slow,
                f"every asset under {TARGET_STEP_S:g} s: slowest {max(steps, key=lambda k: steps[k]['wall_s'])} "
                f"{max(v['wall_s'] for v in steps.values()):.1f} s"
                + (f"; over: {', '.join(slow)}" if slow else ""),
            )
        )
        out.append(
            line(
                figures["peak_rss_mb"] < TARGET_RSS_MB,
                f"peak RSS {figures['peak_rss_mb']:,.0f} MB (< {TARGET_RSS_MB:,.0f} MB)",
            )
        )
    if "golden_samples" in steps:
        rate = figures["lines"] / max(steps["golden_samples"]["wall_s"], 1e-9)
        out.append(
            line(
                rate >= TARGET_LINES_S, f"golden_samples {rate:,.0f} capture lines/s (>= {TARGET_LINES_S:,})"
            )
        )
    if against is not None:
        short, long = sorted((figures, against), key=lambda f: f["hours"])

        def growth(step: dict) -> int:
            # what the step itself added: under the in-process executor the process carries the earlier steps'
            # memory into it (the ``at start`` column)
            return step["peak_rss_mb"] - step["rss_at_start_mb"]

        both = [
            (k, growth(short["steps"][k]), growth(v)) for k, v in long["steps"].items() if k in short["steps"]
        ]
        grown = [k for k, a, b in both if b > FLAT_MAX * max(a, FLAT_FLOOR_MB)]
        detail = ", ".join(f"{k} {a:,}->{b:,}" for k, a, b in both)
        out.append(
            line(
                not grown,
                f"memory flat ({long['hours']:g} h against {short['hours']:g} h: each step's peak RSS above its "
                f"start, MB, at most {FLAT_MAX:g}x or {FLAT_FLOOR_MB} MB): {detail}"
                + (f"; grew: {', '.join(grown)}" if grown else ""),
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--data-dir", type=Path, default=None, help="default: /tmp/rlx-bench-partition-<hours>h")
    ap.add_argument("--executor", default="in_process", help="RLX_EXECUTOR for the run")
    ap.add_argument("--json", type=Path, default=None, help="write this run's figures to this file")
    ap.add_argument(
        "--against",
        type=Path,
        default=None,
        help="figures (--json) of a run of another day's length: memory flat?",
    )
    ap.add_argument("--golden", action="store_true", help="golden parsing alone against the capture floor")
    ap.add_argument("--per-line", action="store_true", help="with --golden: also the per-line parser")
    args = ap.parse_args()
    data_dir = args.data_dir or Path(tempfile.gettempdir()) / f"rlx-bench-partition-{args.hours:g}h"
    prepare(data_dir, args.hours)
    if args.golden:
        golden_only(data_dir, args.per_line)
        return

    print(f"machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    c0 = time.process_time()
    floor_s, lake_rows, lines = read_once(data_dir)
    floor_cpu = time.process_time() - c0
    print(
        f"read-once floor: {floor_s:.2f} s wall, {floor_cpu:.2f} s CPU ({lake_rows:,} lake rows, {lines:,} capture "
        "lines)"
    )

    with tempfile.TemporaryDirectory(prefix="rlx-bench-partition-") as home:
        # Outputs of an earlier run of this benchmark go; the prepared inputs (lake, capture) stay.
        for sub in ("staged", "golden", "unified", "reports", "checkpoints", "alerts", "dagster", "exports"):
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

    peak, cpu = sampler.peak(t0, t0 + wall), sampler.cpu(t0, t0 + wall)
    print(
        f"\npartition {DATE}|{SYMBOL}, {args.hours:g} h, RLX_EXECUTOR={args.executor}: {wall:.1f} s wall, "
        f"{cpu:.1f} s CPU, peak RSS {peak:,.0f} MB (process tree), {len(sampler.pids)} processes seen; "
        f"load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"{'step':<44} {'wall s':>8} {'CPU s':>8} {'peak RSS MB':>12} {'at start MB':>12}")
    in_steps = 0.0
    figures: dict = {"hours": args.hours, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                     "floor_s": round(floor_s, 2), "floor_cpu_s": round(floor_cpu, 2), "lines": lines,
                     "peak_rss_mb": round(peak), "steps": {}}  # fmt: skip
    for key, start, end in steps:
        in_steps += end - start
        top, (first, _), step_cpu = sampler.peak(start, end), sampler.at(start), sampler.cpu(start, end)
        print(f"{key:<44} {end - start:8.2f} {step_cpu:8.2f} {top:12,.0f} {first:12,.0f}")
        figures["steps"][key] = {"wall_s": round(end - start, 2), "cpu_s": round(step_cpu, 2),
                                 "peak_rss_mb": round(top), "rss_at_start_mb": round(first)}  # fmt: skip
        if key == "golden_samples":
            print(f"{'  golden parse':<44} {lines / max(end - start, 1e-9):8,.0f} lines/s")
    print(f"{'wall minus the sum of steps (start-up, between)':<44} {wall - in_steps:8.2f}")
    print(
        f"\nwhole partition / read-once floor: {wall / floor_s:.1f}x wall ({wall:.1f} s / {floor_s:.2f} s), "
        f"{cpu / floor_cpu:.1f}x CPU ({cpu:.1f} s / {floor_cpu:.2f} s)"
    )
    against = json.loads(args.against.read_text()) if args.against else None
    print("\ntargets (issue #18):")
    for s in summary(figures, against):
        print("  " + s)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    print(json.dumps({k: figures[k] for k in ("hours", "wall_s", "cpu_s", "floor_s", "peak_rss_mb")}))


if __name__ == "__main__":
    main()
