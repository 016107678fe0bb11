"""A local Binance book from a REST snapshot plus depth diffs, by the exchange's rules, on this project's engine.

Used to hold the engine against reality: the best bid/ask after each applied diff must equal the ``bookTicker``
message carrying the same update id. The sync rules are the venue's (``rlx_pipeline.venues.DepthRules``: spot
``U``/``u``, USD-M the ``pu`` chain) through the one sync state machine ``venues.DepthSync``: diffs before a
snapshot are buffered, the ones it holds dropped, and a break leaves the book unsynced (counted) until the next
snapshot bridges the stream again.

    from rlx_pipeline.book.binance import compare_book_ticker
    from rlx_pipeline.capture.importers import read_hftbacktest
    compare_book_ticker(read_hftbacktest("binance_spot_ethusdt_20240808.gz"))["ethusdt"]["matched"]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from rlx_pipeline import fixed_point, venues
from rlx_pipeline.book.engine import Book
from rlx_pipeline.venues import DepthSync

Top = tuple[int, int, int, int]  # best bid price, size, best ask price, size (0: empty side)


def _levels(levels: list) -> list[tuple[int, int]]:
    return [(fixed_point.parse(p), fixed_point.parse(q)) for p, q in levels]


@dataclass
class LocalBook:
    """One symbol's local book: the venue's sync state machine (``venues.DepthSync``) decides, the engine holds.
    A diff that is not the venue's frame (a USD-M diff without ``pu``, a spot one with it) raises ``FrameError``."""

    venue: venues.Venue = venues.SPOT
    capacity: int = 1 << 14
    book: Book | None = None
    sync: DepthSync = field(init=False)
    buffer: list[dict] = field(default_factory=list)  # diffs waiting for a snapshot
    applied: int = 0
    dropped: int = 0  # diffs already in the snapshot (or seen twice)
    gaps: int = 0

    def __post_init__(self) -> None:
        self.sync = DepthSync(self.venue.depth_rules)

    @property
    def synced(self) -> bool:
        return self.sync.last_update_id is not None

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
        last = int(body["lastUpdateId"])
        self.sync.reset()
        self.sync.on_snapshot(last)
        tops = [(last, self.top())]
        pending, self.buffer = self.buffer, []
        for msg in pending:
            tops += self.on_diff(msg)
        return tops

    def on_diff(self, msg: dict) -> list[tuple[int, Top]]:
        """Apply one depth diff if it continues the book; returns ``[(u, top after it)]`` or ``[]``."""
        if not self.synced:
            self.venue.check_frame("depth", msg)
            self.buffer.append(msg)
            return []
        assert self.book is not None
        before = self.sync.prev_u
        if self.sync.on_diff(*self.venue.diff_ids(msg)) is not None:
            self.gaps += 1
            self.sync.reset()
            self.buffer = [msg]
            return []
        if self.sync.prev_u == before:
            self.dropped += 1
            return []
        for p, q in _levels(msg["b"]):
            self.book.set(True, p, q)
        for p, q in _levels(msg["a"]):
            self.book.set(False, p, q)
        self.applied += 1
        return [(int(msg["u"]), self.top())]


def _on_frame(
    syncs: dict[str, LocalBook],
    ticker_at: dict[str, dict[int, Top]],
    venue: venues.Venue,
    symbol: str,
    kind: str,
    msg: dict,
) -> list[tuple[int, Top]]:
    """One frame into its symbol's book or bookTicker quotes; the ``(update id, top)`` of the book it moved."""
    if kind == "bookTicker":
        venue.check_frame(kind, msg)
        b, bq, a, aq = (fixed_point.parse(msg[f]) for f in ("b", "B", "a", "A"))
        ticker_at.setdefault(symbol, {})[int(msg["u"])] = (b, bq, a, aq)
        return []
    sync = syncs.setdefault(symbol, LocalBook(venue))
    return sync.on_snapshot(msg) if kind == "depthSnapshot" else sync.on_diff(msg)


def compare_book_ticker(
    frames: Iterable[tuple[int, str, bytes]], *, venue: venues.Venue = venues.SPOT, max_mismatches: int = 5
) -> dict[str, dict]:
    """Per symbol: depth messages applied, gaps, update ids shared by the book and ``bookTicker``, how many of
    them agree on the best bid/ask (prices and sizes), and the first mismatches.

    ``frames`` is ``(capture_ns, stream, data bytes)`` as the capture importers yield them, REST snapshots under
    the stream ``<symbol>@depthSnapshot``, all of ``venue``'s: a frame that is not raises ``FrameError`` naming
    its stream and capture time.
    """
    syncs: dict[str, LocalBook] = {}
    book_at: dict[str, dict[int, Top]] = {}
    ticker_at: dict[str, dict[int, Top]] = {}
    for capture_ns, stream, data in frames:
        symbol, _, kind = stream.partition("@")
        if kind not in ("depthSnapshot", "bookTicker") and not kind.startswith("depth"):
            continue
        try:
            tops = _on_frame(syncs, ticker_at, venue, symbol, kind, orjson.loads(data))
        except venues.FrameError as exc:
            raise venues.FrameError(f"{stream} received at {capture_ns} ns: {exc}") from None
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
