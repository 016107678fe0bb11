"""Capture throughput: a local WebSocket server offers frames at fixed rates to `rlx-pipeline capture run` (a separate
process, stopped with SIGTERM); reports the rate offered, the rate held (frames written within 1 s of their send
time), loss (frames sent but not in the file) and the capture's CPU per 1,000 messages.

    /tmp/venv/bin/python benchmarks/bench_capture.py [--rates 10000,20000,30000] [--seconds 5] [--levels 1]
        [--symbols 1] [--streams-per-connection 1024] [--pythonpath DIR] [--index-only]

The sender is built so that the figure is the capture's, not the peer's: it runs in its own process, pre-renders
every frame (Binance combined-stream layout, continuous depth ids, unique trade ids) and pre-serialises each one
as an RFC 6455 text frame (unmasked, as a server sends it), then writes each 2 ms batch to the socket with one
``transport.write``. The capture's client still receives them through the real websockets stack. The REST depth
endpoint answers with the ``lastUpdateId`` of the last depth frame sent, so the capture must run without gaps.

CPU: ``steady`` is the capture process's user+system time (from /proc) between the first frame offered and
the end of the send window, per 1,000 frames offered; ``process`` is the whole process (startup included), as the
first version of this benchmark reported it. ``--pythonpath`` runs another checkout's capture (the "before").
First it prints the capture index's CPU per line against the raw write in this process (``--index-only``: only
that).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
from http import HTTPStatus
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rlx_pipeline.formats.capture_file import EVENT_STREAM, CaptureIndex, CaptureWriter, iter_capture_lines  # noqa: E402

TICK_S = 0.002
E0_MS = 1_723_161_600_000


def render(n: int, rate: float, symbols: list[str], levels: int) -> tuple[list[bytes], list[str], list[int]]:
    """``n`` combined-stream frames (trade, depth@100ms, bookTicker in turn, symbols round-robin), their stream
    names, and the depth ``u`` in effect after each frame (for the REST snapshot)."""
    frames, streams, u_after = [], [], []
    u = {s: 1000 for s in symbols}
    lv = b",".join(b'["%d.%02d000000","1.50000000"]' % (60000 + k, k) for k in range(levels))
    for i in range(n):
        sym = symbols[i % len(symbols)]
        up = sym.upper().encode()
        e = E0_MS + int(i * 1000 / rate)
        k = (i // len(symbols)) % 3
        if k == 0:
            first, u[sym] = u[sym] + 1, u[sym] + 2
            data = b'{"e":"depthUpdate","E":%d,"s":"%s","U":%d,"u":%d,"b":[%s],"a":[%s]}' % (
                e,
                up,
                first,
                u[sym],
                lv,
                lv,
            )
            stream = f"{sym}@depth@100ms"
        elif k == 1:
            data = (
                b'{"e":"trade","E":%d,"s":"%s","t":%d,"p":"60000.1","q":"0.001","T":%d,"m":true,"M":true}'
                % (
                    e,
                    up,
                    i,
                    e,
                )
            )
            stream = f"{sym}@trade"
        else:
            data = b'{"u":%d,"s":"%s","b":"60000.1","B":"1.0","a":"60000.2","A":"2.50","i":%d}' % (
                u[sym],
                up,
                i,
            )
            stream = f"{sym}@bookTicker"
        frames.append(b'{"stream":"%s","data":%s}' % (stream.encode(), data))
        streams.append(stream)
        u_after.append(u[sym])
    return frames, streams, u_after


def ws_text_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 1 << 16:
        head = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return head + payload


def sender(conn, n: int, rate: float, seconds: float, symbols: list[str], levels: int, expect: int) -> None:
    """The peer process: serve ``expect`` combined-stream connections, then offer frames at ``rate`` for ``seconds``."""
    from urllib.parse import parse_qs, urlsplit

    from websockets.asyncio.server import serve
    from websockets.datastructures import Headers
    from websockets.http11 import Response

    frames, streams, u_after = render(n, rate, symbols, levels)
    wire = [ws_text_frame(f) for f in frames]
    state = {"i": 0}  # frames offered so far
    last_u = {s: 1000 for s in symbols}
    clients: dict = {}
    all_in = asyncio.Event()

    def process_request(connection, request):
        parts = urlsplit(request.path)
        if parts.path == "/api/v3/depth":
            sym = parse_qs(parts.query)["symbol"][0].lower()
            body = (
                b'{"lastUpdateId":%d,"bids":[["60000.00000000","1.0"]],"asks":[["60001.00000000","2.0"]]}'
                % (last_u[sym])
            )
            headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return Response(HTTPStatus.OK, "OK", headers, body)
        return None

    async def handler(ws) -> None:
        clients[ws] = set(parse_qs(urlsplit(ws.request.path).query)["streams"][0].split("/"))
        if len(clients) >= expect:
            all_in.set()
        await ws.wait_closed()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, process_request=process_request, max_queue=None) as server:
            conn.send(server.sockets[0].getsockname()[1])
            await all_in.wait()
            await asyncio.sleep(0.3)  # the capture's REST snapshots are in flight: let them land first
            conn.send(("start", time.time_ns()))
            t0 = time.perf_counter()
            i = 0
            while (now := time.perf_counter() - t0) < seconds:
                j = min(n, int(now * rate))
                if j > i:
                    for ws, subs in clients.items():
                        if not ws.transport.is_closing():
                            ws.transport.write(b"".join([wire[k] for k in range(i, j) if streams[k] in subs]))
                    for k in range(i, j):
                        if streams[k].endswith("@depth@100ms"):
                            last_u[streams[k].split("@", 1)[0]] = u_after[k]
                    i = j
                    state["i"] = i
                await asyncio.sleep(TICK_S)
            conn.send(("done", i, time.perf_counter() - t0))
            # Wait off the loop: the transport must keep draining what the capture has not read yet.
            await asyncio.to_thread(conn.recv)

    asyncio.run(main())


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(
    rate: float, seconds: float, *, symbols: list[str], levels: int, per_conn: int, pythonpath: str | None
) -> dict:
    out = Path(tempfile.mkdtemp(prefix="bench_capture_"))
    n = int(rate * seconds) + 1
    expect = -(-len(symbols) * 3 // per_conn)
    parent, child = mp.get_context("fork").Pipe()
    peer = mp.get_context("fork").Process(
        target=sender, args=(child, n, rate, seconds, symbols, levels, expect), daemon=True
    )
    peer.start()
    port = parent.recv()
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = [sys.executable, "-c", "from rlx_pipeline.cli import main; main()", "capture", "run"]
    cmd += ["--symbols", ",".join(symbols), "--streams", "trade,depth@100ms,bookTicker"]
    cmd += ["--ws-url", f"ws://127.0.0.1:{port}", "--rest-url", f"http://127.0.0.1:{port}", "--out", str(out)]
    if per_conn != 1024:
        cmd += ["--max-streams-per-connection", str(per_conn)]
    # cwd: ``python -c`` puts it first on sys.path, ahead of PYTHONPATH; run another checkout from inside it.
    proc = subprocess.Popen(
        cmd, env=env, cwd=pythonpath or None, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    if not parent.poll(60):
        proc.kill()
        raise RuntimeError("the capture never connected")
    _, t0_ns = parent.recv()
    cpu0 = cpu_s(proc.pid)
    _, sent, send_s = parent.recv()
    cpu1 = cpu_s(proc.pid)
    time.sleep(1.5)  # frames still in socket buffers get their chance; lag shows whether they were late
    proc.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(proc.pid, 0)  # this process's own rusage, startup and shutdown included
    proc.returncode = os.waitstatus_to_exitcode(status)
    parent.send("stop")
    peer.join(10)
    frames, _, _ = render(n, rate, symbols, levels)
    index = {f: i for i, f in enumerate(frames[:sent])}
    seen: dict[int, int] = {}
    dupes = 0
    for f in out.rglob("*.jsonl.zst"):
        for _, ns, s, d in iter_capture_lines(f):
            if s == EVENT_STREAM or s.endswith("@depthSnapshot"):
                continue
            i = index.get(b'{"stream":"%s","data":%s}' % (s.encode(), d))
            if i is not None:
                dupes += i in seen
                seen[i] = ns
    lags = sorted(ns - (t0_ns + int(i / rate * 1e9)) for i, ns in seen.items())
    on_time = sum(1 for x in lags if x <= 1_000_000_000)

    def q(p: float) -> float:
        return round(lags[min(len(lags) - 1, int(p * len(lags)))] / 1e6, 1) if lags else float("nan")

    return {
        "rate_offered": round(sent / send_s),
        "rate_held": round(on_time / send_s),
        "sent": sent,
        "lost": sent - len(seen),
        "dupes": dupes,
        "lag_p50_ms": q(0.5),
        "lag_p99_ms": q(0.99),
        "lag_max_ms": q(1.0),
        "cpu_ms_per_1000_steady": round((cpu1 - cpu0) * 1e6 / max(sent, 1), 2),
        "cpu_ms_per_1000_process": round((usage.ru_utime + usage.ru_stime) * 1e6 / max(sent, 1), 2),
        "exit_code": proc.returncode,
    }


def index_cost(n: int = 300_000, levels: int = 20) -> None:
    """The capture index's cost per line against the raw write (encode, frame, compress) in this process:
    ``CaptureWriter.write`` with its per-frame index, without it, and the per-line ``CaptureIndex.add``."""
    frames, streams, _ = render(n, 10_000.0, ["btcusdt"], levels)
    lines = [
        (E0_MS * 1_000_000 + i * 100_000, s, f[len(s) + 20 : -1])
        for i, (f, s) in enumerate(zip(frames, streams, strict=True))
    ]

    def write(indexed: bool) -> float:
        with tempfile.TemporaryDirectory() as d:
            w = CaptureWriter(Path(d) / "x.jsonl.zst", fsync=False)
            if not indexed:
                w.index.add_frame = lambda *a: None  # the raw write alone
            t0 = time.process_time()
            for line in lines:
                w.write(*line)
            w.flush()
            dt = time.process_time() - t0
            w.close()
        return dt * 1e6 / n

    write(True)  # numba's cached kernel loaded
    raw, indexed = min(write(False) for _ in range(3)), min(write(True) for _ in range(3))
    index = CaptureIndex()
    t0 = time.process_time()
    for line in lines:
        index.add(*line)
    per_line = (time.process_time() - t0) * 1e6 / n
    print(
        f"index per line (CPU, {n:,} lines, {levels} levels a side): raw write {raw:.2f} us, with the per-frame "
        f"index {indexed:.2f} us: index {indexed - raw:.2f} us = {(indexed - raw) / raw:.2f}x the raw write; "
        f"per-line CaptureIndex.add {per_line:.2f} us = {per_line / raw:.2f}x"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="10000,20000,30000")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--levels", type=int, default=1, help="price levels per side in each depth diff")
    ap.add_argument("--symbols", type=int, default=1)
    ap.add_argument("--streams-per-connection", type=int, default=1024)
    ap.add_argument("--pythonpath", default=None, help="run the capture from another checkout")
    ap.add_argument(
        "--index-only", action="store_true", help="only the index's per-line cost vs the raw write"
    )
    args = ap.parse_args()
    index_cost()
    if args.index_only:
        return
    symbols = ["btcusdt", "ethusdt", "solusdt", "bnbusdt", "xrpusdt", "dogeusdt"][: args.symbols]
    best = 0
    print(
        "| rate offered | rate held | lost | lag p50/p99/max ms | CPU ms/1000 steady | CPU ms/1000 process |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for rate in (float(r) for r in args.rates.split(",")):
        r = run(
            rate,
            args.seconds,
            symbols=symbols,
            levels=args.levels,
            per_conn=args.streams_per_connection,
            pythonpath=args.pythonpath,
        )
        print(
            f"| {r['rate_offered']} | {r['rate_held']} | {r['lost']} (dupes {r['dupes']}) | "
            f"{r['lag_p50_ms']}/{r['lag_p99_ms']}/{r['lag_max_ms']} | {r['cpu_ms_per_1000_steady']} | "
            f"{r['cpu_ms_per_1000_process']} |",
            flush=True,
        )
        if r["lost"] == 0 and r["rate_held"] >= 0.99 * r["rate_offered"]:
            best = max(best, r["rate_held"])
    print(
        f"highest rate held with zero loss: {best} msgs/s ({os.cpu_count()} cores shared by capture and sender)"
    )


if __name__ == "__main__":
    main()
