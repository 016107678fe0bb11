"""The local exchange over real sockets: streams, REST snapshots consistent with them, Binance-like refusals,
session limit, serverShutdown; and the capture service against it, with a dropped connection mid-stream."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rlx_pipeline.exchange import ExchangeServer, ExchangeThread
from rlx_pipeline.simulator import SimConfig, simulate


@pytest.fixture(scope="module")
def truth():
    return simulate(SimConfig(duration_s=30, seed=9))


def test_combined_stream_sends_the_truth_verbatim_in_order(truth):
    async def main():
        async with ExchangeServer([truth], speed=60) as srv:
            got = []
            streams = "btcusdt@trade/btcusdt@depth@100ms"
            async with connect(f"{srv.ws_url}/stream?streams={streams}") as ws:
                while True:
                    try:
                        got.append(await asyncio.wait_for(ws.recv(), timeout=2))
                    except TimeoutError:
                        break
            return got

    got = asyncio.run(main())
    want = [
        f'{{"stream":"{s}","data":{d.decode()}}}'
        for _, s, d in truth.binance_frames()
        if s in ("btcusdt@trade", "btcusdt@depth@100ms")
    ]
    assert got == want


def test_rest_snapshot_is_the_book_after_the_last_depth_message_sent(truth):
    async def main():
        async with ExchangeServer([truth], speed=20) as srv:  # noqa: SIM117 - the URL comes from srv
            async with connect(f"{srv.ws_url}/ws/btcusdt@depth@100ms") as ws:
                last_u = None
                for _ in range(20):
                    last_u = orjson.loads(await ws.recv())["u"]
                url = f"{srv.rest_url}/api/v3/depth?symbol=BTCUSDT&limit=1000"
                body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
                return last_u, body

    last_u, body = asyncio.run(main())
    snap = orjson.loads(body)
    assert snap["lastUpdateId"] >= last_u
    assert body == truth.rest_snapshot(snap["lastUpdateId"], limit=1000)


def test_unknown_streams_and_symbols_get_binance_errors(truth):
    async def main():
        async with ExchangeServer([truth]) as srv:
            with pytest.raises(InvalidStatus) as exc:
                async with connect(f"{srv.ws_url}/stream?streams=dogeusdt@trade"):
                    pass
            url = f"{srv.rest_url}/api/v3/depth?symbol=DOGEUSDT"
            with pytest.raises(urllib.error.HTTPError) as http:
                await asyncio.to_thread(urllib.request.urlopen, url)
            with http.value as err:  # read and closed here: an open connection would hold the server's close
                return exc.value.response, err.code, err.read()

    ws_resp, http_code, http_body = asyncio.run(main())
    assert ws_resp.status_code == 400 and json.loads(ws_resp.body)["code"] == -1121
    assert http_code == 400 and json.loads(http_body)["code"] == -1121


def test_session_limit_and_server_shutdown(truth):
    async def main():
        async with ExchangeServer([truth], speed=1, session_limit_s=0.5) as srv:  # noqa: SIM117
            async with connect(f"{srv.ws_url}/ws/btcusdt@bookTicker") as ws:
                t0 = time.monotonic()
                with pytest.raises(ConnectionClosed):
                    while True:
                        await ws.recv()
                limited = time.monotonic() - t0
        async with ExchangeServer([truth], speed=1) as srv:  # noqa: SIM117
            async with connect(f"{srv.ws_url}/ws/btcusdt@trade") as ws:
                await asyncio.sleep(0.2)
                await srv.server_shutdown()
                while True:
                    msg = orjson.loads(await ws.recv())
                    if msg.get("e") == "serverShutdown":
                        return limited

    assert (
        0.2 < asyncio.run(main()) < 5
    )  # the limit counts from the server accepting, before the client sees it


def test_capture_survives_a_dropped_connection_with_a_declared_resync(truth, tmp_path):
    from rlx_pipeline.capture.service import CaptureConfig, run_capture
    from rlx_pipeline.formats.capture_file import iter_capture_lines
    from rlx_pipeline.golden import build_golden
    from rlx_pipeline.venues import DepthSync

    speed = 10.0
    exchange = ExchangeThread([truth], speed=speed)
    with exchange as srv:
        config = CaptureConfig(
            symbols=["btcusdt"],
            out_dir=tmp_path / "capture",
            ws_url=srv.ws_url,
            rest_url=srv.rest_url,
            duration_s=truth.config.duration_s / speed + 2,
            backoff_initial_s=0.05,
        )
        thread = threading.Thread(target=run_capture, args=(config,), kwargs={"handle_signals": False})
        thread.start()
        time.sleep(1.2)
        assert exchange.call(lambda s: s.drop_clients()) == 1
        thread.join(timeout=30)
    assert not thread.is_alive()
    files = sorted((tmp_path / "capture").rglob("*.jsonl.zst"))
    events = [
        orjson.loads(d)["type"] for f in files for _, _, s, d in iter_capture_lines(f) if s == "rlx@event"
    ]
    assert "reconnect" in events
    # Binance's sync procedure over the file as written: each snapshot bridges the diffs buffered around it.
    sync, problems = DepthSync(), []
    for f in files:
        for _, _, stream, data in iter_capture_lines(f):
            msg = orjson.loads(data)
            if stream == "rlx@event" and msg["type"] == "resync":
                sync.reset()
            elif stream.endswith("@depthSnapshot"):
                problems.append(sync.on_snapshot(msg["lastUpdateId"]))
            elif stream.endswith("@depth@100ms"):
                problems.append(sync.on_diff(msg["U"], msg["u"], None))
    assert [p for p in problems if p is not None] == []
    res = build_golden(files, "BTC-USDT", "2024-08-09", lambda t: tmp_path / "golden" / f"{t}.parquet")
    # golden agrees, including a snapshot whose response came after a newer diff (legal on Binance and here)
    assert res.silent_gaps == [] and res.unbridged_runs == 0
    assert res.messages["depthSnapshot"] >= 2  # a fresh snapshot after the reconnect
    assert res.depth_runs >= 2
