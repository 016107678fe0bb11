"""The local exchange's Binance protocol over real sockets, on a hand-written source: live SUBSCRIBE /
UNSUBSCRIBE, keepalive (a client that never pongs is dropped, one that does stays), scheduled faults."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterator

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK

from rlx_pipeline.exchange import ExchangeServer, FrameSource, source_symbol

MS = 1_000_000


class TinySource:
    """BTCUSDT: a 2-level book at update 100, then every 20 ms a trade and a depth diff (U=u=101, 102, ...)."""

    binance_symbol = "BTCUSDT"

    def __init__(self, n: int = 50, step_ms: int = 20) -> None:
        self.n, self.step_ms = n, step_ms

    def initial_snapshot(self, limit: int = 1000) -> bytes:
        return b'{"lastUpdateId":100,"bids":[["100.00000000","1.00000000"]],"asks":[["101.00000000","2.00000000"]]}'

    def binance_frames(self) -> Iterator[tuple[int, str, bytes]]:
        t0 = 1_723_161_600_000
        for i in range(self.n):
            ms = t0 + i * self.step_ms
            trade = f'{{"e":"trade","E":{ms},"s":"BTCUSDT","t":{i},"p":"100.50000000","q":"0.1","T":{ms},"m":true,"M":true}}'
            depth = (
                f'{{"e":"depthUpdate","E":{ms},"s":"BTCUSDT","U":{101 + i},"u":{101 + i},'
                f'"b":[["99.{i:02d}000000","{i + 1}.00000000"]],"a":[]}}'
            )
            yield ms * MS, "btcusdt@trade", trade.encode()
            yield ms * MS + 1, "btcusdt@depth@100ms", depth.encode()


def test_the_tiny_source_is_a_frame_source():
    assert isinstance(TinySource(), FrameSource) and source_symbol(TinySource()) == "BTCUSDT"


def test_live_subscribe_unsubscribe_and_list():
    async def main():
        async with ExchangeServer([TinySource(n=100)], speed=1) as srv:  # noqa: SIM117 - URL from srv
            async with connect(f"{srv.ws_url}/ws") as ws:
                replies = []
                for req in (
                    {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1},
                    {"method": "SUBSCRIBE", "params": ["dogeusdt@trade"], "id": 2},
                    {"method": "LIST_SUBSCRIPTIONS", "id": 3},
                    {"method": "PING", "id": 4},
                    {"method": "SUBSCRIBE", "params": [], "id": -1},
                    {"method": "SUBSCRIBE", "params": [], "id": 5, "x": 1},
                ):
                    await ws.send(orjson.dumps(req).decode())
                    while (msg := orjson.loads(await ws.recv())).get("e") == "trade":
                        pass
                    replies.append(msg)
                await ws.send("not json")
                while (msg := orjson.loads(await ws.recv())).get("e") == "trade":
                    pass
                replies.append(msg)
                trades = [orjson.loads(await ws.recv()) for _ in range(3)]
                await ws.send('{"method":"UNSUBSCRIBE","params":["btcusdt@trade"],"id":6}')
                while (msg := orjson.loads(await ws.recv())).get("e") == "trade":
                    pass
                replies.append(msg)
                with pytest.raises(TimeoutError):  # nothing after the unsubscribe
                    await asyncio.wait_for(ws.recv(), timeout=0.3)
                return replies, trades

    replies, trades = asyncio.run(main())
    assert replies[0] == {"result": None, "id": 1}
    assert replies[1]["code"] == 2 and "dogeusdt@trade" in replies[1]["msg"] and replies[1]["id"] == 2
    assert replies[2] == {"result": ["btcusdt@trade"], "id": 3}
    assert replies[3] == {"code": 2, "msg": "Invalid request: unknown variable", "id": 4}
    assert replies[4]["code"] == 2 and "unsigned integer" in replies[4]["msg"]
    assert replies[5] == {"code": 0, "msg": "Unknown property", "id": 5}
    assert replies[6]["code"] == 3
    assert replies[7] == {"result": None, "id": 6}
    assert [t["e"] for t in trades] == ["trade"] * 3
    assert [t["t"] for t in trades] == list(range(trades[0]["t"], trades[0]["t"] + 3))  # contiguous, raw


async def _raw_handshake(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client by hand, so that it can ignore pings (a real client library always answers)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    status = await reader.readuntil(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 101"), status
    return reader, writer


async def _read_frames(reader: asyncio.StreamReader) -> list[int]:
    """Opcodes of the server's frames until it closes the TCP connection."""
    opcodes = []
    while True:
        try:
            head = await reader.readexactly(2)
        except asyncio.IncompleteReadError:
            return opcodes
        n = head[1] & 0x7F
        if n == 126:
            n = int.from_bytes(await reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await reader.readexactly(8), "big")
        await reader.readexactly(n)
        opcodes.append(head[0] & 0x0F)


def test_a_client_that_never_pongs_is_dropped_and_one_that_does_stays():
    async def main():
        source = TinySource(n=10, step_ms=1)  # sends its frames at once, then only pings flow
        async with ExchangeServer([source], speed=1, ping_interval=0.2, ping_timeout=0.3) as srv:  # noqa: SIM117
            async with connect(f"{srv.ws_url}/ws/btcusdt@trade") as good:
                reader, writer = await _raw_handshake(srv.port, "/ws/btcusdt@trade")
                opcodes = await asyncio.wait_for(_read_frames(reader), timeout=10)
                writer.close()
                await asyncio.sleep(0.6)  # three more ping rounds for the good client
                await good.ping()
                return opcodes, len(srv.clients), good.state.name

    opcodes, clients_left, good_state = asyncio.run(main())
    assert 0x9 in opcodes  # pinged
    assert opcodes[-1] == 0x8  # then closed (1011 keepalive ping timeout), never answered
    assert clients_left == 1 and good_state == "OPEN"


def test_scheduled_drops_land_at_the_same_market_time():
    async def main(mode):
        srv_kw = {"speed": 1, "drop_at_s": [0.3], "drop_mode": mode}
        async with ExchangeServer([TinySource(n=50)], **srv_kw) as srv:  # noqa: SIM117 - URL from srv
            async with connect(f"{srv.ws_url}/ws/btcusdt@depth@100ms") as ws:
                got = []
                with pytest.raises(ConnectionClosed) as exc:
                    while True:
                        got.append(orjson.loads(await ws.recv())["u"])
                return got, exc.value, srv.drops

    for mode, closed in (("abort", ConnectionClosedError), ("close", ConnectionClosedOK)):
        got, exc, drops = asyncio.run(main(mode))
        assert isinstance(exc, closed)
        # frame i is sent at 20 ms * i: the fault lands before frame 15 (0.30 s) in both modes
        assert got == list(range(101, 116)) and drops == [(0.3, 1)]
        if mode == "close":
            assert exc.rcvd.code == 1001


def test_close_clients_on_demand():
    async def main():
        async with ExchangeServer([TinySource(n=500)], speed=1) as srv:  # noqa: SIM117
            async with connect(f"{srv.ws_url}/stream?streams=btcusdt@trade") as ws:
                first = orjson.loads(await ws.recv())
                n = await srv.close_clients(1012, "service restart")
                with pytest.raises(ConnectionClosed) as exc:  # 1012 is not a "normal" closure code
                    while True:
                        await ws.recv()
                return first, n, exc.value.rcvd

    first, n, rcvd = asyncio.run(main())
    assert first["stream"] == "btcusdt@trade" and first["data"]["t"] == 0
    assert n == 1 and (rcvd.code, rcvd.reason) == (1012, "service restart")


def test_exchange_serve_cli_replays_a_window_to_a_client():
    """`rlx-pipeline exchange serve` as a process: the printed URL streams the simulated window, then it exits."""
    import subprocess
    import sys

    from websockets.sync.client import connect as sync_connect

    cli = "from rlx_pipeline.cli import main; main()"
    cmd = [sys.executable, "-c", cli, "exchange", "serve", "--symbols", "ETH-USDT"]
    cmd += ["--minutes", "0.1", "--speed", "20", "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().split("streams: ", 1)[1].strip()
        assert "ethusdt@depth@100ms" in url and "btcusdt" not in url
        rest = proc.stdout.readline()
        assert "/api/v3/depth?symbol=ETHUSDT" in rest
        streams = []
        with sync_connect(url) as ws:
            while True:
                try:
                    streams.append(orjson.loads(ws.recv(timeout=3))["stream"])
                except (TimeoutError, ConnectionClosed):  # the window replayed: the server exits
                    break
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert f"replayed {len(streams):,} frames" in out
    assert {"ethusdt@trade", "ethusdt@depth@100ms", "ethusdt@bookTicker"} <= set(streams)
