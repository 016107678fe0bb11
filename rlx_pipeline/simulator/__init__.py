"""The project's market simulator: one seeded ground truth per symbol and its renderings.

    from rlx_pipeline.simulator import SimConfig, simulate
    truth = simulate(SimConfig(symbol="BTC-USDT", start="2024-08-09T00:00:00Z", duration_s=300, seed=7))
    truth.binance_frames()        # (send_ns, "btcusdt@depth@100ms", data bytes) as Binance sends them
    truth.initial_snapshot()      # REST /api/v3/depth body before the first depth message
    truth.write_lake(lake_root)   # Crypto Lake raw tables in the S3 key layout
    truth.write_capture(path)     # a perfect native capture file (golden samples)
    truth.book_at(update_id)      # (bids, asks) fixed point, after the depth message ending at update_id

    # a whole BTCUSDT-scale day straight to the lake files and a capture, one hour in memory at a time
    write_stream(SimConfig(duration_s=86_400), lake_root=lake_root, capture_path=path, chunk_s=3600)

The model is described in ``rlx_pipeline.simulator.market``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from rlx_pipeline.simulator import render
from rlx_pipeline.simulator.market import Market, SimConfig, iter_market, simulate_market
from rlx_pipeline.simulator.render import write_lake_stream, write_stream

__all__ = ["MarketTruth", "SimConfig", "iter_market", "simulate", "write_lake_stream", "write_stream"]


@dataclass
class MarketTruth:
    market: Market

    @property
    def config(self) -> SimConfig:
        return self.market.config

    def binance_frames(self) -> Iterator[tuple[int, str, bytes]]:
        return render.binance_frames(self.market)

    def initial_snapshot(self, limit: int = 1000) -> bytes:
        m = self.market
        return render.snapshot_payload(m, m.initial_update_id, m.initial_bids, m.initial_asks, limit)

    def rest_snapshot(self, after_update_id: int, limit: int = 1000) -> bytes:
        """The REST body of the book after the last depth message whose ``u`` is <= ``after_update_id``."""
        m = self.market
        if after_update_id < m.initial_update_id:
            raise KeyError(f"update id {after_update_id} is before the window")
        k = bisect.bisect_right([d.u for d in m.depth], after_update_id)
        bids, asks = dict(m.initial_bids), dict(m.initial_asks)
        for d in m.depth[:k]:
            for side, levels in ((bids, d.bids), (asks, d.asks)):
                for p, q in levels:
                    if q:
                        side[p] = q
                    else:
                        side.pop(p, None)
        last = m.depth[k - 1].u if k else m.initial_update_id
        return render.snapshot_payload(m, last, bids, asks, limit)

    def iter_books(self) -> Iterator[tuple[int, int, dict[int, int], dict[int, int]]]:
        """``(update_id, event_ns, bids, asks)`` in ticks/lots after each depth message (live dicts)."""
        return render.iter_books(self.market)

    def book_at(self, update_id: int) -> tuple[dict[int, int], dict[int, int]]:
        """Fixed-point (price -> size) book after the depth message ending at ``update_id``."""
        tick, lot = self.market.tick, self.market.lot
        for u, _, bids, asks in render.iter_books(self.market):
            if u == update_id:
                return (
                    {p * tick: q * lot for p, q in bids.items()},
                    {p * tick: q * lot for p, q in asks.items()},
                )
            if u > update_id:
                break
        raise KeyError(f"{update_id} is not the last update id of a depth message (or the initial id)")

    def lake_tables(self) -> dict[str, pa.Table]:
        return render.lake_tables(self.market)

    def write_lake(self, lake_root: str | Path, tables: dict[str, pa.Table] | None = None) -> dict[str, Path]:
        """Crypto Lake files of the window; ``tables`` (from ``lake_tables()``, maybe with faults) overrides."""
        return render.write_lake(self.market, lake_root, tables)

    def capture_lines(self) -> Iterator[tuple[int, str, bytes]]:
        return render.capture_lines(self.market)

    def write_capture(self, path: str | Path) -> Path:
        return render.write_capture(self.market, path)


def simulate(config: SimConfig | None = None) -> MarketTruth:
    """Simulate one symbol's window; deterministic for ``config.seed``."""
    return MarketTruth(simulate_market(config or SimConfig()))
