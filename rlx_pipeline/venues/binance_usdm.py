"""Binance USD-M futures (``docs/binance.md``): Crypto Lake ``BINANCE_FUTURES``, symbols ``BTC-USDT-PERP``.

USD-M has no public ``trade`` stream: ``aggTrade`` is its trade stream. Diffs carry ``E``, ``T`` and ``pu``; the
``pu`` chain is checked on every diff (a diff without ``pu`` is not a USD-M frame). bookTicker carries ``E`` and
``T``. ``depth@0ms`` is available as an option (``depth@100ms`` by default).
"""

from __future__ import annotations

from rlx_pipeline.venues.base import USDM_RULES, FrameFields, Venue

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
    frames={
        "aggTrade": FrameFields(frozenset({"E", "T", "a", "f", "l", "p", "q", "m"})),
        "bookTicker": FrameFields(frozenset({"E", "T", "u", "b", "B", "a", "A"})),
        "depth": FrameFields(frozenset({"E", "U", "u", "pu", "b", "a"})),  # and T, which no parser reads
    },
    max_streams_per_connection=1024,
    max_connection_s=24 * 3600,
    max_connects=300,
    connect_window_s=300.0,
    # PRICE_FILTER.tickSize / LOT_SIZE.stepSize of the perpetuals (docs/binance.md, "Instrument steps")
    steps={
        "BTCUSDT": ("0.10", "0.001"),
        "ETHUSDT": ("0.01", "0.001"),
    },
)
