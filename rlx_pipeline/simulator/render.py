"""Renderings of one simulated ``Market``: Binance frames and REST snapshots, Crypto Lake tables, captures.

All decimal strings are Binance's (8 places); all lake floats are the exact decimals' nearest doubles.
"""

from __future__ import annotations

import contextlib
import heapq
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from rlx_pipeline import fixed_point, venues
from rlx_pipeline.formats.capture_file import (
    EVENT_STREAM,
    SNAPSHOT_SUFFIX,
    CaptureWriter,
    event_data,
    index_path,
)
from rlx_pipeline.formats.lake_tables import RAW_BOOK, RAW_BOOK_DELTA, RAW_TRADES
from rlx_pipeline.layout import symbol_lake_key
from rlx_pipeline.schemas import BOOK_LEVELS
from rlx_pipeline.simulator.market import NS_PER_MS, Market, SimConfig, iter_market
from rlx_pipeline.storage import ParquetBatchWriter, write_table

# Frames sent at the same exchange time go out in this order.
_RANK = {"trade": 0, "aggTrade": 1, "bookTicker": 2, "depth": 3}


def _d(value: int) -> bytes:
    return fixed_point.format(value).encode()


def _levels(levels: list[tuple[int, int]], tick: int, lot: int) -> bytes:
    return b"[" + b",".join(b'["%s","%s"]' % (_d(p * tick), _d(q * lot)) for p, q in levels) + b"]"


def _usdm(m: Market) -> bool:
    """A ``-PERP`` symbol is rendered in Binance USD-M's frames (``E``, ``T``, ``pu``; no public ``trade``)."""
    return venues.for_symbol(m.config.symbol) is venues.USDM


def depth_payload(m: Market, i: int) -> bytes:
    d = m.depth[i]
    sym = m.config.instrument.binance_symbol.encode()
    levels = (_levels(d.bids, m.tick, m.lot), _levels(d.asks, m.tick, m.lot))
    ms = d.event_ns // NS_PER_MS
    if _usdm(m):
        # USD-M: ``pu`` is the previous diff's ``u``. ``U`` is reported from ``pu`` on, so a REST snapshot taken
        # between two diffs (``lastUpdateId`` = the last one's ``u``) is bridged by the next one (``U <= id <= u``),
        # as Binance's snapshot ids fall inside the next diff's range.
        pu = d.U - 1
        return b'{"e":"depthUpdate","E":%d,"T":%d,"s":"%s","U":%d,"u":%d,"pu":%d,"b":%s,"a":%s}' % (
            ms,
            ms,
            sym,
            pu,
            d.u,
            pu,
            *levels,
        )
    return b'{"e":"depthUpdate","E":%d,"s":"%s","U":%d,"u":%d,"b":%s,"a":%s}' % (ms, sym, d.U, d.u, *levels)


def snapshot_payload(
    m: Market, last_update_id: int, bids: dict[int, int], asks: dict[int, int], limit: int
) -> bytes:
    top_b = heapq.nlargest(limit, bids.items())
    top_a = heapq.nsmallest(limit, asks.items())
    return b'{"lastUpdateId":%d,"bids":%s,"asks":%s}' % (
        last_update_id,
        _levels(top_b, m.tick, m.lot),
        _levels(top_a, m.tick, m.lot),
    )


def _aggs(m: Market) -> dict[int, list]:
    """aggTrade: one per (taker order, price): the trades sharing ``agg_id``."""
    aggs: dict[int, list] = {}
    for t in m.trades:
        aggs.setdefault(t.agg_id, []).append(t)
    return aggs


def _agg_trade_rows(m: Market) -> list[tuple[bool, int, int, int, int, int]]:
    """One row per aggTrade: (taker buys, total qty, price, agg id, first trade ns, last event ns), as its frame
    says."""
    return [
        (ts[0].taker_buys, sum(t.qty for t in ts), ts[0].price, agg_id, ts[0].trade_ns, ts[-1].event_ns)
        for agg_id, ts in _aggs(m).items()
    ]


def binance_frames(m: Market) -> Iterator[tuple[int, str, bytes]]:
    """``(send_time_ns, stream, data_bytes)`` in send order, every stream of the symbol."""
    s = m.config.instrument
    sym, name = s.binance_symbol.encode(), s.stream_symbol
    tick, lot = m.tick, m.lot
    usdm = _usdm(m)
    items: list[tuple[int, int, int, str, bytes]] = []
    for t in [] if usdm else m.trades:  # USD-M publishes aggTrade only
        items.append(
            (
                t.event_ns,
                _RANK["trade"],
                t.trade_id,
                f"{name}@trade",
                b'{"e":"trade","E":%d,"s":"%s","t":%d,"p":"%s","q":"%s","T":%d,"m":%s,"M":true}'
                % (
                    t.event_ns // NS_PER_MS,
                    sym,
                    t.trade_id,
                    _d(t.price * tick),
                    _d(t.qty * lot),
                    t.trade_ns // NS_PER_MS,
                    b"false" if t.taker_buys else b"true",
                ),
            )
        )
    for agg_id, ts in _aggs(m).items():
        first, last = ts[0], ts[-1]
        items.append(
            (
                last.event_ns,
                _RANK["aggTrade"],
                agg_id,
                f"{name}@aggTrade",
                b'{"e":"aggTrade","E":%d,"s":"%s","a":%d,"p":"%s","q":"%s","f":%d,"l":%d,"T":%d,"m":%s,"M":true}'
                % (
                    last.event_ns // NS_PER_MS,
                    sym,
                    agg_id,
                    _d(first.price * tick),
                    _d(sum(t.qty for t in ts) * lot),
                    first.trade_id,
                    last.trade_id,
                    first.trade_ns // NS_PER_MS,
                    b"false" if first.taker_buys else b"true",
                ),
            )
        )
    for k in m.tickers:
        quote = (k.u, sym, _d(k.bid[0] * tick), _d(k.bid[1] * lot), _d(k.ask[0] * tick), _d(k.ask[1] * lot))
        if usdm:  # USD-M's bookTicker carries its event and transaction times
            ms = k.event_ns // NS_PER_MS
            ticker = (
                b'{"e":"bookTicker","u":%d,"s":"%s","b":"%s","B":"%s","a":"%s","A":"%s","T":%d,"E":%d}'
                % (
                    *quote,
                    ms,
                    ms,
                )
            )
        else:
            ticker = b'{"u":%d,"s":"%s","b":"%s","B":"%s","a":"%s","A":"%s"}' % quote
        items.append((k.event_ns, _RANK["bookTicker"], k.u, f"{name}@bookTicker", ticker))
    for i, d in enumerate(m.depth):
        items.append((d.event_ns, _RANK["depth"], d.u, f"{name}@depth@100ms", depth_payload(m, i)))
    items.sort(key=lambda x: (x[0], x[1], x[2]))
    for send_ns, _, _, stream, data in items:
        yield send_ns, stream, data


def iter_books(m: Market) -> Iterator[tuple[int, int, dict[int, int], dict[int, int]]]:
    """``(update_id, event_ns, bids, asks)`` (ticks -> lots) before the first message, then after each message.

    The dicts are live: copy them to keep a state.
    """
    bids, asks = dict(m.initial_bids), dict(m.initial_asks)
    yield m.initial_update_id, m.config.start_ns, bids, asks
    for d in m.depth:
        for side, levels in ((bids, d.bids), (asks, d.asks)):
            for p, q in levels:
                if q:
                    side[p] = q
                else:
                    side.pop(p, None)
        yield d.u, d.event_ns, bids, asks


def _lognormal_lag_ns(rng: np.random.Generator, median_ms: float, n: int) -> np.ndarray:
    return (rng.lognormal(math.log(median_ms), 0.5, n) * NS_PER_MS).astype(np.int64)


@dataclass
class LakeStream:
    """What the lake rendering carries from one window of a run to the next (``iter_market``): the random
    stream of receive lags and the time of the next ``book`` snapshot, so the windows join without a seam."""

    rng: np.random.Generator
    next_book_at: int | None = None


def lake_tables(m: Market, stream: LakeStream | None = None) -> dict[str, pa.Table]:
    """The Crypto Lake raw tables (``trades``, ``book``, ``book_delta_v2``) of the window.

    With ``stream``, ``m`` continues the window rendered before it: the ``book`` schedule goes on (no snapshot
    at the window's start) and the lags come from the carried random stream.
    """
    c = m.config
    rng = stream.rng if stream is not None else np.random.default_rng(c.seed + 1)
    tick, lot = m.tick / 1e8, m.lot / 1e8
    # (taker buys, qty, price, id, trade ns, event ns): spot's trade stream, or USD-M's aggTrade (its only public
    # trade stream, so a USD-M lake holds aggTrade ids, as the aggTrade frames carry them)
    rows = (
        _agg_trade_rows(m)
        if _usdm(m)
        else [(t.taker_buys, t.qty, t.price, t.trade_id, t.trade_ns, t.event_ns) for t in m.trades]
    )
    t_ns = np.array([r[4] for r in rows], dtype=np.int64)
    e_ns = np.array([r[5] for r in rows], dtype=np.int64)
    tables = {
        "trades": pa.table(
            {
                "side": ["buy" if r[0] else "sell" for r in rows],
                "amount": np.array([r[1] for r in rows], dtype=np.float64) * lot,
                "price": np.array([r[2] for r in rows], dtype=np.float64) * tick,
                "id": np.array([r[3] for r in rows], dtype=np.int64),
                "timestamp": t_ns,
                "receipt_timestamp": e_ns + _lognormal_lag_ns(rng, c.receive_lag_ms, len(rows)),
            },
            schema=RAW_TRADES,
        )
    }
    counts = np.array([len(d.bids) + len(d.asks) for d in m.depth], dtype=np.int64)
    msg_lag = _lognormal_lag_ns(rng, c.receive_lag_ms, len(m.depth))
    ev = np.array([d.event_ns for d in m.depth], dtype=np.int64)
    tables["book_delta_v2"] = pa.table(
        {
            "timestamp": np.repeat(ev, counts),
            "receipt_timestamp": np.repeat(ev + msg_lag, counts),
            "sequence_number": np.repeat(np.array([d.u for d in m.depth], dtype=np.int64), counts),
            "side_is_bid": np.concatenate(
                [np.r_[np.ones(len(d.bids), bool), np.zeros(len(d.asks), bool)] for d in m.depth]
            )
            if m.depth
            else np.zeros(0, bool),
            "price": np.array([p for d in m.depth for p, _ in (*d.bids, *d.asks)], dtype=np.float64) * tick,
            "size": np.array([q for d in m.depth for _, q in (*d.bids, *d.asks)], dtype=np.float64) * lot,
        },
        schema=RAW_BOOK_DELTA,
    )
    # `book`: 20 levels before the first delta, then every book_snapshot_every_s at a message boundary.
    rows: list[list[float]] = []
    meta: list[tuple[int, int, int]] = []
    every = int(c.book_snapshot_every_s * 1e9)
    next_at = stream.next_book_at if stream is not None else None
    books = iter_books(m)
    if next_at is not None:
        next(books)  # the book at the window's start: the previous window's last state, already rendered
    for u, event_ns, bids, asks in books:
        if next_at is not None and event_ns < next_at:
            continue
        when = event_ns if next_at is not None else c.start_ns
        next_at = (next_at or c.start_ns) + every
        row: list[float] = []
        top_b = heapq.nlargest(BOOK_LEVELS, bids.items())
        top_a = heapq.nsmallest(BOOK_LEVELS, asks.items())
        for top in (top_b, top_a):
            for i in range(BOOK_LEVELS):
                row += [top[i][0] * tick, top[i][1] * lot] if i < len(top) else [math.nan, math.nan]
        rows.append(row)
        meta.append((when, when + int(_lognormal_lag_ns(rng, c.receive_lag_ms, 1)[0]), u))
    cols: dict[str, object] = {
        "timestamp": np.array([x[0] for x in meta], dtype=np.int64),
        "receipt_timestamp": np.array([x[1] for x in meta], dtype=np.int64),
        "sequence_number": np.array([x[2] for x in meta], dtype=np.int64),
    }
    arr = np.array(rows, dtype=np.float64).reshape(len(rows), 4 * BOOK_LEVELS)
    names = [
        f"{side}_{i}_{what}"
        for side in ("bid", "ask")
        for i in range(BOOK_LEVELS)
        for what in ("price", "size")
    ]
    for j, name in enumerate(names):
        cols[name] = arr[:, j]
    tables["book"] = pa.table(cols, schema=RAW_BOOK)
    if stream is not None:
        stream.next_book_at = next_at
    return tables


def write_stream(
    c: SimConfig,
    *,
    lake_root: str | Path | None = None,
    capture_path: str | Path | None = None,
    chunk_s: float = 3600.0,
    progress: Callable[[Market], None] | None = None,
) -> dict[str, Path]:
    """Simulate ``c`` window by window and append each window's renderings to the files: the lake tables of the
    day under ``lake_root`` and/or a perfect capture at ``capture_path``. Memory follows one window (an hour of
    BTCUSDT is ~1.3 M delta rows), not the run. The events are exactly those of ``simulate_market(c)``; the receive
    lags are drawn per window (deterministic for the seed and ``chunk_s``), and at a window's seam a frame may be
    captured up to the 2 ms of Binance's send jitter out of global time order. Files appear atomically when the
    run is complete."""
    out: dict[str, Path] = {}
    lake = LakeStream(np.random.default_rng(c.seed + 1))
    cap = CaptureStream(np.random.default_rng(c.seed + 2))
    sym = c.instrument.stream_symbol
    with contextlib.ExitStack() as stack:
        writers: dict[str, ParquetBatchWriter] = {}
        if lake_root is not None:
            date = _date(c.start_ns)
            schemas = {"trades": RAW_TRADES, "book_delta_v2": RAW_BOOK_DELTA, "book": RAW_BOOK}
            for t, schema in schemas.items():
                out[t] = Path(lake_root) / symbol_lake_key(t, c.symbol, date)
                writers[t] = stack.enter_context(ParquetBatchWriter(out[t], schema))
        capture = (
            CaptureWriter(capture_path, venue=_venue(c), fsync=False) if capture_path is not None else None
        )
        try:
            for window in iter_market(c, chunk_s):
                if writers:
                    for table, data in lake_tables(window, lake).items():
                        writers[table].write_table(data)
                if capture is not None:
                    for line in capture_lines(window, stream=cap, end=False):
                        capture.write(*line)
                if progress is not None:
                    progress(window)
        except BaseException:
            if capture is not None:  # nothing half-written stays behind (the lake writers discard theirs)
                for f in (capture.close(), index_path(capture.path)):
                    f.unlink(missing_ok=True)
            raise
        if capture is not None:
            capture.write(cap.last_ns + 1, EVENT_STREAM, event_data("session_end", symbol=sym, session="sim"))
            out["capture"] = capture.close()
    return out


def write_lake_stream(c: SimConfig, lake_root: str | Path, **kw: object) -> dict[str, Path]:
    """``write_stream`` of the lake tables only."""
    return write_stream(c, lake_root=lake_root, **kw)  # type: ignore[arg-type]


def write_lake(
    m: Market, lake_root: str | Path, tables: dict[str, pa.Table] | None = None
) -> dict[str, Path]:
    """Write the lake rendering (or ``tables``, e.g. with faults) under ``lake_root`` in Crypto Lake's layout, on
    the exchange the symbol names."""
    out: dict[str, Path] = {}
    date = _date(m.config.start_ns)
    for table, data in (tables if tables is not None else lake_tables(m)).items():
        path = Path(lake_root) / symbol_lake_key(table, m.config.symbol, date)
        write_table(path, data)
        out[table] = path
    return out


def _date(ns: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).strftime("%Y-%m-%d")


@dataclass
class CaptureStream:
    """What a capture rendering carries from one window of a run to the next: the random stream of receive lags
    and the capture time of the last line (``None`` until the session's start and snapshot are written)."""

    rng: np.random.Generator
    last_ns: int | None = None


def capture_lines(
    m: Market, *, session: str = "sim", stream: CaptureStream | None = None, end: bool = True
) -> Iterator[tuple[int, str, bytes]]:
    """What a perfect capture of every stream would hold: session start, the REST snapshot, the frames.

    With ``stream``, ``m`` continues the window rendered before it in the same session (no new start or snapshot;
    capture times stay monotonic across the seam). ``end=False`` leaves the session open for the next window.
    """
    c = m.config
    st = stream if stream is not None else CaptureStream(np.random.default_rng(c.seed + 2))
    sym = c.instrument.stream_symbol
    if st.last_ns is None:
        first_ns = c.start_ns
        yield first_ns, EVENT_STREAM, event_data("session_start", symbol=sym, session=session)
        snap = snapshot_payload(m, m.initial_update_id, m.initial_bids, m.initial_asks, 1000)
        yield first_ns + NS_PER_MS, f"{sym}{SNAPSHOT_SUFFIX}", snap
        st.last_ns = first_ns + NS_PER_MS
    frames = list(binance_frames(m))
    lags = _lognormal_lag_ns(st.rng, c.capture_lag_ms, len(frames))
    for (send_ns, name, data), lag in zip(frames, lags.tolist(), strict=True):
        st.last_ns = max(st.last_ns, send_ns + lag)  # one connection: received in send order
        yield st.last_ns, name, data
    if end:
        yield st.last_ns + 1, EVENT_STREAM, event_data("session_end", symbol=sym, session=session)


def _venue(c: SimConfig) -> str:
    return venues.for_symbol(c.symbol).name


def write_capture(m: Market, path: str | Path) -> Path:
    with CaptureWriter(path, venue=_venue(m.config), fsync=False) as w:
        for capture_ns, stream, data in capture_lines(m):
            w.write(capture_ns, stream, data)
    return Path(path)
