"""A local Binance book from a REST snapshot plus depth diffs, by the exchange's rules, on this project's engine.

Used to hold the engine against reality: the best bid/ask after each applied diff must equal the ``bookTicker``
message carrying the same update id (docs/binance.md for the rules):

- diffs before a snapshot are buffered; diffs with ``u <= lastUpdateId`` (USD-M: ``<``) are dropped;
- spot: the first applied diff has ``U <= lastUpdateId + 1 <= u``, then every diff has ``U == prev_u + 1``;
- USD-M futures: the first has ``U <= lastUpdateId <= u``, then ``pu == prev_u``;
- anything else is a gap: the book is unsynced (counted) until the next snapshot bridges the stream again.

    from rlx_pipeline.book.binance import compare_book_ticker
    from rlx_pipeline.capture.importers import read_hftbacktest
    compare_book_ticker(read_hftbacktest("binance_spot_ethusdt_20240808.gz"))["ethusdt"]["matched"]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from rlx_pipeline import depth_rules, fixed_point
from rlx_pipeline.book.engine import Book

Top = tuple[int, int, int, int]  # best bid price, size, best ask price, size (0: empty side)


def _levels(levels: list) -> list[tuple[int, int]]:
    return [(fixed_point.parse(p), fixed_point.parse(q)) for p, q in levels]


@dataclass
class DepthSync:
    """One symbol's local book. ``futures`` selects the USD-M bridging rule (``pu``)."""

    futures: bool = False
    capacity: int = 1 << 14
    book: Book | None = None
    last_u: int | None = None  # final update id of the last applied diff (or the snapshot's lastUpdateId)
    synced: bool = False
    bridged: bool = False  # the first diff after the snapshot was applied
    buffer: list[dict] = field(default_factory=list)
    applied: int = 0
    dropped: int = 0  # diffs already in the snapshot
    gaps: int = 0

    def top(self) -> Top:
        assert self.book is not None
        bids, asks = self.book.top(1)
        b = bids[0] if bids else (0, 0)
        a = asks[0] if asks else (0, 0)
        return (b[0], b[1], a[0], a[1])

    def on_snapshot(self, body: dict) -> list[tuple[int, Top]]:
        """Seed from a REST body, then apply the buffered diffs it bridges; returns ``(update id, top)`` after
        the snapshot and after every diff applied."""
        self.book = Book(self.capacity)
        for p, q in _levels(body["bids"]):
            self.book.set(True, p, q)
        for p, q in _levels(body["asks"]):
            self.book.set(False, p, q)
        self.last_u, self.synced, self.bridged = int(body["lastUpdateId"]), True, False
        tops = [(self.last_u, self.top())]
        pending, self.buffer = self.buffer, []
        for msg in pending:
            tops += self.on_diff(msg)
        return tops

    def on_diff(self, msg: dict) -> list[tuple[int, Top]]:
        """Apply one depth diff if it continues the book; returns ``[(u, top after it)]`` or ``[]``."""
        if not self.synced:
            self.buffer.append(msg)
            return []
        first, final = int(msg["U"]), int(msg["u"])
        assert self.last_u is not None and self.book is not None
        if not self.bridged and depth_rules.in_snapshot(final, self.last_u, self.futures):
            self.dropped += 1
            return []
        if not self.bridged:
            ok = depth_rules.bridges(first, final, self.last_u, self.futures)
        else:
            ok = depth_rules.continues(first, msg.get("pu") if self.futures else None, self.last_u)
        if not ok:
            self.gaps += 1
            self.synced, self.buffer = False, [msg]
            return []
        for p, q in _levels(msg["b"]):
            self.book.set(True, p, q)
        for p, q in _levels(msg["a"]):
            self.book.set(False, p, q)
        self.last_u, self.bridged = final, True
        self.applied += 1
        return [(final, self.top())]


def compare_book_ticker(
    frames: Iterable[tuple[int, str, bytes]], *, futures: bool = False, max_mismatches: int = 5
) -> dict[str, dict]:
    """Per symbol: depth messages applied, gaps, update ids shared by the book and ``bookTicker``, how many of
    them agree on the best bid/ask (prices and sizes), and the first mismatches.

    ``frames`` is ``(capture_ns, stream, data bytes)`` as the capture importers yield them, REST snapshots under
    the stream ``<symbol>@depthSnapshot``.
    """
    syncs: dict[str, DepthSync] = {}
    book_at: dict[str, dict[int, Top]] = {}
    ticker_at: dict[str, dict[int, Top]] = {}
    for _, stream, data in frames:
        symbol, _, kind = stream.partition("@")
        if kind not in ("depthSnapshot", "bookTicker") and not kind.startswith("depth"):
            continue
        msg = orjson.loads(data)
        if kind == "bookTicker":
            ticker_at.setdefault(symbol, {})[int(msg["u"])] = (
                fixed_point.parse(msg["b"]),
                fixed_point.parse(msg["B"]),
                fixed_point.parse(msg["a"]),
                fixed_point.parse(msg["A"]),
            )
            continue
        sync = syncs.setdefault(symbol, DepthSync(futures=futures))
        tops = sync.on_snapshot(msg) if kind == "depthSnapshot" else sync.on_diff(msg)
        book_at.setdefault(symbol, {}).update(tops)
    out = {}
    for symbol, sync in sorted(syncs.items()):
        books, tickers = book_at.get(symbol, {}), ticker_at.get(symbol, {})
        shared = sorted(set(books) & set(tickers))
        mismatches = [(u, books[u], tickers[u]) for u in shared if books[u] != tickers[u]]
        out[symbol] = {
            "applied": sync.applied,
            "dropped": sync.dropped,
            "gaps": sync.gaps,
            "book_ticker": len(tickers),
            "shared": len(shared),
            "matched": len(shared) - len(mismatches),
            "first_mismatches": mismatches[:max_mismatches],
        }
    return out
