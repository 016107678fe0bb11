"""Venues: a Crypto Lake symbol names its market; each venue holds its endpoints, depth rules, frame fields and
instrument steps, and the parsers read a file by its venue."""

from __future__ import annotations

import orjson
import pytest

from rlx_pipeline import fixed_point, venues
from rlx_pipeline.formats.capture_file import write_capture
from rlx_pipeline.golden import build_golden
from rlx_pipeline.golden.lake_render import render_lake_from_capture
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


def test_a_symbol_of_no_venue_fails_at_load_naming_the_venues():
    with pytest.raises(
        SettingsError, match=r"RLX_SYMBOLS='BTC-USDT,BTC-USDT-QUARTER': no venue serves .*-PERP"
    ):
        Settings.from_env({"RLX_SYMBOLS": "BTC-USDT,BTC-USDT-QUARTER"})


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


def _diff(venue_name: str, U: int, u: int, pu: int | None, e: int) -> bytes:
    msg = {"e": "depthUpdate", "E": e, "s": "BTCUSDT", "U": U, "u": u, "b": [["60000.10", "1"]], "a": []}
    if venue_name == "binance_usdm":
        msg["T"] = e
    if pu is not None:
        msg["pu"] = pu
    return orjson.dumps(msg)


def test_each_venue_holds_frames_to_its_own_fields():
    spot, usdm = venues.SPOT, venues.USDM
    fut = {"E": 1, "T": 1, "U": 5, "u": 9, "pu": 4, "b": [], "a": []}
    assert usdm.diff_ids(fut) == (5, 9, 4)
    assert spot.diff_ids({k: v for k, v in fut.items() if k not in ("T", "pu")}) == (5, 9, None)
    with pytest.raises(venues.FrameError, match="binance_usdm depth frame without pu"):
        usdm.diff_ids({k: v for k, v in fut.items() if k != "pu"})
    with pytest.raises(venues.FrameError, match="binance_spot depth frame with pu"):
        spot.diff_ids(fut)
    # the public trade stream: spot `trade`, USD-M `aggTrade` (it has no `trade` stream)
    assert (spot.trade_stream, usdm.trade_stream) == ("trade", "aggTrade")
    with pytest.raises(venues.FrameError, match="binance_usdm has no trade stream .*aggTrade"):
        usdm.check_frame("trade", {"E": 1, "T": 1, "t": 1, "p": "1", "q": "1", "m": True})
    # bookTicker: USD-M's carries E and T, spot's has neither
    ticker = {"u": 1, "b": "1", "B": "1", "a": "2", "A": "1"}
    spot.check_frame("bookTicker", ticker)
    with pytest.raises(venues.FrameError, match="binance_usdm bookTicker frame without E, T"):
        usdm.check_frame("bookTicker", ticker)


@pytest.mark.parametrize("columnar", [True, False])
@pytest.mark.parametrize(
    ("venue", "symbol", "wrong"),
    [("binance_usdm", "BTC-USDT-PERP", None), ("binance_spot", "BTC-USDT", 11)],
)
def test_golden_parsing_reads_a_file_by_its_venue_not_by_the_frame(tmp_path, columnar, venue, symbol, wrong):
    """A USD-M diff without ``pu``, or a spot diff with one, is a malformed line naming the file and line: never
    read by the other venue's rules."""
    e = 1723161600000 + 1000
    usdm = venue == "binance_usdm"
    lines = [
        (e * 1_000_000, "btcusdt@depthSnapshot", orjson.dumps({"lastUpdateId": 10, "bids": [], "asks": []})),
        (
            e * 1_000_000 + 1,
            "btcusdt@depth@100ms",
            _diff(venue, 9 if usdm else 11, 12, 9 if usdm else None, e),
        ),
        (e * 1_000_000 + 2, "btcusdt@depth@100ms", _diff(venue, 13, 14, wrong, e + 1)),  # the other venue's
        (e * 1_000_000 + 3, "btcusdt@depth@100ms", _diff(venue, 15, 16, 14 if usdm else None, e + 2)),
    ]
    path = write_capture(tmp_path / f"{venue}-00-s.jsonl.zst", lines, venue=venue)
    res = build_golden([path], symbol, "2024-08-09", lambda t: tmp_path / f"{t}.parquet", columnar=columnar)
    field = "without pu" if usdm else "with pu"
    assert res.malformed == [
        (str(path), 3, f"btcusdt@depth@100ms: FrameError: {venue} depth frame {field}: not this venue's frame "
         "(docs/binance.md)")
    ]  # fmt: skip
    # the line is skipped, not read by spot rules (USD-M) or as a pu chain (spot): the next diff is a gap
    assert (res.depth_runs, len(res.gaps), res.messages["depth@100ms"]) == (1, 1, 2)


def test_a_capture_file_of_another_venue_is_refused_by_name(tmp_path):
    path = write_capture(tmp_path / "binance_spot-00-s.jsonl.zst", [], venue="binance_spot")
    with pytest.raises(ValueError, match=r"binance_spot-00-s.jsonl.zst holds binance_spot frames, but "
                       r"BTC-USDT-PERP is a binance_usdm symbol"):  # fmt: skip
        build_golden([path], "BTC-USDT-PERP", "2024-08-09", lambda t: tmp_path / f"{t}.parquet")


def test_the_lake_rendering_reads_a_file_by_its_venue(tmp_path):
    e = 1723161600000 + 1000
    lines = [
        (e * 1_000_000, "btcusdt@depthSnapshot", orjson.dumps({"lastUpdateId": 10, "bids": [], "asks": []})),
        (e * 1_000_000 + 1, "btcusdt@depth@100ms", _diff("binance_usdm", 9, 12, None, e)),
    ]
    path = write_capture(tmp_path / "binance_usdm-00-s.jsonl.zst", lines, venue="binance_usdm")
    with pytest.raises(venues.FrameError, match=r"binance_usdm-00-s.jsonl.zst line 2: binance_usdm depth frame "
                       "without pu"):  # fmt: skip
        render_lake_from_capture([path], tmp_path / "lake")


def test_instrument_steps_are_the_venues():
    spot, perp = venues.for_symbol("BTC-USDT").instrument("BTC-USDT"), venues.USDM.instrument("BTC-USDT-PERP")
    assert (spot.tick_size, spot.lot_size, spot.price_places, spot.qty_places) == (1_000_000, 1_000, 2, 5)
    assert (perp.tick_size, perp.lot_size, perp.price_places, perp.qty_places) == (10_000_000, 100_000, 1, 3)
    assert (spot.binance_symbol, perp.binance_symbol, perp.lake_symbol) == (
        "BTCUSDT",
        "BTCUSDT",
        "BTC-USDT-PERP",
    )
    eth = venues.USDM.instrument("ETH-USDT-PERP")
    assert (eth.tick_size, eth.lot_size) == (1_000_000, 100_000)
    odd = venues.USDM.instrument("SUSHI-USDT-PERP")  # no steps listed: the finest, always exact
    assert (odd.tick_size, odd.lot_size) == (1, 1)


def test_the_simulated_perp_trades_on_the_usdm_grid():
    """The simulator takes the venue's steps: USD-M BTCUSDT frames quote 0.10 ticks and 0.001 lots (before, the
    perp had no steps of its own and traded on a 1e-8 grid)."""
    from rlx_pipeline.simulator import SimConfig, simulate

    truth = simulate(SimConfig(symbol="BTC-USDT-PERP", duration_s=20, seed=3))
    prices, sizes = [], []
    for _, stream, data in truth.binance_frames():
        msg = orjson.loads(data)
        if stream.endswith("@aggTrade"):
            prices.append(msg["p"]), sizes.append(msg["q"])
        elif "@depth" in stream:
            for p, q in msg["b"] + msg["a"]:
                prices.append(p), sizes.append(q)
    assert len(prices) > 100
    assert all(fixed_point.parse(p) % 10_000_000 == 0 for p in prices)
    assert all(fixed_point.parse(q) % 100_000 == 0 for q in sizes)
    assert any(fixed_point.parse(p) % 100_000_000 for p in prices)  # not a coarser grid by chance
