"""The capture service against a real local WebSocket + HTTP server (a minimal Binance-protocol peer)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http import HTTPStatus
from pathlib import Path

import pytest
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from rlx_pipeline.capture.service import (
    CaptureConfig,
    CaptureService,
    depth_ids,
    group_streams,
    split_combined,
)
from rlx_pipeline.formats.capture_file import EVENT_STREAM, iter_capture_lines, read_index
from rlx_pipeline.venues import USDM_RULES, DepthSync

pytestmark = pytest.mark.timeout(60)


class MiniExchange:
    """Streams depth diffs (continuous U/u), trades and bookTickers for one symbol to every client, and answers
    ``/api/v3/depth`` with the current ``lastUpdateId``. Records every frame sent per connection."""

    def __init__(
        self,
        symbol: str = "btcusdt",
        rate_hz: float = 200.0,
        replay: list[bytes] | None = None,
        snapshot: bytes | None = None,
    ) -> None:
        self.symbol = symbol
        self.replay = replay  # real frames to send once, in order, instead of generated ones
        self.snapshot = snapshot
        self.rate_hz = rate_hz
        self.batch = max(
            1, int(rate_hz // 500)
        )  # frames per tick: high rates do not hinge on sleep granularity
        self.u = 1000
        self.trade_id = 1
        self.sent: list[list[bytes]] = []  # per connection, the frames sent
        self.skip_next_depth = False
        self._clients: dict = {}
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _next_frame(self) -> bytes:
        s, e = self.symbol, int(time.time() * 1000)
        self.trade_id += 1
        k = self.trade_id % 3
        if k == 0:
            first = self.u + 1
            self.u += 2
            if self.skip_next_depth:  # an update lost by the exchange: the next one does not continue
                self.skip_next_depth = False
                first = self.u + 1
                self.u += 2
            # unusual spacing and key order: must survive byte for byte
            data = (
                b'{"e":"depthUpdate","E":%d,"s":"%s","U":%d,"u":%d,"b":[["100.10000000","1.50000000"]],"a":[]}'
                % (e, s.upper().encode(), first, self.u)
            )
            stream = f"{s}@depth@100ms"
        elif k == 1:
            data = (
                b'{"e":"trade","E":%d,"s":"%s","t":%d,"p":"100.1","q":"0.001","T":%d,"m":true,"M":true}'
                % (
                    e,
                    s.upper().encode(),
                    self.trade_id,
                    e,
                )
            )
            stream = f"{s}@trade"
        else:
            data = b'{"u":%d,"s":"%s","b":"100.1","B":"1.0","a":"100.2","A":"2.50"}' % (
                self.u,
                s.upper().encode(),
            )
            stream = f"{s}@bookTicker"
        return b'{"stream":"%s","data":%s}' % (stream.encode(), data)

    async def _handler(self, ws) -> None:
        # Like the exchange: every client gets the same broadcast from the moment it joined.
        self._clients[ws] = []
        self.sent.append(self._clients[ws])
        try:
            await ws.wait_closed()
        finally:
            self._clients.pop(ws, None)

    async def _produce(self) -> None:
        frames = iter(self.replay) if self.replay is not None else None
        while True:
            if frames is not None:
                if not self._clients:
                    await asyncio.sleep(0.01)
                    continue
                frame = next(frames, None)
                if frame is None:
                    return
            else:
                frame = self._next_frame()
            for ws, sent in list(self._clients.items()):
                try:
                    await ws.send(frame, text=True)
                    sent.append(frame)
                except Exception:  # noqa: BLE001 - client gone
                    self._clients.pop(ws, None)
            self._tick = getattr(self, "_tick", 0) + 1
            if self._tick % self.batch == 0:
                await asyncio.sleep(self.batch / self.rate_hz)

    def _process_request(self, connection, request):
        if request.path.startswith("/api/v3/depth"):
            body = self.snapshot or (
                b'{"lastUpdateId":%d,"bids":[["100.10000000","1.00000000"]],"asks":[["100.20000000","2.0"]]}'
                % self.u
            )
            headers = Headers(
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("Connection", "close"),
                ]
            )
            return Response(HTTPStatus.OK, "OK", headers, body)
        return None

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self._handler, "127.0.0.1", 0, process_request=self._process_request) as server:
            self.port = server.sockets[0].getsockname()[1]
            producer = asyncio.create_task(self._produce())
            self._ready.set()
            await self._stop.wait()
            producer.cancel()

    def __enter__(self) -> MiniExchange:
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def broadcast(self, frame: bytes) -> None:
        async def send() -> None:
            for ws in list(self._clients):
                await ws.send(frame, text=True)

        asyncio.run_coroutine_threadsafe(send(), self._loop).result(5)

    def drop_clients(self) -> None:
        async def drop() -> None:
            for ws in list(self._clients):
                ws.transport.abort()  # an abrupt TCP drop, no close handshake

        asyncio.run_coroutine_threadsafe(drop(), self._loop).result(5)


def _cfg(tmp_path: Path, ex: MiniExchange, **kw) -> CaptureConfig:
    kw.setdefault("streams", ("trade", "depth@100ms", "bookTicker"))
    return CaptureConfig(symbols=["btcusdt"], out_dir=tmp_path, ws_url=ex.ws_url, rest_url=ex.rest_url, **kw)


async def _run_with(svc: CaptureService, seconds: float, action=None, at: float = 0.0) -> None:
    task = asyncio.create_task(svc.run())
    if action is not None:
        await asyncio.sleep(at)
        await asyncio.to_thread(action)
        await asyncio.sleep(seconds - at)
    else:
        await asyncio.sleep(seconds)
    svc.stop()
    await task


def _lines(tmp_path: Path) -> list[tuple[int, int, str, bytes]]:
    out = []
    for f in sorted(tmp_path.rglob("*.jsonl.zst*")):
        if f.name.endswith(".index.json"):
            continue
        out.extend(iter_capture_lines(f))
    return out


def _events(lines) -> list[dict]:
    return [json.loads(d) for _, _, s, d in lines if s == EVENT_STREAM]


def _assert_all_sent_kept(ex: MiniExchange, lines) -> None:
    got = [b'{"stream":"%s","data":%s}' % (s.encode(), d) for _, _, s, d in lines if s != EVENT_STREAM]
    got_set = set(got)
    for conn in ex.sent:
        # every frame but possibly the last one in flight at the stop was written, byte for byte, in order
        missing = [f for f in conn[:-1] if f not in got_set]
        assert not missing, f"{len(missing)} frames lost, first {missing[0][:100]!r}"
        idx = [got.index(f) for f in conn[:-1]]
        assert idx == sorted(idx)


def test_split_combined_keeps_bytes() -> None:
    frame = b'{"stream":"btcusdt@trade","data":{"e":"trade","p":"1.10000000","q":1e-8,"x":{"b":[1,2]}}}'
    stream, data, parsed = split_combined(frame)
    assert stream == "btcusdt@trade"
    assert data == b'{"e":"trade","p":"1.10000000","q":1e-8,"x":{"b":[1,2]}}'
    assert parsed["p"] == "1.10000000"
    assert split_combined(b'{"result":null,"id":1}')[:2] == ("rlx@raw", b'{"result":null,"id":1}')


def test_depth_sync_rules() -> None:
    s = DepthSync()
    assert s.on_diff(101, 105, None) is None  # buffered while waiting for the snapshot
    assert s.on_snapshot(103) is None  # 101 <= 104 <= 105 bridges
    assert s.on_diff(106, 107, None) is None
    assert s.on_diff(106, 107, None) is None  # duplicate from an overlapping connection: ignored
    assert "expected U=108" in s.on_diff(109, 110, None)
    s.reset()
    s.on_diff(200, 210, None)
    assert "does not bridge" in s.on_snapshot(150)  # snapshot older than the buffered diffs
    f = DepthSync(USDM_RULES)
    assert f.on_snapshot(10) is None
    assert f.on_diff(8, 12, 7) is None  # futures: U <= lastUpdateId <= u
    assert f.on_diff(13, 15, 12) is None
    assert "expected pu=15" in f.on_diff(17, 18, 16)
    g = DepthSync(USDM_RULES)  # USD-M drops only u < lastUpdateId: the diff ending at it is the bridging one
    assert g.on_snapshot(10) is None
    assert g.on_diff(9, 10, 8) is None
    assert g.on_diff(11, 15, 10) is None and g.prev_u == 15


def test_clean_capture_keeps_every_frame(tmp_path: Path) -> None:
    with MiniExchange() as ex:
        svc = CaptureService(_cfg(tmp_path, ex))
        asyncio.run(_run_with(svc, 2.0))
    files = list(tmp_path.rglob("*.jsonl.zst"))
    assert len(files) == 1 and not list(tmp_path.rglob("*.partial"))
    lines = _lines(tmp_path)
    _assert_all_sent_kept(ex, lines)
    kinds = [e["type"] for e in _events(lines)]
    assert kinds[0] == "session_start" and kinds[-1] == "session_end" and "resync" in kinds
    assert svc.stats.gaps == 0 and svc.stats.snapshots == 1
    assert sum(1 for _, _, s, _ in lines if s == "btcusdt@depthSnapshot") == 1
    idx = read_index(files[0])
    assert idx["lines"] == len(lines)
    assert idx["symbols"] == ["btcusdt"]
    assert idx["streams"]["btcusdt@trade"] == sum(1 for _, _, s, _ in lines if s == "btcusdt@trade")
    assert len(ex.sent[0]) > 100


def test_drop_reconnects_and_resyncs(tmp_path: Path) -> None:
    with MiniExchange() as ex:
        svc = CaptureService(_cfg(tmp_path, ex))
        asyncio.run(_run_with(svc, 3.0, ex.drop_clients, at=1.2))
    lines = _lines(tmp_path)
    assert len(ex.sent) == 2  # the service came back
    _assert_all_sent_kept(ex, lines)
    ev = _events(lines)
    assert [e["reason"] for e in ev if e["type"] == "reconnect"] == ["disconnect"]
    assert [e["reason"] for e in ev if e["type"] == "resync"] == ["session_start", "reconnect"]
    assert sum(1 for _, _, s, _ in lines if s == "btcusdt@depthSnapshot") == 2
    assert svc.stats.gaps == 0 and svc.stats.reconnects == 1


def test_gap_is_recorded_and_resynced(tmp_path: Path) -> None:
    with MiniExchange() as ex:
        svc = CaptureService(_cfg(tmp_path, ex))

        def inject() -> None:
            ex.skip_next_depth = True

        asyncio.run(_run_with(svc, 2.5, inject, at=1.0))
    lines = _lines(tmp_path)
    _assert_all_sent_kept(ex, lines)
    ev = _events(lines)
    gaps = [e for e in ev if e["type"] == "gap"]
    assert len(gaps) == 1 and gaps[0]["symbol"] == "btcusdt" and "expected U=" in gaps[0]["reason"]
    assert [e["reason"] for e in ev if e["type"] == "resync"] == ["session_start", "gap"]
    # the declaration comes first: gap and resync, then the diff that shows the break (a reader meets them in order)
    at = next(
        i for i, (_, _, st, d) in enumerate(lines) if st == EVENT_STREAM and json.loads(d)["type"] == "gap"
    )
    after = [(st, json.loads(d)) for _, _, st, d in lines[at + 1 : at + 3]]
    assert after[0][1]["type"] == "resync" and after[1][0] == "btcusdt@depth@100ms"
    assert after[1][1]["u"] == gaps[0]["u"] and lines[at][1] == lines[at + 2][1]  # at the diff's receive time
    assert sum(1 for _, _, s, _ in lines if s == "btcusdt@depthSnapshot") == 2
    assert svc.stats.gaps == 1


def test_session_limit_handover_overlaps(tmp_path: Path) -> None:
    with MiniExchange() as ex:
        svc = CaptureService(_cfg(tmp_path, ex, max_connection_s=1.0))
        asyncio.run(_run_with(svc, 2.8))
    lines = _lines(tmp_path)
    assert len(ex.sent) >= 2
    _assert_all_sent_kept(ex, lines)
    ev = _events(lines)
    assert {e["reason"] for e in ev if e["type"] == "reconnect"} == {"session_limit"}
    assert svc.stats.gaps == 0  # overlapping duplicates are kept but are not gaps
    assert sum(1 for _, _, s, _ in lines if s == "btcusdt@depthSnapshot") == 1


def test_rotation_hourly_and_midnight_snapshot(tmp_path: Path) -> None:
    # Shift the capture clock to 1.5 s before a UTC midnight: the file rotates and a fresh snapshot seeds the day.
    now = time.time_ns()
    day_ns = 86_400 * 10**9
    offset = (now // day_ns + 1) * day_ns - now - 1_500_000_000
    with MiniExchange() as ex:
        svc = CaptureService(_cfg(tmp_path, ex, clock_ns=lambda: time.time_ns() + offset))
        asyncio.run(_run_with(svc, 3.0))
    files = sorted(tmp_path.rglob("*.jsonl.zst"))
    assert len(files) == 2 and files[0].parent.name != files[1].parent.name
    assert files[0].name.startswith("binance_spot-23-") and files[1].name.startswith("binance_spot-00-")
    second = list(iter_capture_lines(files[1]))
    assert sum(1 for _, _, s, _ in second if s == "btcusdt@depthSnapshot") == 1
    assert [e["reason"] for e in _events(second) if e["type"] == "resync"] == ["midnight"]
    assert read_index(files[1])["lines"] == len(second)
    _assert_all_sent_kept(ex, _lines(tmp_path))


def test_kill9_keeps_flushed_frames(tmp_path: Path) -> None:
    with MiniExchange() as ex:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from rlx_pipeline.cli import main; main()",
                "capture",
                "run",
                "--symbols",
                "btcusdt",
            ]
            + ["--streams", "trade,depth@100ms", "--ws-url", ex.ws_url, "--rest-url", ex.rest_url]
            + ["--out", str(tmp_path)],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            deadline = time.time() + 20
            while time.time() < deadline and sum(len(c) for c in ex.sent) < 600:
                time.sleep(0.1)
            time.sleep(1.5)
            sent_before = [f for c in ex.sent for f in c]
            time.sleep(1.6)  # everything sent before this point is older than the 1 s flush bound
            assert proc.poll() is None, "the capture process died on its own"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
    partials = list(tmp_path.rglob("*.partial"))
    assert len(partials) == 1 and not list(tmp_path.rglob("*.jsonl.zst"))
    lines = list(iter_capture_lines(partials[0]))
    got = {b'{"stream":"%s","data":%s}' % (s.encode(), d) for _, _, s, d in lines if s != EVENT_STREAM}
    assert len(sent_before) > 500
    assert [f for f in sent_before if f not in got] == []


def test_a_killed_captures_partial_is_finalised_on_restart(tmp_path: Path) -> None:
    """kill -9 leaves a .partial nothing reads; the next capture run finalises it before it begins (incomplete
    last frame cut, index written, renamed) and records it; golden then reads every line it holds."""
    from rlx_pipeline.golden import capture_files_for, partial_files_for

    with MiniExchange() as ex:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from rlx_pipeline.cli import main; main()", "capture", "run"]
            + ["--symbols", "btcusdt", "--streams", "trade,depth@100ms", "--ws-url", ex.ws_url]
            + ["--rest-url", ex.rest_url, "--out", str(tmp_path)],
        )
        try:
            deadline = time.time() + 20
            while time.time() < deadline and sum(len(c) for c in ex.sent) < 400:
                time.sleep(0.1)
            time.sleep(1.6)  # past the 1 s flush bound: frames on disk
            assert proc.poll() is None, "the capture process died on its own"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        (partial,) = list(tmp_path.rglob("*.partial"))
        day = partial.parent.name
        assert partial_files_for(tmp_path, day) == [partial]
        assert capture_files_for(tmp_path, "BTC-USDT", day) == []  # never read as it is
        before = list(iter_capture_lines(partial))
        assert len(before) > 300
        with partial.open("ab") as f:  # the writer died inside a frame: an incomplete one at the end
            f.write(b"\x28\xb5\x2f\xfd\x00\x58\x31")
        svc = CaptureService(_cfg(tmp_path, ex, streams=("trade", "depth@100ms")))
        asyncio.run(_run_with(svc, 1.5))
    finished = Path(str(partial).removesuffix(".partial"))
    assert not list(tmp_path.rglob("*.partial"))
    assert svc.stats.recovered == [finished]
    assert list(iter_capture_lines(finished)) == before  # every line kept, the cut frame gone
    index = read_index(finished)
    assert index["lines"] == len(before)
    assert index["recovered"] == {
        "from": partial.name,
        "tail_bytes_cut": 7,
        "unreadable_regions": [],
        "malformed_lines": 0,
    }
    (event,) = [
        e for f in svc.stats.files for e in _events(list(iter_capture_lines(f))) if e["type"] == "recovered"
    ]
    assert (event["file"], event["lines"], event["tail_bytes_cut"]) == (str(finished), len(before), 7)
    assert finished in capture_files_for(tmp_path, "BTC-USDT", day)


def test_a_live_writers_partial_is_left_alone(tmp_path: Path) -> None:
    from rlx_pipeline.formats.capture_file import CaptureWriter, finalize_partial

    w = CaptureWriter(tmp_path / "a.jsonl.zst", fsync=False)
    w.write(1, "btcusdt@trade", b"{}")
    w.flush()
    assert finalize_partial(w.partial) is None and w.partial.exists()
    w.close()
    assert finalize_partial(w.partial) is None  # renamed by its writer: nothing to do
    assert read_index(tmp_path / "a.jsonl.zst")["lines"] == 1


def test_real_frames_replayed_verbatim_without_gaps(tmp_path: Path, real_samples: Path) -> None:
    """Real Binance ETHUSDT frames (hftbacktest sample) served over a real socket: kept byte for byte, 0 gaps."""
    import gzip

    frames, snapshot = [], None
    with gzip.open(real_samples / "hftbacktest" / "binance_spot_ethusdt_20240808.gz", "rb") as f:
        for line in f:
            body = line.rstrip(b"\r\n").partition(b" ")[2]
            if body.startswith(b'{"lastUpdateId"'):
                snapshot = snapshot or body
            else:
                frames.append(body)
            if len(frames) >= 3000:
                break
    with MiniExchange("ethusdt", rate_hz=3000, replay=frames, snapshot=snapshot) as ex:
        cfg = CaptureConfig(symbols=["ethusdt"], out_dir=tmp_path, ws_url=ex.ws_url, rest_url=ex.rest_url)
        svc = CaptureService(cfg)
        asyncio.run(_run_with(svc, 4.0))
    lines = _lines(tmp_path)
    got = [
        b'{"stream":"%s","data":%s}' % (s.encode(), d)
        for _, _, s, d in lines
        if s.startswith("ethusdt@") and "Snapshot" not in s
    ]
    assert got == frames
    assert svc.stats.gaps == 0 and svc.stats.snapshots == 1
    assert [d for _, _, s, d in lines if s == "ethusdt@depthSnapshot"] == [snapshot]


def test_sigterm_closes_cleanly(tmp_path: Path) -> None:
    with MiniExchange() as ex:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from rlx_pipeline.cli import main; main()", "capture", "run"]
            + ["--symbols", "btcusdt", "--streams", "trade,depth@100ms", "--ws-url", ex.ws_url]
            + ["--rest-url", ex.rest_url, "--out", str(tmp_path)],
        )
        try:
            deadline = time.time() + 20
            while time.time() < deadline and sum(len(c) for c in ex.sent) < 300:
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    (f,) = list(tmp_path.rglob("*.jsonl.zst"))
    assert not list(tmp_path.rglob("*.partial"))
    lines = list(iter_capture_lines(f))
    assert _events(lines)[-1]["type"] == "session_end"
    assert read_index(f)["lines"] == len(lines)
    _assert_all_sent_kept(ex, lines)


def test_server_shutdown_event_reconnects(tmp_path: Path) -> None:
    shutdown = b'{"e":"serverShutdown","E":1723161254000}'
    with MiniExchange() as ex:
        svc = CaptureService(_cfg(tmp_path, ex))
        asyncio.run(_run_with(svc, 2.5, lambda: ex.broadcast(shutdown), at=1.0))
    lines = _lines(tmp_path)
    assert len(ex.sent) == 2
    assert [d for _, _, s, d in lines if s == "rlx@raw"] == [shutdown]  # kept, verbatim
    ev = _events(lines)
    assert [e["reason"] for e in ev if e["type"] == "reconnect"] == [
        "serverShutdown"
    ]  # overlapping hand-over
    assert svc.stats.gaps == 0
    _assert_all_sent_kept(ex, lines)


def test_depth_ids_without_parsing_levels() -> None:
    spot = b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":157,"u":160,"b":[["0.0024","10"]],"a":[]}'
    assert depth_ids(spot) == (157, 160, None)
    fut = b'{"e":"depthUpdate","E":1,"T":1,"s":"BTCUSDT","U":157,"u":160,"pu":149,"b":[],"a":[]}'
    assert depth_ids(fut) == (157, 160, 149)
    assert depth_ids(b'{"u":160,"U":157}') == (157, 160, None)  # key order does not matter
    # ids after the arrays, or a key inside a string: not found cheaply, the caller parses the frame
    assert depth_ids(b'{"e":"depthUpdate","b":[],"U":1,"u":2}') is None
    assert depth_ids(b'{"s":"x\\"U\\":1","u":2,"b":[]}') is None


def test_streams_grouped_per_connection() -> None:
    kinds = ("trade", "aggTrade", "depth@100ms", "bookTicker")
    # 2 symbols x 4 streams, 3 per connection: filled in order, no connection over the limit
    assert group_streams(["btcusdt", "ethusdt"], kinds, 3) == [
        ["btcusdt@trade", "btcusdt@aggTrade", "btcusdt@depth@100ms"],
        ["btcusdt@bookTicker", "ethusdt@trade", "ethusdt@aggTrade"],
        ["ethusdt@depth@100ms", "ethusdt@bookTicker"],
    ]
    # a symbol that fits in one connection never straddles two
    assert group_streams(["a", "b", "c"], kinds[:3], 4) == [
        ["a@trade", "a@aggTrade", "a@depth@100ms"],
        ["b@trade", "b@aggTrade", "b@depth@100ms"],
        ["c@trade", "c@aggTrade", "c@depth@100ms"],
    ]
    many = [f"s{i}usdt" for i in range(600)]
    groups = group_streams(many, kinds, 1024)
    assert [len(g) for g in groups] == [1024, 1024, 352]
    assert sum(groups, []) == [f"{s}@{k}" for s in many for k in kinds]
    cfg = CaptureConfig(symbols=many, out_dir=Path("."), max_streams_per_connection=1024)
    assert all(u.count("@") <= 1024 * 2 for u in cfg.urls) and len(cfg.urls) == 3


def test_streams_split_over_connections_against_the_exchange_server(tmp_path: Path, monkeypatch) -> None:
    """2 symbols x 4 streams, 3 streams per connection, the local exchange over real sockets: several connections,
    none over the limit, every frame the server sent written exactly once, no depth gap."""
    from collections import Counter

    import orjson

    from rlx_pipeline.exchange import ExchangeThread
    from rlx_pipeline.exchange import server as server_mod
    from rlx_pipeline.simulator import SimConfig, simulate

    # Record what the server really sends on each connection (the real broadcast still sends it).
    sent: dict[object, list[bytes]] = {}
    real_broadcast = server_mod.broadcast

    def recording_broadcast(connections, message, *args, **kwargs):
        for ws in connections:
            sent.setdefault(ws, []).append(message.encode() if isinstance(message, str) else message)
        return real_broadcast(connections, message, *args, **kwargs)

    monkeypatch.setattr(server_mod, "broadcast", recording_broadcast)
    truths = [simulate(SimConfig(symbol=s, duration_s=20, seed=3)) for s in ("BTC-USDT", "ETH-USDT")]
    exchange = ExchangeThread(truths, speed=10)
    with exchange as srv:
        cfg = CaptureConfig(
            symbols=["btcusdt", "ethusdt"],
            out_dir=tmp_path,
            ws_url=srv.ws_url,
            rest_url=srv.rest_url,
            max_streams_per_connection=3,
        )
        svc = CaptureService(cfg)

        async def main() -> None:
            task = asyncio.create_task(svc.run())
            assert await asyncio.to_thread(exchange.wait_done, 30)
            await asyncio.sleep(0.5)  # the last frames in flight
            svc.stop()
            await task

        asyncio.run(main())

    paths = [ws.request.path for ws in sent]
    assert len(paths) == 3 and svc.stats.connections == 3 and svc.stats.reconnects == 0
    assert all(len(p.split("streams=", 1)[1].split("/")) <= 3 for p in paths), paths
    assert sorted(s for p in paths for s in p.split("streams=", 1)[1].split("/")) == sorted(cfg.stream_names)
    lines = _lines(tmp_path)
    ev = _events(lines)
    assert len([e for e in ev if e["type"] == "connect"]) == 3
    assert ev[0]["connections"] == [3, 3, 2]
    got = Counter(
        b'{"stream":"%s","data":%s}' % (s.encode(), d)
        for _, _, s, d in lines
        if s != EVENT_STREAM and not s.endswith("@depthSnapshot")
    )
    all_sent = Counter(f for frames in sent.values() for f in frames)
    assert sum(all_sent.values()) > 2000
    assert got == all_sent  # each frame sent is in the file exactly once, nothing else is
    assert svc.stats.gaps == 0 and not [e for e in ev if e["type"] == "gap"]
    # Binance's sync procedure over the file as written, per symbol: each snapshot bridges its diffs, no gap.
    syncs, problems = {"btcusdt": DepthSync(), "ethusdt": DepthSync()}, []
    for _, _, stream, data in lines:
        sym = stream.split("@", 1)[0]
        if stream.endswith("@depthSnapshot"):
            problems.append(syncs[sym].on_snapshot(orjson.loads(data)["lastUpdateId"]))
        elif stream.endswith("@depth@100ms"):
            problems.append(syncs[sym].on_diff(*depth_ids(data)))
    assert [p for p in problems if p is not None] == []
    assert svc.stats.snapshots == 2


def test_connection_attempts_are_throttled(tmp_path: Path) -> None:
    # 3 connections, at most 2 attempts per second: the third waits for the window (Binance: 300 per 5 min per IP).
    with MiniExchange() as ex:
        cfg = _cfg(tmp_path, ex, max_streams_per_connection=1, max_connects=2, connect_window_s=1.0)
        svc = CaptureService(cfg)
        t0 = time.monotonic()
        asyncio.run(_run_with(svc, 1.6))
    assert svc.stats.connections == 3 and len(ex.sent) == 3
    ev = _events(_lines(tmp_path))
    assert [e["link"] for e in ev if e["type"] == "connect_throttled"][:1] == [2]
    assert time.monotonic() - t0 >= 1.0


def test_frames_kept_verbatim_on_both_paths(tmp_path: Path) -> None:
    """The no-parse path (Binance's exact layout) and the careful path (anything else) write the same data bytes;
    frames that are not JSON are kept (wrapped) and do not break the connection."""
    from rlx_pipeline.capture.service import _Link

    svc = CaptureService(
        CaptureConfig(symbols=["btcusdt"], out_dir=tmp_path, streams=("trade", "depth@100ms"))
    )
    svc._open_file(svc._now())
    svc.sync["btcusdt"].on_snapshot(100)
    link = _Link(0, svc.cfg.stream_names, "", ["btcusdt"])
    depth = b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":101,"u":102,"b":[["1.0","2"]],"a":[]}'
    frames = [
        b'{"stream":"btcusdt@depth@100ms","data":%s}' % depth,  # fast path
        b'{"stream": "btcusdt@depth@100ms", "data": %s}\n'
        % depth.replace(b"101", b"103").replace(b"102", b"104"),
        b'{"stream":"btcusdt@depth@100ms","data":not json}',  # kept as text, not tracked
        b'{"stream":"btcusdt@depth@100ms","data":{"U":"x"}}',  # JSON, ids unreadable: kept, not tracked
        b'{"stream":"btcusdt@trade","data":{"e":"trade","t":1}}',
    ]
    for f in frames:
        svc._on_frame(f, link, 1)
    svc._close_file()
    got = [(s, d) for _, _, s, d in _lines(tmp_path) if s != EVENT_STREAM]
    assert got == [
        ("btcusdt@depth@100ms", depth),
        ("rlx@raw", frames[1].strip()),  # not the exact layout: the whole frame, as before
        ("rlx@raw", b'{"text":"{\\"stream\\":\\"btcusdt@depth@100ms\\",\\"data\\":not json}"}'),
        ("btcusdt@depth@100ms", b'{"U":"x"}'),
        ("btcusdt@trade", b'{"e":"trade","t":1}'),
    ]
    assert svc.sync["btcusdt"].prev_u == 102 and svc.stats.gaps == 0
