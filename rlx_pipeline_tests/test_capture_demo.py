"""The demo's live capture is clocked by the replayed market: its receive times fall in the simulated day."""

from __future__ import annotations

from rlx_pipeline.exchange.live_capture import capture_live
from rlx_pipeline.formats.capture_file import iter_capture_lines
from rlx_pipeline.simulator import SimConfig, simulate
from rlx_pipeline_tests.conftest import DATE, SYMBOL


def test_live_capture_keeps_the_simulated_clock(tmp_path):
    truth = simulate(SimConfig(symbol=SYMBOL, start=f"{DATE}T00:00:00Z", duration_s=10, seed=5))
    (path,) = capture_live([truth], tmp_path, speed=20.0)
    start = truth.config.start_ns
    capture_ns = [ns for _, ns, _, _ in iter_capture_lines(path)]
    assert len(capture_ns) > 100
    # every receive time on the market's clock: inside the simulated day 2024-08-09 (was today's wall clock)
    assert start <= min(capture_ns) and max(capture_ns) < start + 86_400 * 10**9
