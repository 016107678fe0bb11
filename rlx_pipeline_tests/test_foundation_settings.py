from pathlib import Path

import pytest

from rlx_pipeline.settings import Settings, SettingsError


def test_defaults_match_the_documented_interface():
    s = Settings.from_env({})
    assert s.data_dir == Path("data")
    assert s.lake_source == "local"
    assert s.symbols == ("BTC-USDT", "ETH-USDT")
    assert s.partition_start == "2024-01-01"
    assert s.exchange == "BINANCE"
    assert s.lake_root == Path("data").absolute() / "lake"
    assert s.thresholds.fidelity_min == 0.999


def test_values_are_read_and_normalized():
    s = Settings.from_env(
        {
            "RLX_DATA_DIR": "/tmp/x",
            "RLX_LAKE_SOURCE": "LAKEAPI",
            "RLX_SYMBOLS": " btc-usdt , SOL-USDT ",
            "RLX_KS_D_MAX": "0.2",
            "RLX_TOP_N": "5",
            "RLX_CAPTURE_WS_URL": "ws://127.0.0.1:9000/",
        }
    )
    assert s.lake_source == "lakeapi"
    assert s.symbols == ("BTC-USDT", "SOL-USDT")
    assert s.thresholds.ks_d_max == 0.2
    assert s.top_n == 5
    assert s.capture_ws_url == "ws://127.0.0.1:9000"
    assert s.layout.staged("trades", "2024-08-09", "btc-usdt") == Path(
        "/tmp/x/staged/trades/dt=2024-08-09/symbol=BTC-USDT/data.parquet"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RLX_LAKE_SOURCE", "s3"),
        ("RLX_SYMBOLS", "BTCUSDT"),
        ("RLX_SYMBOLS", "BTC-USDT,BTC-USDT"),
        ("RLX_PARTITION_START", "2024-13-01"),
        ("RLX_EXCHANGE", "KRAKEN"),
        ("RLX_KS_D_MAX", "abc"),
        ("RLX_FIDELITY_MIN", "1.5"),
        ("RLX_TOP_N", "0"),
        ("RLX_SCHEDULE_UTC", "25:00"),
        ("RLX_CAPTURE_REST_URL", "api.binance.com"),
    ],
)
def test_invalid_settings_name_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RLX_KS_D_MAX", "nan"),
        ("RLX_SELF_CONSISTENCY_MIN", "NaN"),
        ("RLX_ORIGIN_TIME_TOLERANCE_S", "inf"),
        ("RLX_ORIGIN_TIME_TOLERANCE_S", "Infinity"),
        ("RLX_GAP_RATE_MAX", "-INF"),
    ],
)
def test_non_finite_numbers_are_rejected_with_the_variable_named(name, value):
    # nan compares false with every bound (it would switch the check off); inf overflows at run time
    with pytest.raises(SettingsError, match=rf"^{name}=.*expected a finite number"):
        Settings.from_env({name: value})


def test_lake_min_hours_and_require_golden():
    assert Settings.from_env({}).lake_min_hours == 23
    assert Settings.from_env({}).require_golden is False
    s = Settings.from_env({"RLX_LAKE_MIN_HOURS": "2", "RLX_REQUIRE_GOLDEN": "1"})
    assert (s.lake_min_hours, s.require_golden) == (2, True)
    for name, value in (("RLX_LAKE_MIN_HOURS", "25"), ("RLX_REQUIRE_GOLDEN", "yes please")):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: value})
