"""Venues: a Crypto Lake symbol names its market; each venue holds its endpoints and depth rules."""

from __future__ import annotations

import pytest

from rlx_pipeline import venues
from rlx_pipeline.settings import Settings, SettingsError


def test_a_symbol_names_its_venue():
    spot, perp = venues.for_symbol("BTC-USDT"), venues.for_symbol("btc-usdt-perp")
    assert (spot.name, spot.lake_exchange) == ("binance_spot", "BINANCE")
    assert (perp.name, perp.lake_exchange) == ("binance_usdm", "BINANCE_FUTURES")
    assert spot.lake_symbol("btcusdt") == "BTC-USDT"
    assert perp.lake_symbol("BTCUSDT") == "BTC-USDT-PERP"
    with pytest.raises(venues.UnknownVenueError, match="BTC-USDT-QUARTER"):
        venues.for_symbol("BTC-USDT-QUARTER")


def test_each_venue_holds_its_endpoints_and_streams():
    spot, usdm = venues.SPOT, venues.USDM
    assert (
        spot.depth_url(spot.rest_url, "btcusdt")
        == "https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=1000"
    )
    assert usdm.depth_url(usdm.rest_url, "btcusdt", 500) == (
        "https://fapi.binance.com/fapi/v1/depth?symbol=BTCUSDT&limit=500"
    )
    assert (spot.ws_url, usdm.ws_url) == ("wss://stream.binance.com:9443", "wss://fstream.binance.com")
    assert usdm.default_streams == ("aggTrade", "depth@100ms", "bookTicker")  # USD-M has no public `trade`
    assert "depth@0ms" in usdm.depth_streams and "depth@0ms" not in spot.depth_streams


def test_depth_rules_per_venue():
    spot, usdm = venues.SPOT.depth_rules, venues.USDM.depth_rules
    # the diff ending at the snapshot id: spot already holds it, USD-M applies it first
    assert spot.in_snapshot(100, 100) and not usdm.in_snapshot(100, 100)
    assert spot.bridges(95, 105, 100) and spot.bridges(101, 105, 100) and not spot.bridges(102, 105, 100)
    assert usdm.bridges(100, 105, 100) and not usdm.bridges(101, 105, 100)
    assert spot.continues(106, None, 105) and not spot.continues(107, None, 105)
    # USD-M: the pu chain alone decides, a diff without pu breaks it
    assert (
        usdm.continues(200, 105, 105)
        and not usdm.continues(106, 104, 105)
        and not usdm.continues(106, None, 105)
    )


def test_spot_and_perp_side_by_side_in_one_deployment():
    s = Settings.from_env({"RLX_SYMBOLS": "BTC-USDT,BTC-USDT-PERP"})
    assert [venues.for_symbol(x).lake_exchange for x in s.symbols] == ["BINANCE", "BINANCE_FUTURES"]


def test_rlx_exchange_fails_naming_its_replacement():
    with pytest.raises(
        SettingsError, match=r"RLX_EXCHANGE='BINANCE_FUTURES' is no longer read.*RLX_SYMBOLS.*-PERP"
    ):
        Settings.from_env({"RLX_EXCHANGE": "BINANCE_FUTURES"})


def test_the_local_lake_puts_each_symbol_under_its_venues_exchange(tmp_path):
    from rlx_pipeline.simulator import SimConfig, simulate

    for sym in ("BTC-USDT", "BTC-USDT-PERP"):
        paths = simulate(SimConfig(symbol=sym, duration_s=5, seed=1)).write_lake(tmp_path)
        exchange = "BINANCE_FUTURES" if sym.endswith("-PERP") else "BINANCE"
        assert paths["trades"] == tmp_path / (
            f"market-data/cryptofeed/trades/exchange={exchange}/symbol={sym}/dt=2024-08-09/1.snappy.parquet"
        )
