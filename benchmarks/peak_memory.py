"""Peak memory for the benchmarks: a process's own peak RSS, reset between steps, or a step in a fresh process."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any


def peak_rss_mb() -> float:
    """This process's own peak RSS: VmHWM, since ru_maxrss survives exec and would count the parent's."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> float:
    """Reset the peak RSS to the current RSS; returns the current RSS (MB), the step's baseline."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def in_fresh_process(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a spawned process, so that the peak RSS it measures is its own."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)
