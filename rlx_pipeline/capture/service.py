"""The live capture service: Binance combined streams -> native capture files, every frame kept verbatim.

- One combined-stream connection (``<ws_url>/stream?streams=...``); each frame's ``data`` bytes are sliced out of the
  raw frame (never re-serialised) and written with the local receive time.
- Depth continuity is tracked per symbol with Binance's spot rules (``U == prev_u + 1``; futures ``pu == prev_u``).
  A gap, a reconnect or a UTC midnight triggers a REST snapshot (fetched in a thread while frames keep flowing),
  written as ``<symbol>@depthSnapshot``; every decision is recorded as an ``rlx@event`` line.
- Reconnects with exponential backoff + jitter; before the 24 h connection limit a new connection is opened
  before the old one is closed (both are written during the overlap: no dedupe here, keep what was received).
- Files rotate hourly (capture clock), are flushed + fsynced as small zstd frames at least every second, and a
  finished file is renamed from ``.partial`` into place with its ``.index.json``.
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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from websockets.asyncio.client import ClientConnection, connect

from rlx_pipeline.capture.format import EVENT_STREAM, SNAPSHOT_SUFFIX, CaptureWriter, event_data

log = logging.getLogger(__name__)

DEFAULT_STREAMS = ("trade", "aggTrade", "depth@100ms", "bookTicker")
BINANCE_MAX_CONNECTION_S = 24 * 3600
RAW_STREAM = "rlx@raw"  # a frame that is not a combined-stream frame, kept whole


@dataclass
class CaptureConfig:
    symbols: list[str]  # Binance symbols, any case (``btcusdt``)
    out_dir: Path
    ws_url: str = "wss://stream.binance.com:9443"
    rest_url: str = "https://api.binance.com"
    streams: tuple[str, ...] = DEFAULT_STREAMS
    duration_s: float | None = None
    session: str | None = None
    snapshot_limit: int = 1000
    max_connection_s: float = BINANCE_MAX_CONNECTION_S - 1800  # hand over 30 min before Binance drops us
    rotate_s: int = 3600  # rotation period on the capture clock (hourly; midnight is always a boundary)
    flush_s: float = 0.5  # max age of unflushed lines (the contract: <= 1 s)
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 30.0
    status_every_s: float = 10.0
    clock_ns: Callable[[], int] = time.time_ns  # the capture clock (tests shift it to reach midnight)

    def __post_init__(self) -> None:
        self.symbols = [s.lower().replace("-", "") for s in self.symbols]
        self.out_dir = Path(self.out_dir)

    @property
    def stream_names(self) -> list[str]:
        return [f"{s}@{st}" for s in self.symbols for st in self.streams]

    @property
    def url(self) -> str:
        base = self.ws_url.rstrip("/")
        if "?" in base:
            base = base.split("?", 1)[0]
        if not base.endswith("/stream"):
            base += "/stream"
        return f"{base}?streams={'/'.join(self.stream_names)}"


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


@dataclass
class DepthSync:
    """Binance's local-book sync rules for one symbol, tracking only update ids (the book itself is not kept)."""

    last_update_id: int | None = None  # of the snapshot in effect; None: waiting for a snapshot
    prev_u: int | None = None  # last applied diff; None: first diff after the snapshot not seen yet
    buffered: list[tuple[int, int, int | None]] = field(default_factory=list)  # (U, u, pu) while waiting

    def reset(self) -> None:
        self.last_update_id = None
        self.prev_u = None
        self.buffered.clear()

    def on_diff(self, first: int, last: int, pu: int | None) -> str | None:
        """Returns None when in sync or waiting, else the reason of a gap (the caller resyncs)."""
        if self.last_update_id is None:
            self.buffered.append((first, last, pu))
            return None
        lid = self.last_update_id
        if self.prev_u is None:
            if last <= lid:
                return None  # older than the snapshot
            ok = (first <= lid <= last) if pu is not None else (first <= lid + 1 <= last)
            if not ok:
                return f"snapshot {lid} does not bridge diff U={first} u={last}"
            self.prev_u = last
            return None
        if last <= self.prev_u:
            return None  # already seen (overlapping connections at a hand-over)
        ok = (pu == self.prev_u) if pu is not None else (first == self.prev_u + 1)
        if not ok:
            expected = f"pu={self.prev_u}" if pu is not None else f"U={self.prev_u + 1}"
            got = f"pu={pu}" if pu is not None else f"U={first}"
            return f"expected {expected}, got {got} (u={last})"
        self.prev_u = last
        return None

    def on_snapshot(self, last_update_id: int) -> str | None:
        self.last_update_id = last_update_id
        self.prev_u = None
        pending, self.buffered = self.buffered, []
        for first, last, pu in pending:
            if (reason := self.on_diff(first, last, pu)) is not None:
                return reason
        return None


@dataclass
class CaptureStats:
    messages: Counter = field(default_factory=Counter)
    gaps: int = 0
    reconnects: int = 0
    resyncs: int = 0
    snapshots: int = 0
    files: list[Path] = field(default_factory=list)
    bytes_written: int = 0


class CaptureService:
    def __init__(self, config: CaptureConfig) -> None:
        self.cfg = config
        self.session = config.session or time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{os.getpid()}"
        self.stats = CaptureStats()
        self.sync = {s: DepthSync() for s in config.symbols}
        self._depth_on = any(st.startswith("depth") for st in config.streams)
        self._snapshot_tasks: dict[str, asyncio.Task] = {}
        self._stop = asyncio.Event()
        self._handover = asyncio.Event()
        self._handover_reason = "session_limit"
        self._writer: CaptureWriter | None = None
        self._file_period: int | None = None
        self._file_day: str | None = None
        self._part = 0
        self._conn_no = 0
        self._bytes_closed = 0

    # --- files ----------------------------------------------------------------------------------
    def _now(self) -> int:
        return self.cfg.clock_ns()

    def _period(self, ns: int) -> int:
        return ns // 1_000_000_000 // self.cfg.rotate_s

    def _open_file(self, ns: int) -> None:
        t = dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC)
        day_dir = self.cfg.out_dir / t.strftime("%Y-%m-%d")
        name = f"{t:%H}-{self.session}"
        path = day_dir / f"{name}.jsonl.zst"
        while path.exists() or Path(f"{path}.partial").exists():  # sub-hour rotation or a reused session
            self._part += 1
            path = day_dir / f"{name}-{self._part}.jsonl.zst"
        self._writer = CaptureWriter(path)
        self._file_period = self._period(ns)
        self._file_day = t.strftime("%Y-%m-%d")

    def _close_file(self) -> None:
        if self._writer is not None:
            w, self._writer = self._writer, None
            w.flush()
            self._bytes_closed += w._file.tell()
            self.stats.files.append(w.close())

    def write(self, capture_ns: int, stream: str, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(capture_ns, stream, data)
        self.stats.messages[stream] += 1

    def event(self, kind: str, **fields: object) -> None:
        fields.setdefault("session", self.session)
        log.info("capture event %s %s", kind, fields)
        self.write(self._now(), EVENT_STREAM, event_data(kind, **fields))

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
    def _resync(self, symbol: str, reason: str) -> None:
        self.sync[symbol].reset()
        self.stats.resyncs += 1
        self.event("resync", symbol=symbol, reason=reason)
        task = self._snapshot_tasks.get(symbol)
        if task is None or task.done():
            self._snapshot_tasks[symbol] = asyncio.create_task(self._fetch_snapshot(symbol))

    def _fetch_snapshot_sync(self, symbol: str) -> bytes:
        url = f"{self.cfg.rest_url.rstrip('/')}/api/v3/depth?symbol={symbol.upper()}&limit={self.cfg.snapshot_limit}"
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

    # --- connections ----------------------------------------------------------------------------
    def _on_frame(self, frame: bytes, conn_no: int) -> None:
        capture_ns = self._now()
        stream, data, parsed = split_combined(frame)
        self.write(capture_ns, stream, data)
        if parsed is None:
            return
        if parsed.get("e") == "depthUpdate":
            sym = stream.split("@", 1)[0]
            if sym in self.sync:
                try:
                    first, last, pu = int(parsed["U"]), int(parsed["u"]), parsed.get("pu")
                except (KeyError, TypeError, ValueError):
                    return
                reason = self.sync[sym].on_diff(first, last, None if pu is None else int(pu))
                if reason is not None:
                    self.stats.gaps += 1
                    log.warning("depth gap %s: %s", sym, reason)
                    self.event("gap", symbol=sym, reason=reason, U=first, u=last, connection=conn_no)
                    self._resync(sym, "gap")
                    self.sync[sym].buffered.append((first, last, None if pu is None else int(pu)))
        elif parsed.get("e") == "serverShutdown":
            # The server will drop this link soon: hand over to a new connection, keep reading this one meanwhile.
            self._handover_reason = "serverShutdown"
            self._handover.set()

    async def _connect(self) -> ClientConnection:
        delay = self.cfg.backoff_initial_s
        while True:
            try:
                ws = await connect(self.cfg.url, max_size=None, open_timeout=10)
                self._conn_no += 1
                return ws
            except (OSError, TimeoutError, Exception) as exc:  # noqa: BLE001 - retry any connect failure
                if self._stop.is_set():
                    raise
                self.event("connect_error", symbol=None, error=repr(exc)[:200])
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.cfg.backoff_max_s)

    async def _read(self, ws: ClientConnection, conn_no: int) -> str:
        try:
            while True:
                frame = await ws.recv(decode=False)
                self._on_frame(frame, conn_no)
        except ConnectionResetError as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - closed or failed: the caller reconnects
            return repr(exc)[:200]

    async def run(self) -> CaptureStats:
        loop = asyncio.get_running_loop()
        self._open_file(self._now())
        self.event(
            "session_start",
            symbol=None,
            symbols=self.cfg.symbols,
            streams=self.cfg.stream_names,
            url=self.cfg.url,
        )
        ticker = asyncio.create_task(self._ticker())
        deadline = None if self.cfg.duration_s is None else loop.time() + self.cfg.duration_s
        ws: ClientConnection | None = None
        reader: asyncio.Task | None = None
        stopper = asyncio.create_task(self._stop.wait())
        try:
            while not self._stop.is_set():
                if ws is None:
                    ws = await self._connect()
                    reader = asyncio.create_task(self._read(ws, self._conn_no))
                    if self._conn_no > 1:
                        self.stats.reconnects += 1
                        self.event("reconnect", symbol=None, connection=self._conn_no, reason="disconnect")
                    if self._depth_on:
                        for sym in self.cfg.symbols:
                            self._resync(sym, "session_start" if self._conn_no == 1 else "reconnect")
                    opened = loop.time()
                timeout = opened + self.cfg.max_connection_s - loop.time()
                if deadline is not None:
                    timeout = min(timeout, deadline - loop.time())
                handover = asyncio.create_task(self._handover.wait())
                done, _ = await asyncio.wait(
                    {reader, stopper, handover}, timeout=max(timeout, 0), return_when=asyncio.FIRST_COMPLETED
                )
                handover.cancel()
                if stopper in done:
                    break
                if reader in done:
                    self.event("disconnect", symbol=None, connection=self._conn_no, reason=reader.result())
                    ws = None
                    await asyncio.sleep(self.cfg.backoff_initial_s * random.random())  # jitter: no herd
                    continue
                if deadline is not None and loop.time() >= deadline:
                    break
                reason, self._handover_reason = self._handover_reason, "session_limit"
                self._handover.clear()
                # Session limit or serverShutdown: open the new connection before closing the old one (overlap, keep both).
                old_ws, old_reader, old_no = ws, reader, self._conn_no
                ws = await self._connect()
                reader = asyncio.create_task(self._read(ws, self._conn_no))
                opened = loop.time()
                self.stats.reconnects += 1
                self.event(
                    "reconnect",
                    symbol=None,
                    connection=self._conn_no,
                    reason=reason,
                    previous=old_no,
                )
                await asyncio.sleep(min(1.0, self.cfg.max_connection_s / 4))
                await old_ws.close()
                await old_reader
        finally:
            self._stop.set()
            if ws is not None:
                await ws.close()
            if reader is not None:
                await reader
            for t in self._snapshot_tasks.values():
                t.cancel()
            await asyncio.gather(*self._snapshot_tasks.values(), ticker, stopper, return_exceptions=True)
            self.event("session_end", symbol=None, gaps=self.stats.gaps, reconnects=self.stats.reconnects)
            self._close_file()
        return self.stats

    def stop(self) -> None:
        self._stop.set()


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

    return asyncio.run(main())
