"""Binance spot (``docs/binance.md``): Crypto Lake ``BINANCE``, symbols ``BTC-USDT``.

Frames: diffs carry ``U``/``u`` and never ``pu`` (continuity is ``U == prev_u + 1``); ``trade`` is the public trade
stream; bookTicker carries no event time.
"""

from __future__ import annotations

from rlx_pipeline.venues.base import SPOT_RULES, FrameFields, Venue

_TRADE = frozenset({"E", "T", "p", "q", "m"})

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
    frames={
        "trade": FrameFields(_TRADE | {"t"}),
        "aggTrade": FrameFields(_TRADE | {"a", "f", "l"}),
        "bookTicker": FrameFields(frozenset({"u", "b", "B", "a", "A"})),
        "depth": FrameFields(frozenset({"E", "U", "u", "b", "a"}), absent=frozenset({"pu"})),
    },
    max_streams_per_connection=1024,
    max_connection_s=24 * 3600,
    max_connects=300,
    connect_window_s=300.0,
    # PRICE_FILTER.tickSize / LOT_SIZE.stepSize as listed in 2024 (docs/binance.md, "Instrument steps")
    steps={
        "BTCUSDT": ("0.01", "0.00001"),
        "ETHUSDT": ("0.01", "0.0001"),
        "SOLUSDT": ("0.01", "0.001"),
        "BNBUSDT": ("0.01", "0.001"),
        "XRPUSDT": ("0.0001", "1"),
        "DOGEUSDT": ("0.00001", "1"),
        "NKNUSDT": ("0.0001", "1"),
        "BLZETH": ("0.00000001", "1"),
        "LRCBTC": ("0.00000001", "1"),
        "RUNEEUR": ("0.001", "0.01"),
    },
)
