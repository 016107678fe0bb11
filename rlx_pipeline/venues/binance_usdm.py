"""Binance USD-M futures (``docs/binance.md``): Crypto Lake ``BINANCE_FUTURES``, symbols ``BTC-USDT-PERP``.

USD-M has no public ``trade`` stream: ``aggTrade`` is its trade stream. Diffs carry ``E``, ``T`` and ``pu``; the
``pu`` chain is checked on every diff. ``depth@0ms`` is available as an option (``depth@100ms`` by default).
"""

from __future__ import annotations

from rlx_pipeline.venues.base import USDM_RULES, Venue

VENUE = Venue(
    name="binance_usdm",
    lake_exchange="BINANCE_FUTURES",
    lake_suffix="-PERP",
    ws_url="wss://fstream.binance.com",
    rest_url="https://fapi.binance.com",
    depth_path="/fapi/v1/depth",
    default_streams=("aggTrade", "depth@100ms", "bookTicker"),
    depth_streams=("depth", "depth@0ms", "depth@100ms", "depth@250ms", "depth@500ms"),
    trade_stream="aggTrade",
    depth_rules=USDM_RULES,
    max_streams_per_connection=1024,
    max_connection_s=24 * 3600,
    max_connects=300,
    connect_window_s=300.0,
)
