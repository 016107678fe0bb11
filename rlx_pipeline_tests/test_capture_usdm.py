"""USD-M live capture: a simulated perp served by the local exchange in USD-M's protocol, captured over a real
WebSocket; a ``pu`` break is detected on the diff that carries it and resynced from the futures REST depth."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import orjson
import pytest

from rlx_pipeline import venues
from rlx_pipeline.capture.service import CaptureConfig, CaptureStats, run_capture
from rlx_pipeline.exchange import ExchangeThread
from rlx_pipeline.formats.capture_file import iter_capture_lines, read_index
from rlx_pipeline.golden import build_golden, capture_files_for
from rlx_pipeline.simulator import SimConfig, simulate

PERP = "BTC-USDT-PERP"
BREAK_AT = 40  # the depth diff whose pu is broken


def _capture_perp(srv: ExchangeThread, tmp_path: Path, duration_s: float, **options: float) -> CaptureStats:
    """A USD-M capture of BTCUSDT from the local exchange over its WebSocket, into ``tmp_path/capture``."""
    config = CaptureConfig(
        symbols=["btcusdt"],
        out_dir=tmp_path / "capture",
        venue=venues.USDM,
        ws_url=srv.ws_url,
        rest_url=srv.rest_url,
        duration_s=duration_s,
        **options,
    )
    return run_capture(config, handle_signals=False)


class _PuBreak:
    """The simulated perp with the ``pu`` of one diff pointing elsewhere: the chain breaks there."""

    def __init__(self, truth) -> None:
        self.truth, self.config = truth, truth.config
        self.broken: tuple[int, int] | None = None  # (u, pu) of the broken diff

    def initial_snapshot(self, limit: int = 1000) -> bytes:
        return self.truth.initial_snapshot(limit)

    def binance_frames(self):
        n = 0
        for send_ns, stream, data in self.truth.binance_frames():
            if stream.endswith("@depth@100ms"):
                n += 1
                if n == BREAK_AT:
                    msg = orjson.loads(data)
                    self.broken = (msg["u"], msg["pu"] - 5)
                    data = data.replace(b'"pu":%d,' % msg["pu"], b'"pu":%d,' % self.broken[1])
            yield send_ns, stream, data


@pytest.fixture(scope="module")
def perp():
    return simulate(SimConfig(symbol=PERP, duration_s=20, seed=11))


def test_the_simulator_and_the_local_exchange_speak_usdm(perp):
    frames = list(perp.binance_frames())
    streams = {s.split("@", 1)[1] for _, s, _ in frames}
    assert streams == {"aggTrade", "depth@100ms", "bookTicker"}  # no public trade stream on USD-M
    diffs = [orjson.loads(d) for _, s, d in frames if s.endswith("@depth@100ms")]
    assert all({"E", "T", "pu"} <= set(d) for d in diffs)
    assert all(b["pu"] == a["u"] for a, b in zip(diffs, diffs[1:], strict=False))  # the pu chain
    with ExchangeThread([perp], start_on_first_client=False) as srv:
        assert srv.venue is venues.USDM
        body = orjson.loads(
            urllib.request.urlopen(f"{srv.rest_url}/fapi/v1/depth?symbol=BTCUSDT&limit=5").read()
        )
        assert {"lastUpdateId", "E", "T", "bids", "asks"} == set(body) and len(body["bids"]) == 5
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"{srv.rest_url}/api/v3/depth?symbol=BTCUSDT&limit=5")


def test_a_perp_captured_live_resyncs_on_a_pu_break(perp, tmp_path):
    source = _PuBreak(perp)
    speed = 10.0
    with ExchangeThread([source], speed=speed) as srv:
        stats = _capture_perp(srv, tmp_path, perp.config.duration_s / speed + 2, backoff_initial_s=0.05)
    [path] = stats.files
    assert path.name.startswith("binance_usdm-") and read_index(path)["venue"] == "binance_usdm"
    assert set(read_index(path)["streams"]) >= {
        "btcusdt@aggTrade",
        "btcusdt@depth@100ms",
        "btcusdt@bookTicker",
    }
    events = [orjson.loads(d) for _, _, s, d in iter_capture_lines(path) if s == "rlx@event"]
    u, pu = source.broken
    [gap] = [e for e in events if e["type"] == "gap"]
    assert gap["u"] == u and gap["reason"] == f"expected pu={pu + 5}, got pu={pu} (u={u})"
    assert [e["reason"] for e in events if e["type"] == "resync"] == ["session_start", "gap"]
    assert stats.gaps == 1 and stats.snapshots == 2  # the session's snapshot and the one after the break
    # the pu chain over the file as written: each snapshot is bridged by the diffs around it, no other break
    sync, problems = venues.DepthSync(venues.USDM_RULES), []
    for _, _, stream, data in iter_capture_lines(path):
        msg = orjson.loads(data)
        if stream == "rlx@event" and msg["type"] == "resync":
            sync.reset()
        elif stream.endswith("@depthSnapshot"):
            problems.append(sync.on_snapshot(msg["lastUpdateId"]))
        elif stream.endswith("@depth@100ms") and msg["u"] != u:
            problems.append(sync.on_diff(msg["U"], msg["u"], msg["pu"]))
    assert [p for p in problems if p is not None] == []
    # golden discovery finds the capture for the perp only, and the break is a declared one
    assert capture_files_for(tmp_path / "capture", PERP, "2024-08-09") == [path]
    assert capture_files_for(tmp_path / "capture", "BTC-USDT", "2024-08-09") == []
    res = build_golden([path], PERP, "2024-08-09", lambda t: tmp_path / "golden" / f"{t}.parquet")
    assert res.silent_gaps == [] and len(res.gaps) == 1 and res.unbridged_runs == 0


def test_a_perp_hands_over_before_the_session_limit_without_loss(perp, tmp_path):
    speed = 10.0
    with ExchangeThread([perp], speed=speed) as srv:
        # max_connection_s stands for the 24 h limit: a new connection before the old one is closed
        stats = _capture_perp(srv, tmp_path, perp.config.duration_s / speed + 2, max_connection_s=0.6)
    [path] = stats.files
    events = [orjson.loads(d) for _, _, s, d in iter_capture_lines(path) if s == "rlx@event"]
    handovers = [e for e in events if e["type"] == "reconnect" and e["reason"] == "session_limit"]
    assert len(handovers) >= 2 and stats.gaps == 0
    sent = {orjson.loads(d)["u"] for _, s, d in perp.binance_frames() if s.endswith("@depth@100ms")}
    kept = {orjson.loads(d)["u"] for _, _, s, d in iter_capture_lines(path) if s.endswith("@depth@100ms")}
    assert kept == sent  # every diff kept across the hand-overs (the overlap writes some twice)
