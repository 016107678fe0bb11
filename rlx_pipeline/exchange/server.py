"""A local exchange speaking Binance's spot market-data protocol, replaying simulated markets.

- WebSocket combined streams at ``/stream?streams=a/b/...`` (frames ``{"stream":..,"data":..}``) and raw streams at
  ``/ws/<stream>``; an unknown stream is refused with Binance's error shape (HTTP 400, ``{"code":..,"msg":..}``).
- REST ``GET /api/v3/depth?symbol=BTCUSDT&limit=N`` on the same port: the book after the last depth message sent
  (``lastUpdateId`` consistent with the stream, as on Binance).
- Keepalive like Binance: a ping every ``ping_interval`` s, a client that does not pong within ``ping_timeout`` s
  is dropped; a connection is closed after ``session_limit_s`` (24 h by default); ``server_shutdown()`` sends
  ``serverShutdown``; ``drop_clients()`` cuts every connection (a fault for tests).
- Replay in real time (``speed=1``) or accelerated; by default it starts when the first client connects, so a
  capture started with the server sees the window from its beginning.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import threading
import time
from collections.abc import Iterable
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from rlx_pipeline import fixed_point


def _response(status: int, body: bytes, reason: str = "OK") -> Response:
    headers = Headers(
        [("Content-Type", "application/json;charset=UTF-8"), ("Content-Length", str(len(body)))]
    )
    return Response(status, reason, headers, body)


class _Book:
    def __init__(self, snapshot: bytes) -> None:
        snap = orjson.loads(snapshot)
        self.last_update_id = int(snap["lastUpdateId"])
        self.bids = {fixed_point.parse(p): q for p, q in snap["bids"]}
        self.asks = {fixed_point.parse(p): q for p, q in snap["asks"]}

    def apply(self, data: bytes) -> None:
        msg = orjson.loads(data)
        for side, key in ((self.bids, "b"), (self.asks, "a")):
            for p, q in msg[key]:
                if fixed_point.parse(q):
                    side[fixed_point.parse(p)] = q
                else:
                    side.pop(fixed_point.parse(p), None)
        self.last_update_id = int(msg["u"])

    def snapshot(self, limit: int) -> bytes:
        bids = heapq.nlargest(limit, self.bids)
        asks = heapq.nsmallest(limit, self.asks)
        return orjson.dumps(
            {
                "lastUpdateId": self.last_update_id,
                "bids": [[fixed_point.format(p), self.bids[p]] for p in bids],
                "asks": [[fixed_point.format(p), self.asks[p]] for p in asks],
            }
        )


class ExchangeServer:
    """``async with ExchangeServer(truths, speed=50) as srv: srv.ws_url, srv.rest_url, await srv.drop_clients()``.

    ``truths``: ``rlx_pipeline.simulator.MarketTruth`` objects (anything with ``config.symbol``,
    ``binance_frames()`` and ``initial_snapshot()``).
    """

    def __init__(
        self,
        truths: Iterable,
        *,
        speed: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        ping_interval: float = 20.0,
        ping_timeout: float = 60.0,
        session_limit_s: float = 24 * 3600,
        start_on_first_client: bool = True,
    ) -> None:
        self.truths = list(truths)
        self.speed = speed
        self.host, self.port = host, port
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.session_limit_s = session_limit_s
        self.start_on_first_client = start_on_first_client
        self.books = {t.config.instrument.binance_symbol: _Book(t.initial_snapshot()) for t in self.truths}
        names = {t.config.instrument.stream_symbol for t in self.truths}
        self.known_streams = {
            f"{n}@{k}" for n in names for k in ("trade", "aggTrade", "depth@100ms", "bookTicker")
        }
        self.clients: dict[ServerConnection, tuple[bool, set[str]]] = {}
        self.frames_sent = 0
        self.done = asyncio.Event()
        self._first_client = asyncio.Event()
        self._server = None
        self._replay: asyncio.Task | None = None

    # --- HTTP: REST depth, handshake checks ---------------------------------------------------------
    def _streams_of(self, path: str) -> tuple[bool, list[str]] | None:
        parts = urlsplit(path)
        if parts.path.rstrip("/") == "/stream":
            raw = parse_qs(parts.query).get("streams", [""])[0]
            return True, [s for s in raw.split("/") if s]
        if parts.path.startswith("/ws/"):
            return False, [s for s in parts.path[4:].split("/") if s]
        return None

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path == "/api/v3/depth":
            q = parse_qs(parts.query)
            symbol = q.get("symbol", [""])[0].upper()
            if symbol not in self.books:
                return _response(400, b'{"code":-1121,"msg":"Invalid symbol."}', "Bad Request")
            limit = min(int(q.get("limit", ["100"])[0]), 5000)
            return _response(200, self.books[symbol].snapshot(limit))
        found = self._streams_of(request.path)
        if found is None:
            return _response(404, b'{"code":-1000,"msg":"Unknown path."}', "Not Found")
        unknown = [s for s in found[1] if s not in self.known_streams]
        if unknown or not found[1]:
            msg = orjson.dumps({"code": -1121, "msg": f"Invalid request: unknown stream(s) {unknown}"})
            return _response(400, msg, "Bad Request")
        return None

    # --- WebSocket sessions ---------------------------------------------------------------------------
    async def _handler(self, ws: ServerConnection) -> None:
        combined, streams = self._streams_of(ws.request.path)
        self.clients[ws] = (combined, set(streams))
        self._first_client.set()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), timeout=self.session_limit_s)
            await ws.close(1000, "session limit")
        finally:
            self.clients.pop(ws, None)

    async def _run_replay(self) -> None:
        if self.start_on_first_client:
            await self._first_client.wait()
        frames = heapq.merge(*(t.binance_frames() for t in self.truths), key=lambda f: f[0])
        t0_wall = time.monotonic()
        t0_market: int | None = None
        for send_ns, stream, data in frames:
            t0_market = send_ns if t0_market is None else t0_market
            delay = (send_ns - t0_market) / 1e9 / self.speed - (time.monotonic() - t0_wall)
            if delay > 0:
                await asyncio.sleep(delay)
            if stream.endswith("@depth@100ms"):
                self.books[stream.split("@", 1)[0].upper()].apply(data)
            text = data.decode()
            combined_msg = f'{{"stream":"{stream}","data":{text}}}'
            combined_to = [ws for ws, (c, s) in self.clients.items() if c and stream in s]
            raw_to = [ws for ws, (c, s) in self.clients.items() if not c and stream in s]
            if combined_to:
                broadcast(combined_to, combined_msg)
            if raw_to:
                broadcast(raw_to, text)
            self.frames_sent += 1
        self.done.set()

    # --- control -------------------------------------------------------------------------------------------
    async def drop_clients(self) -> int:
        """Cut every connection without a close frame (a network failure)."""
        n = len(self.clients)
        for ws in list(self.clients):
            ws.transport.abort()
        return n

    async def server_shutdown(self) -> None:
        broadcast(
            list(self.clients), orjson.dumps({"e": "serverShutdown", "E": int(time.time() * 1000)}).decode()
        )

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> ExchangeServer:
        self._server = await serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._process_request,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            max_queue=None,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        self._replay = asyncio.create_task(self._run_replay())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._replay:
            self._replay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replay
        self._server.close()
        await self._server.wait_closed()


class ExchangeThread:
    """The server on its own event loop in a thread, for synchronous callers (tests, the demo, the CLI)."""

    def __init__(self, truths: Iterable, **kwargs: object) -> None:
        self._args = (list(truths), kwargs)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.server: ExchangeServer | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="rlx-exchange")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            async with ExchangeServer(self._args[0], **self._args[1]) as srv:
                self.server = srv
                self._ready.set()
                await self._stop.wait()

        self._loop.run_until_complete(main())

    def call(self, coro_fn) -> object:
        """Run ``coro_fn(server)`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro_fn(self.server), self._loop).result(timeout=30)

    def wait_done(self, timeout: float | None = None) -> bool:
        async def _wait(srv: ExchangeServer) -> bool:
            await srv.done.wait()
            return True

        return asyncio.run_coroutine_threadsafe(_wait(self.server), self._loop).result(timeout=timeout)

    def __enter__(self) -> ExchangeServer:
        self._thread.start()
        self._ready.wait(timeout=30)
        assert self.server is not None, "the exchange server did not start"
        return self.server

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
