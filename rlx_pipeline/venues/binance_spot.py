"""Binance spot (``docs/binance.md``): Crypto Lake ``BINANCE``, symbols ``BTC-USDT``."""

from __future__ import annotations

from rlx_pipeline.venues.base import SPOT_RULES, Venue

VENUE = Venue(
    name="binance_spot",
    lake_exchange="BINANCE",
    lake_suffix="",
    ws_url="wss://stream.binance.com:9443",
    rest_url="https://api.binance.com",
    depth_path="/api/v3/depth",
    default_streams=("trade", "aggTrade", "depth@100ms", "bookTicker"),
    depth_streams=("depth", "depth@100ms"),
    trade_stream="trade",
    depth_rules=SPOT_RULES,
    max_streams_per_connection=1024,
    max_connection_s=24 * 3600,
    max_connects=300,
    connect_window_s=300.0,
)
