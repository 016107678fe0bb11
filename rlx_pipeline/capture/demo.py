"""Capture a simulated market live: the local exchange replays it, the capture service records it."""

from __future__ import annotations

from pathlib import Path


def capture_live(truths, capture_dir: str | Path, *, speed: float = 20.0) -> list[Path]:
    """Replay ``truths`` (MarketTruth objects) through the local exchange at ``speed`` and capture every stream
    over a real WebSocket into ``capture_dir``; returns the finished capture files. The capture is clocked by the
    replayed market (not today's clock), so its receive times compare with the simulated lake's."""
    from rlx_pipeline.capture.service import CaptureConfig, run_capture
    from rlx_pipeline.exchange import ExchangeThread

    truths = list(truths)
    capture_dir = Path(capture_dir)
    before = set(capture_dir.rglob("*.jsonl.zst"))
    window_s = max(t.config.duration_s for t in truths)
    start_ns = min(t.config.start_ns for t in truths)
    with ExchangeThread(truths, speed=speed) as srv:

        def market_clock_ns() -> int:
            now = srv.market_clock_ns()
            return start_ns if now is None else now

        config = CaptureConfig(
            symbols=[t.config.instrument.stream_symbol for t in truths],
            out_dir=capture_dir,
            ws_url=srv.ws_url,
            rest_url=srv.rest_url,
            duration_s=window_s / speed + 2.0,
            clock_ns=market_clock_ns,
        )
        run_capture(config, handle_signals=False)
    return sorted(set(capture_dir.rglob("*.jsonl.zst")) - before)
