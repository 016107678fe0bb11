"""The live capture service: one venue's combined streams -> native capture files, every frame kept verbatim.

The venue (``rlx_pipeline.venues``: Binance spot, Binance USD-M) gives the endpoints, the REST depth path, the
default streams, the connection limits and the depth sync rules; the files it writes name it.

- Combined-stream connections (``<ws_url>/stream?streams=...``), as many as Binance's limits need: at most
  ``max_streams_per_connection`` (1024) streams each, a symbol's streams kept on one connection where they fit.
  Each connection reconnects and hands over on its own; all write into the same file. Streams are given in the URL,
  so no SUBSCRIBE message is ever sent (Binance allows 5 incoming messages/s per connection); connection attempts
  are throttled to Binance's 300 per 5 min per IP.
- Each frame's ``data`` bytes are sliced out of the raw frame (never re-serialised) and written with the local
  receive time; only depth frames are looked into, and only for their update ids.
- Depth continuity is tracked per symbol with the venue's rules (spot ``U == prev_u + 1``; USD-M the ``pu`` chain,
  ``pu == prev_u`` on every diff).
  A gap, a reconnect or a UTC midnight triggers a REST snapshot (fetched in a thread while frames keep flowing),
  written as ``<symbol>@depthSnapshot``; every decision is recorded as an ``rlx@event`` line.
- Reconnects with exponential backoff + jitter; before the 24 h connection limit a new connection is opened
  before the old one is closed (both are written during the overlap: no dedupe here, keep what was received).
  The overlap opens with a ``reconnect`` event naming the ``previous`` connection and ends with ``handover_end``
  once everything the old connection received is written (golden drops the overlap's duplicates).
- Files rotate hourly (capture clock), are flushed + fsynced as small zstd frames at least every second, and a
  finished file is renamed from ``.partial`` into place with its ``.index.json``. On start, the ``.partial`` files
  a killed run left under ``out_dir`` (no live writer holds them) are finalised first (``finalize_partial``:
  incomplete last frame cut, index written, renamed), and each is recorded as a ``recovered`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import random
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from websockets.asyncio.client import ClientConnection, connect

from rlx_pipeline import venues
from rlx_pipeline.formats.capture_file import (
    EVENT_STREAM,
    SNAPSHOT_SUFFIX,
    CaptureWriter,
    event_data,
    finalize_partial,
    load_index_kernel,
)

log = logging.getLogger(__name__)

HANDOVER_BEFORE_S = 1800  # open the next connection this long before the venue drops the current one
RAW_STREAM = "rlx@raw"  # a frame that is not a combined-stream frame, kept whole


@dataclass
class CaptureConfig:
    """What to capture; every field left ``None`` takes the venue's value (endpoints, streams, limits)."""

    symbols: list[str]  # Binance symbols, any case (``btcusdt``)
    out_dir: Path
    venue: venues.Venue = venues.SPOT
    ws_url: str | None = None
    rest_url: str | None = None
    streams: tuple[str, ...] | None = None
    duration_s: float | None = None
    session: str | None = None
    snapshot_limit: int | None = None
    max_connection_s: float | None = None  # default: hand over 30 min before the venue drops the connection
    max_streams_per_connection: int | None = None
    # Connection attempts allowed per connect_window_s, all connections together.
    max_connects: int | None = None
    connect_window_s: float | None = None
    rotate_s: int = 3600  # rotation period on the capture clock (hourly; midnight is always a boundary)
    flush_s: float = 0.5  # max age of unflushed lines (the contract: <= 1 s)
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 30.0
    status_every_s: float = 10.0
    clock_ns: Callable[[], int] = time.time_ns  # the capture clock (tests shift it to reach midnight)

    def __post_init__(self) -> None:
        v = self.venue
        self.symbols = [s.lower().replace("-", "") for s in self.symbols]
        self.out_dir = Path(self.out_dir)
        self.ws_url = self.ws_url or v.ws_url
        self.rest_url = self.rest_url or v.rest_url
        self.streams = tuple(self.streams or v.default_streams)
        self.snapshot_limit = self.snapshot_limit or v.snapshot_limit
        if self.max_connection_s is None:
            self.max_connection_s = v.max_connection_s - HANDOVER_BEFORE_S
        if self.max_streams_per_connection is None:
            self.max_streams_per_connection = v.max_streams_per_connection
        self.max_connects = self.max_connects or v.max_connects
        self.connect_window_s = self.connect_window_s or v.connect_window_s
        bad = [s for s in self.streams if s.startswith("depth") and s not in v.depth_streams]
        if bad:
            raise ValueError(
                f"{v.name} serves no depth stream {bad}: expected one of {list(v.depth_streams)}"
            )
        if self.max_streams_per_connection < 1:
            raise ValueError("max_streams_per_connection must be >= 1")

    @property
    def stream_names(self) -> list[str]:
        return [f"{s}@{st}" for s in self.symbols for st in self.streams]

    def connection_groups(self) -> list[list[str]]:
        """The streams of each combined-stream connection (see ``group_streams``)."""
        return group_streams(self.symbols, self.streams, self.max_streams_per_connection)

    def url_for(self, streams: list[str]) -> str:
        base = self.ws_url.rstrip("/")
        if "?" in base:
            base = base.split("?", 1)[0]
        if not base.endswith("/stream"):
            base += "/stream"
        return f"{base}?streams={'/'.join(streams)}"

    @property
    def urls(self) -> list[str]:
        return [self.url_for(g) for g in self.connection_groups()]


def group_streams(symbols: list[str], kinds: tuple[str, ...], limit: int) -> list[list[str]]:
    """Pack ``<symbol>@<kind>`` streams into connections of at most ``limit`` streams, in order.

    A symbol whose streams fit in one connection never straddles two (its depth, trades and tickers then share one
    link's fate); a symbol with more streams than ``limit`` is split in order, filling connections to the brim.
    """
    groups: list[list[str]] = []
    cur: list[str] = []
    for sym in symbols:
        names = [f"{sym}@{k}" for k in kinds]
        if cur and len(names) <= limit < len(cur) + len(names):
            groups.append(cur)
            cur = []
        for name in names:
            if len(cur) == limit:
                groups.append(cur)
                cur = []
            cur.append(name)
    if cur:
        groups.append(cur)
    return groups


def split_combined(frame: bytes) -> tuple[str, bytes, dict | None]:
    """``{"stream":..,"data":{..}}`` -> (stream, data bytes verbatim, parsed data). Other frames: RAW_STREAM, whole."""
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return RAW_STREAM, orjson.dumps({"text": frame.decode("utf-8", "replace")}), None
    if isinstance(obj, dict) and isinstance(obj.get("stream"), str) and "data" in obj:
        stream = obj["stream"]
        head = b'{"stream":' + orjson.dumps(stream) + b',"data":'
        body = frame.rstrip()
        if body.startswith(head) and body.endswith(b"}"):
            data = body[len(head) : -1]
            return stream, data, obj["data"] if isinstance(obj["data"], dict) else None
    # Unknown layout: keep the whole frame (valid JSON) rather than re-serialise a part of it.
    return RAW_STREAM, frame.strip(), obj if isinstance(obj, dict) else None


def _int_after(data: bytes, key: bytes, end: int) -> int | None:
    """The integer value of ``key`` (e.g. ``b'"u":'``) at the top level of ``data[:end]``, else None."""
    i = data.find(key, 1, end)
    if i < 0 or data[i - 1] not in b"{,":  # a key follows ``{`` or ``,``; anything else is inside a string
        return None
    j = i + len(key)
    k = j
    while k < end and data[k] not in b",}":
        k += 1
    try:
        return int(data[j:k])
    except ValueError:
        return None


def depth_ids(data: bytes) -> tuple[int, int, int | None] | None:
    """``(U, u, pu)`` of a depth diff's raw bytes without parsing its levels, None if they cannot be found cheaply.

    Binance writes the ids before the ``b``/``a`` arrays, so only the head up to the first ``[`` is searched.
    """
    end = data.find(b"[")
    end = len(data) if end < 0 else end
    first = _int_after(data, b'"U":', end)
    last = _int_after(data, b'"u":', end)
    if first is None or last is None:
        return None
    return first, last, _int_after(data, b'"pu":', end)


@dataclass
class CaptureStats:
    messages: Counter = field(default_factory=Counter)
    gaps: int = 0
    reconnects: int = 0
    resyncs: int = 0
    snapshots: int = 0
    connections: int = 0  # WebSocket connections opened (all links, reconnects and hand-overs included)
    files: list[Path] = field(default_factory=list)
    bytes_written: int = 0
    recovered: list[Path] = field(default_factory=list)  # .partial files of a killed run, finalised on start


@dataclass
class _Link:
    """One combined-stream connection slot: its streams and the state of its current connection."""

    no: int
    streams: list[str]
    url: str
    depth_symbols: list[str]
    handover: asyncio.Event = field(default_factory=asyncio.Event)
    handover_reason: str = "session_limit"

    @property
    def symbols(self) -> list[str]:
        """The symbols with a stream on this link: connection events carry them (``symbol`` stays None)."""
        return list(dict.fromkeys(n.split("@", 1)[0] for n in self.streams))


class _ConnectThrottle:
    """At most ``limit`` connection attempts per ``window_s`` over all links (Binance: 300 per 5 min per IP)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self.attempts: deque[float] = deque()

    def wait_s(self, now: float) -> float:
        while self.attempts and now - self.attempts[0] >= self.window_s:
            self.attempts.popleft()
        return 0.0 if len(self.attempts) < self.limit else self.attempts[0] + self.window_s - now


class CaptureService:
    def __init__(self, config: CaptureConfig) -> None:
        self.cfg = config
        self.session = config.session or time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{os.getpid()}"
        self.stats = CaptureStats()
        self.sync = {s: venues.DepthSync(config.venue.depth_rules) for s in config.symbols}
        self._depth_on = any(st.startswith("depth") for st in config.streams)
        # Stream name bytes -> (name, symbol whose depth sync it feeds or None): the hot path's only lookup.
        self._kinds: dict[bytes, tuple[str, str | None]] = {
            f"{sym}@{st}".encode(): (f"{sym}@{st}", sym if st.startswith("depth") else None)
            for sym in config.symbols
            for st in config.streams
        }
        self._snapshot_tasks: dict[str, asyncio.Task] = {}
        self._stop = asyncio.Event()
        self._throttle = _ConnectThrottle(config.max_connects, config.connect_window_s)
        self._writer: CaptureWriter | None = None
        self._file_period: int | None = None
        self._file_day: str | None = None
        self._part = 0
        self._conn_no = 0
        self._bytes_closed = 0
        load_index_kernel()  # before any message is received

    # --- files ----------------------------------------------------------------------------------
    def _now(self) -> int:
        return self.cfg.clock_ns()

    def _period(self, ns: int) -> int:
        return ns // 1_000_000_000 // self.cfg.rotate_s

    def _open_file(self, ns: int) -> None:
        t = dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC)
        day_dir = self.cfg.out_dir / t.strftime("%Y-%m-%d")
        name = f"{self.cfg.venue.name}-{t:%H}-{self.session}"  # venue first: capture_file.venue_in_name
        path = day_dir / f"{name}.jsonl.zst"
        while path.exists() or Path(f"{path}.partial").exists():  # sub-hour rotation or a reused session
            self._part += 1
            path = day_dir / f"{name}-{self._part}.jsonl.zst"
        self._writer = CaptureWriter(path, venue=self.cfg.venue.name)
        self._file_period = self._period(ns)
        self._file_day = t.strftime("%Y-%m-%d")

    def _close_file(self) -> None:
        if self._writer is not None:
            w, self._writer = self._writer, None
            w.flush()
            self._bytes_closed += w._file.tell()
            self.stats.files.append(w.close())

    def _finalize_previous(self) -> list[tuple[Path, dict]]:
        """Finalise the ``.partial`` files of a killed run (a live writer's are locked and left alone)."""
        done = []
        for partial in sorted(self.cfg.out_dir.rglob("*.jsonl.zst.partial")):
            done_one = finalize_partial(partial)
            if done_one is None:
                continue
            path, index = done_one
            log.warning("finalised %s of a previous run: %d lines -> %s", partial, index["lines"], path)
            self.stats.recovered.append(path)
            done.append(done_one)
        return done

    def write(self, capture_ns: int, stream: str, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(capture_ns, stream, data)
        self.stats.messages[stream] += 1

    def event(self, kind: str, *, at_ns: int | None = None, **fields: object) -> None:
        """Record a capture event, at ``at_ns`` (default: now) on the capture clock."""
        fields.setdefault("session", self.session)
        log.info("capture event %s %s", kind, fields)
        self.write(self._now() if at_ns is None else at_ns, EVENT_STREAM, event_data(kind, **fields))

    def _link_event(self, kind: str, link: _Link, **fields: object) -> None:
        """A connection event: it names the symbols its link carries (golden applies it to those only)."""
        self.event(kind, symbol=None, symbols=link.symbols, link=link.no, **fields)

    def _rotate_if_due(self) -> None:
        now = self._now()
        if self._period(now) == self._file_period:
            return
        old = self._writer.path if self._writer else None
        day = dt.datetime.fromtimestamp(now / 1e9, tz=dt.UTC).strftime("%Y-%m-%d")
        new_day = day != self._file_day
        self.event("rotate", symbol=None, reason="midnight" if new_day else "period")
        self._close_file()
        self._open_file(now)
        self.event("rotate", symbol=None, previous=str(old.name) if old else None, symbols=self.cfg.symbols)
        if new_day and self._depth_on:
            # Each day's file must stand alone: a fresh snapshot seeds its book.
            for sym in self.cfg.symbols:
                self._resync(sym, "midnight")

    async def _ticker(self) -> None:
        last_status = time.monotonic()
        last_counts: Counter = Counter()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.cfg.flush_s / 2)
            self._rotate_if_due()
            w = self._writer
            if (
                w is not None
                and w._buf_first_ns is not None
                and self._now() - w._buf_first_ns >= self.cfg.flush_s * 1e9
            ):
                w.flush()
            if time.monotonic() - last_status >= self.cfg.status_every_s:
                span = time.monotonic() - last_status
                rates = {k: round((v - last_counts[k]) / span, 1) for k, v in self.stats.messages.items()}
                log.info(
                    "capture status: msgs/s %s gaps=%d reconnects=%d bytes=%d",
                    rates,
                    self.stats.gaps,
                    self.stats.reconnects,
                    self.bytes_written,
                )
                last_status, last_counts = time.monotonic(), Counter(self.stats.messages)

    @property
    def bytes_written(self) -> int:
        cur = self._writer._file.tell() if self._writer is not None else 0
        return self._bytes_closed + cur

    # --- depth sync and snapshots ---------------------------------------------------------------
    def _resync(self, symbol: str, reason: str, at_ns: int | None = None) -> None:
        self.sync[symbol].reset()
        self.stats.resyncs += 1
        self.event("resync", at_ns=at_ns, symbol=symbol, reason=reason)
        task = self._snapshot_tasks.get(symbol)
        if task is None or task.done():
            self._snapshot_tasks[symbol] = asyncio.create_task(self._fetch_snapshot(symbol))

    def _fetch_snapshot_sync(self, symbol: str) -> bytes:
        url = self.cfg.venue.depth_url(self.cfg.rest_url, symbol, self.cfg.snapshot_limit)
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - configured http(s) URL
            return resp.read()

    async def _fetch_snapshot(self, symbol: str) -> None:
        delay = self.cfg.backoff_initial_s
        while not self._stop.is_set():
            try:
                body = (await asyncio.to_thread(self._fetch_snapshot_sync, symbol)).strip()
                last_update_id = orjson.loads(body)["lastUpdateId"]
            except Exception as exc:  # noqa: BLE001 - network or body error: retry, recorded
                self.event("snapshot_error", symbol=symbol, error=repr(exc)[:200])
                await asyncio.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, self.cfg.backoff_max_s)
                continue
            if self._writer is None:
                return
            self.write(self._now(), f"{symbol}{SNAPSHOT_SUFFIX}", body)
            self.stats.snapshots += 1
            reason = self.sync[symbol].on_snapshot(int(last_update_id))
            if reason is None:
                return
            # The snapshot is older than the buffered diffs: fetch again (Binance procedure).
            self.sync[symbol].reset()
            self.event("resync", symbol=symbol, reason=f"stale snapshot: {reason}")
            await asyncio.sleep(0.05)

    # --- frames ---------------------------------------------------------------------------------
    def _on_frame(self, frame: bytes, link: _Link, conn_no: int) -> None:
        capture_ns = self._now()
        # Fast path, Binance's exact layout ``{"stream":"<subscribed name>","data":<data>}``: slice, no JSON parse.
        if frame.startswith(b'{"stream":"'):
            j = frame.find(b'"', 11)
            kind = self._kinds.get(frame[11:j]) if j > 0 else None
            # data must open an object too: the file stays JSON lines without validating every frame in full
            if kind is not None and frame.startswith(b',"data":{', j + 1) and frame.endswith(b"}"):
                stream, depth_symbol = kind
                data = frame[j + 9 : -1]
                if depth_symbol is not None:
                    ids = depth_ids(data)
                    if ids is None:  # unusual layout: parse it (rare); not JSON: kept verbatim, not tracked
                        with contextlib.suppress(orjson.JSONDecodeError):
                            ids = _ids_of(orjson.loads(data))
                    if ids is not None:
                        self._on_depth(depth_symbol, *ids, conn_no, capture_ns)
                self.write(capture_ns, stream, data)
                return
        # Anything else (other layouts, unsubscribed names, serverShutdown, replies): the careful path.
        stream, data, parsed = split_combined(frame)
        if parsed is not None and parsed.get("e") == "depthUpdate":
            sym = stream.split("@", 1)[0]
            ids = _ids_of(parsed)
            if sym in self.sync and ids is not None:
                self._on_depth(sym, *ids, conn_no, capture_ns)
        self.write(capture_ns, stream, data)
        if parsed is not None and parsed.get("e") == "serverShutdown":
            # The server will drop this link soon: hand over to a new connection, keep reading this one meanwhile.
            link.handover_reason = "serverShutdown"
            link.handover.set()

    def _on_depth(
        self, sym: str, first: int, last: int, pu: int | None, conn_no: int, capture_ns: int
    ) -> None:
        """Track a diff before it is written: a break's ``gap`` and ``resync`` events precede the diff that shows
        it (at its receive time), so a reader of the file meets the declaration first."""
        reason = self.sync[sym].on_diff(first, last, pu)
        if reason is not None:
            self.stats.gaps += 1
            log.warning("depth gap %s: %s", sym, reason)
            self.event(
                "gap", at_ns=capture_ns, symbol=sym, reason=reason, U=first, u=last, connection=conn_no
            )
            self._resync(sym, "gap", at_ns=capture_ns)
            self.sync[sym].buffered.append((first, last, pu))

    # --- connections ----------------------------------------------------------------------------
    async def _sleep_unless_stopped(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), max(seconds, 0.0))

    async def _connect(self, link: _Link) -> tuple[ClientConnection, int] | None:
        """A new connection for ``link`` (retried with backoff, throttled); None once the capture stops."""
        loop = asyncio.get_running_loop()
        delay = self.cfg.backoff_initial_s
        while not self._stop.is_set():
            wait = self._throttle.wait_s(loop.time())
            if wait > 0:
                self._link_event(
                    "connect_throttled",
                    link,
                    wait_s=round(wait, 3),
                )
                await self._sleep_unless_stopped(wait)
                continue
            self._throttle.attempts.append(loop.time())
            try:
                ws = await connect(link.url, max_size=None, open_timeout=10)
            except Exception as exc:  # noqa: BLE001 - retry any connect failure
                self._link_event("connect_error", link, error=repr(exc)[:200])
                await self._sleep_unless_stopped(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.cfg.backoff_max_s)
                continue
            self._conn_no += 1
            self.stats.connections += 1
            return ws, self._conn_no
        return None

    async def _read(self, ws: ClientConnection, link: _Link, conn_no: int) -> str:
        on_frame = self._on_frame
        try:
            while True:
                on_frame(await ws.recv(decode=False), link, conn_no)
        except ConnectionResetError as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - closed or failed: the caller reconnects
            return repr(exc)[:200]

    async def _run_link(self, link: _Link) -> None:
        """Keep one combined-stream connection up: reconnect with backoff, hand over before the session limit."""
        loop = asyncio.get_running_loop()
        ws: ClientConnection | None = None
        reader: asyncio.Task | None = None
        stopper = asyncio.create_task(self._stop.wait())
        first = True
        opened = loop.time()
        try:
            while not self._stop.is_set():
                if ws is None:
                    got = await self._connect(link)
                    if got is None:
                        break
                    ws, conn_no = got
                    reader = asyncio.create_task(self._read(ws, link, conn_no))
                    opened = loop.time()
                    if first:
                        self._link_event(
                            "connect",
                            link,
                            connection=conn_no,
                            streams=len(link.streams),
                        )
                    else:
                        self.stats.reconnects += 1
                        self._link_event(
                            "reconnect",
                            link,
                            connection=conn_no,
                            reason="disconnect",
                        )
                    for sym in link.depth_symbols:
                        self._resync(sym, "session_start" if first else "reconnect")
                    first = False
                handover = asyncio.create_task(link.handover.wait())
                done, _ = await asyncio.wait(
                    {reader, stopper, handover},
                    timeout=max(opened + self.cfg.max_connection_s - loop.time(), 0),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                handover.cancel()
                if stopper in done:
                    break
                if reader in done:
                    self._link_event(
                        "disconnect",
                        link,
                        connection=conn_no,
                        reason=reader.result(),
                    )
                    ws = None
                    await self._sleep_unless_stopped(self.cfg.backoff_initial_s * random.random())  # no herd
                    continue
                reason, link.handover_reason = link.handover_reason, "session_limit"
                link.handover.clear()
                # Session limit or serverShutdown: open the new connection before closing the old one (overlap,
                # keep both).
                got = await self._connect(link)
                if got is None:
                    break
                old_ws, old_reader, old_no = ws, reader, conn_no
                ws, conn_no = got
                reader = asyncio.create_task(self._read(ws, link, conn_no))
                opened = loop.time()
                self.stats.reconnects += 1
                self._link_event(
                    "reconnect",
                    link,
                    connection=conn_no,
                    reason=reason,
                    previous=old_no,
                )
                await self._sleep_unless_stopped(min(1.0, self.cfg.max_connection_s / 4))
                await old_ws.close()
                await old_reader
                # Everything the old connection received is written: golden ends the overlap here.
                self._link_event("handover_end", link, connection=old_no, next=conn_no)
        finally:
            stopper.cancel()
            if ws is not None:
                await ws.close()
            if reader is not None:
                await reader

    async def run(self) -> CaptureStats:
        loop = asyncio.get_running_loop()
        groups = self.cfg.connection_groups()
        depth_kinds = [st for st in self.cfg.streams if st.startswith("depth")]
        links = [
            _Link(
                no=i,
                streams=g,
                url=self.cfg.url_for(g),
                # a symbol resyncs when the link carrying its (first) depth stream reconnects
                depth_symbols=[
                    n.split("@", 1)[0] for n in g if depth_kinds and n.endswith(f"@{depth_kinds[0]}")
                ],
            )
            for i, g in enumerate(groups)
        ]
        recovered = self._finalize_previous()
        self._open_file(self._now())
        self.event(
            "session_start",
            symbol=None,
            venue=self.cfg.venue.name,
            symbols=self.cfg.symbols,
            streams=self.cfg.stream_names,
            connections=[len(g) for g in groups],
            max_streams_per_connection=self.cfg.max_streams_per_connection,
        )
        for path, index in recovered:
            self.event("recovered", symbol=None, file=str(path), lines=index["lines"], **index["recovered"])
        ticker = asyncio.create_task(self._ticker())
        link_tasks = [asyncio.create_task(self._run_link(link)) for link in links]
        wait_for = [*link_tasks, asyncio.create_task(self._stop.wait())]
        deadline = None if self.cfg.duration_s is None else loop.time() + self.cfg.duration_s
        try:
            while not self._stop.is_set():
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    break
                done, _ = await asyncio.wait(wait_for, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                for t in done & set(link_tasks):
                    t.result()  # a link only ends on stop: anything else is a bug, raise it
                wait_for = [t for t in wait_for if t not in done]
        finally:
            self._stop.set()
            await asyncio.gather(*link_tasks, return_exceptions=True)
            for t in self._snapshot_tasks.values():
                t.cancel()
            await asyncio.gather(*self._snapshot_tasks.values(), ticker, *wait_for, return_exceptions=True)
            self.event("session_end", symbol=None, gaps=self.stats.gaps, reconnects=self.stats.reconnects)
            self._close_file()
        return self.stats

    def stop(self) -> None:
        self._stop.set()


def _ids_of(parsed: object) -> tuple[int, int, int | None] | None:
    if not isinstance(parsed, dict):
        return None
    try:
        pu = parsed.get("pu")
        return int(parsed["U"]), int(parsed["u"]), None if pu is None else int(pu)
    except (KeyError, TypeError, ValueError):
        return None


def run_capture(config: CaptureConfig, *, handle_signals: bool = True) -> CaptureStats:
    """Run until ``duration_s`` or SIGTERM/SIGINT, closing the file cleanly."""

    async def main() -> CaptureStats:
        svc = CaptureService(config)
        if handle_signals:
            import signal

            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, svc.stop)
        return await svc.run()

    try:
        # uvloop (installed with uvicorn[standard], which dagster-webserver requires) moves the socket reads into C:
        # the per-frame loop overhead of the capture's event loop roughly halves. Plain asyncio otherwise.
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())
