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
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from rlx_pipeline import fixed_point

STREAM_KINDS = ("trade", "aggTrade", "depth@100ms", "bookTicker")


@runtime_checkable
class FrameSource(Protocol):
    """What the server replays: ``rlx_pipeline.simulator.MarketTruth`` is one, a test may write its own.

    The symbol comes from ``source.binance_symbol`` (e.g. ``"BTCUSDT"``) or, for a ``MarketTruth``, from
    ``source.config.instrument.binance_symbol``.
    """

    def binance_frames(self) -> Iterator[tuple[int, str, bytes]]:
        """``(exchange send time ns, stream name, data bytes)`` in send order."""
        ...

    def initial_snapshot(self, limit: int = 1000) -> bytes:
        """The REST depth body of the book before the first depth message."""
        ...


def source_symbol(source: FrameSource) -> str:
    """The upper-case Binance symbol a source replays."""
    symbol = getattr(source, "binance_symbol", None)
    return (symbol or source.config.instrument.binance_symbol).upper()


def _binance_error(code: int, msg: str, request_id: object) -> str:
    return orjson.dumps({"code": code, "msg": msg, "id": request_id}).decode()


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
    """``async with ExchangeServer(sources, speed=50) as srv: srv.ws_url, srv.rest_url, await srv.drop_clients()``.

    ``sources``: ``FrameSource`` objects, one per symbol (e.g. ``rlx_pipeline.simulator.MarketTruth``).
    ``drop_at_s``: market seconds (since the first frame) at which every client is disconnected, the way
    ``drop_mode`` says: ``"abort"`` (no close frame, like a network failure) or ``"close"`` (close code 1001).
    """

    def __init__(
        self,
        truths: Iterable[FrameSource],
        *,
        speed: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        ping_interval: float = 20.0,
        ping_timeout: float = 60.0,
        session_limit_s: float = 24 * 3600,
        start_on_first_client: bool = True,
        drop_at_s: Sequence[float] = (),
        drop_mode: str = "abort",
    ) -> None:
        if drop_mode not in ("abort", "close"):
            raise ValueError(f"drop_mode={drop_mode!r}: expected 'abort' or 'close'")
        self.truths = list(truths)
        self.speed = speed
        self.host, self.port = host, port
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.session_limit_s = session_limit_s
        self.start_on_first_client = start_on_first_client
        self.drop_at_s, self.drop_mode = sorted(drop_at_s), drop_mode
        self.books = {source_symbol(t): _Book(t.initial_snapshot()) for t in self.truths}
        self.known_streams = {f"{sym.lower()}@{k}" for sym in self.books for k in STREAM_KINDS}
        # connection -> (combined framing?, its subscriptions (mutated by SUBSCRIBE/UNSUBSCRIBE))
        self.clients: dict[ServerConnection, tuple[bool, set[str]]] = {}
        self.frames_sent = 0
        self.drops: list[tuple[float, int]] = []  # (market s, clients cut) of each scheduled fault
        self.done = asyncio.Event()
        self._first_client = asyncio.Event()
        self._replay_t0: tuple[float, int] | None = None  # (monotonic s, market ns) of the first frame sent
        self._server = None
        self._replay: asyncio.Task | None = None

    # --- HTTP: REST depth, handshake checks ---------------------------------------------------------
    def _streams_of(self, path: str) -> tuple[bool, list[str]] | None:
        parts = urlsplit(path)
        if parts.path.rstrip("/") == "/stream":
            raw = parse_qs(parts.query).get("streams", [""])[0]
            return True, [s for s in raw.split("/") if s]
        if parts.path.rstrip("/") == "/ws" or parts.path.startswith("/ws/"):
            return False, [s for s in parts.path[4:].split("/") if s]
        return None

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path == "/api/v3/depth":
            q = parse_qs(parts.query)
            symbol = q.get("symbol", [""])[0].upper()
            if symbol not in self.books:
                return _response(400, b'{"code":-1121,"msg":"Invalid symbol."}', "Bad Request")
            try:
                limit = int(q.get("limit", ["100"])[0])
            except ValueError:
                body = b'{"code":-1100,"msg":"Illegal characters found in parameter \'limit\'."}'
                return _response(400, body, "Bad Request")
            return _response(200, self.books[symbol].snapshot(max(1, min(limit, 5000))))
        found = self._streams_of(request.path)
        if found is None:
            return _response(404, b'{"code":-1000,"msg":"Unknown path."}', "Not Found")
        unknown = [s for s in found[1] if s not in self.known_streams]
        if unknown:
            msg = orjson.dumps({"code": -1121, "msg": f"Invalid request: unknown stream(s) {unknown}"})
            return _response(400, msg, "Bad Request")
        return None

    # --- WebSocket sessions ---------------------------------------------------------------------------
    async def _handler(self, ws: ServerConnection) -> None:
        combined, streams = self._streams_of(ws.request.path)
        self.clients[ws] = (combined, set(streams))
        self._first_client.set()
        try:
            async with asyncio.timeout(self.session_limit_s):
                async for message in ws:
                    reply = self._on_request(ws, message)
                    if reply is not None:
                        await ws.send(reply)
        except TimeoutError:
            await ws.close(1000, "session limit")
        except ConnectionClosed:
            pass
        finally:
            self.clients.pop(ws, None)

    def _on_request(self, ws: ServerConnection, message: str | bytes) -> str | None:
        """Binance's live subscription methods; the reply text (None: nothing to send)."""
        try:
            req = orjson.loads(message)
        except orjson.JSONDecodeError:
            return _binance_error(3, "Invalid JSON: expected value at line 1 column 1", None)
        if not isinstance(req, dict):
            return _binance_error(2, "Invalid request: request must be an object", None)
        request_id = req.get("id")
        if request_id is not None and (not isinstance(request_id, int) or request_id < 0):
            return _binance_error(2, "Invalid request: request ID must be an unsigned integer", None)
        unknown_props = sorted(set(req) - {"method", "params", "id"})
        if unknown_props:
            return _binance_error(0, "Unknown property", request_id)
        method, params = req.get("method"), req.get("params", [])
        subscriptions = self.clients[ws][1]
        if method == "LIST_SUBSCRIPTIONS":
            return orjson.dumps({"result": sorted(subscriptions), "id": request_id}).decode()
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE"):
            return _binance_error(2, "Invalid request: unknown variable", request_id)
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return _binance_error(1, "Invalid value type: expected array of strings", request_id)
        if method == "SUBSCRIBE":
            unknown = [p for p in params if p not in self.known_streams]
            if unknown:
                return _binance_error(2, f"Invalid request: unknown stream(s) {unknown}", request_id)
            subscriptions.update(params)
        else:
            subscriptions.difference_update(params)
        return orjson.dumps({"result": None, "id": request_id}).decode()

    def market_clock_ns(self) -> int | None:
        """The replayed market's time now (the first frame's time plus the elapsed time times ``speed``), or
        None before the replay starts: a capture clocked by it records receive times on the market's clock."""
        if self._replay_t0 is None:
            return None
        wall, market = self._replay_t0
        return market + int((time.monotonic() - wall) * self.speed * 1e9)

    async def _run_replay(self) -> None:
        if self.start_on_first_client:
            await self._first_client.wait()
        frames = heapq.merge(*(t.binance_frames() for t in self.truths), key=lambda f: f[0])
        drops = list(self.drop_at_s)
        t0_wall = time.monotonic()
        t0_market: int | None = None
        for send_ns, stream, data in frames:
            if t0_market is None:
                t0_market, self._replay_t0 = send_ns, (t0_wall, send_ns)
            market_s = (send_ns - t0_market) / 1e9
            delay = market_s / self.speed - (time.monotonic() - t0_wall)
            if delay > 0:
                await asyncio.sleep(delay)
            while drops and drops[0] <= market_s:
                self.drops.append((drops.pop(0), len(self.clients)))
                await (self.drop_clients() if self.drop_mode == "abort" else self.close_clients())
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
        """Cut every connection without a close frame (a network failure); the number cut."""
        n = len(self.clients)
        for ws in list(self.clients):
            ws.transport.abort()
        return n

    async def close_clients(self, code: int = 1001, reason: str = "going away") -> int:
        """Close every connection from the server side with a close frame; the number closed."""
        conns = list(self.clients)
        for ws in conns:
            self.clients.pop(ws, None)  # no frame after the close frame
        await asyncio.gather(*(ws.close(code, reason) for ws in conns), return_exceptions=True)
        return len(conns)

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
