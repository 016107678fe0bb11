import numpy as np
import polars as pl
import pytest

from rlx_pipeline import fixed_point as fp
from rlx_pipeline import instruments, venues
from rlx_pipeline.gate import (
    GateClosed,
    Verdict,
    input_fingerprints,
    read_verdict,
    require_passed,
    write_verdict,
)
from rlx_pipeline.layout import lake_key


@pytest.mark.parametrize(
    ("text", "value"),
    [("2683.80000000", 268_380_000_000), ("0.00310000", 310_000), ("1", 100_000_000), ("-0.5", -50_000_000)],
)
def test_fixed_point_parse_and_format_round_trip(text, value):
    assert fp.parse(text) == value
    assert fp.parse(fp.format(value)) == value


def test_fixed_point_rejects_inexact_and_garbage():
    with pytest.raises(fp.DecimalFormatError):
        fp.parse("0.000000001")
    with pytest.raises(fp.DecimalFormatError):
        fp.parse("1e-3")
    assert fp.parse("0.100000000") == 10_000_000  # trailing zeros beyond the scale are exact


def test_float_conversion_is_exact_for_binance_values():
    values = ["64123.45", "0.00012", "2683.81", "99999.99999999"]
    got = fp.from_float(np.array([float(v) for v in values]))
    assert got.tolist() == [fp.parse(v) for v in values]
    df = pl.DataFrame({"p": [float(v) for v in values] + [float("nan")]})
    assert df.select(fp.expr_from_float("p")).to_series().to_list() == [fp.parse(v) for v in values] + [None]
    assert pl.DataFrame({"s": values}).select(fp.expr_from_str("s")).to_series().to_list() == got.tolist()


def test_decimal_conversion_is_exact():
    from decimal import Decimal

    values = [
        "0.5",
        "60000.12345678",
        "-0.00000001",
        "0.00000123",
        "92233720368.54775807",
    ]  # the last: int64 max
    df = pl.DataFrame({"v": [fp.parse(v) for v in values]})
    got = df.select(fp.expr_to_decimal("v")).to_series()
    assert got.dtype == pl.Decimal(38, 8)
    assert got.to_list() == [Decimal(v) for v in values]


def test_symbol_mapping_lives_in_one_place():
    assert instruments.to_binance("BTC-USDT") == "BTCUSDT"
    assert instruments.to_binance("BTC-USDT-PERP") == "BTCUSDT"
    assert instruments.to_lake("btcusdt") == "BTC-USDT"
    assert instruments.to_lake("RUNEEUR") == "RUNE-EUR"
    assert venues.USDM.lake_symbol("SUSHIUSDT") == "SUSHI-USDT-PERP"
    with pytest.raises(ValueError, match="XYZ"):
        instruments.to_lake("XYZ")


def test_lake_key_is_crypto_lakes_layout():
    assert (
        lake_key("book_delta_v2", "binance", "btc-usdt", "2024-08-09")
        == "market-data/cryptofeed/book_delta_v2/exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-09/1.snappy.parquet"
    )


def test_gate_refuses_failed_and_missing_verdicts(layout):
    with pytest.raises(GateClosed, match="no validation verdict"):
        require_passed(layout, "2024-08-09", "BTC-USDT")
    write_verdict(layout, Verdict("2024-08-09", "BTC-USDT", passed=False, failed_checks=["ks_d"]))
    with pytest.raises(GateClosed, match="ks_d"):
        require_passed(layout, "2024-08-09", "BTC-USDT")
    assert require_passed(layout, "2024-08-09", "BTC-USDT", override=True).passed is False
    with pytest.raises(GateClosed, match="does not record what it judged"):  # a verdict binds its inputs
        write_verdict(layout, Verdict("2024-08-09", "BTC-USDT", passed=True))
        require_passed(layout, "2024-08-09", "BTC-USDT")
    inputs = input_fingerprints(layout, "2024-08-09", "BTC-USDT")
    write_verdict(layout, Verdict("2024-08-09", "BTC-USDT", passed=True, inputs=inputs))
    assert require_passed(layout, "2024-08-09", "BTC-USDT").passed
    assert read_verdict(layout, "2024-08-09", "ETH-USDT") is None


def test_a_fingerprint_changes_with_any_value_and_only_with_content(tmp_path):
    """The verdict binds its inputs by fingerprint: a one-value edit must change it (the parquet footer alone
    misses most: same compressed sizes, same min/max), an identical rewrite must not, a missing file is None."""
    import numpy as np
    import pyarrow as pa

    from rlx_pipeline import storage
    from rlx_pipeline.gate import fingerprint

    rng = np.random.default_rng(1)
    cols = {"price": rng.integers(6 * 10**12, 61 * 10**11, 50_000), "qty": rng.integers(1, 10**6, 50_000)}
    first = fingerprint(storage.write_table(tmp_path / "a.parquet", pa.table(cols)))
    assert fingerprint(storage.write_table(tmp_path / "b.parquet", pa.table(cols))) == first
    for i in rng.integers(10, 49_990, 20):
        edited = {k: v.copy() for k, v in cols.items()}
        edited["qty"][i] += 1
        assert fingerprint(storage.write_table(tmp_path / "c.parquet", pa.table(edited))) != first, i
    assert fingerprint(tmp_path / "absent.parquet") is None


def test_a_build_is_served_only_when_promoted_and_rejected_builds_are_kept_aside(tmp_path):
    from rlx_pipeline import promotion

    served = [tmp_path / "book.parquet", tmp_path / "events.parquet"]
    for p in served:
        p.write_text("good")
    labels = [promotion.build_label(f"run{i}") for i in range(5)]
    for i, label in enumerate(labels):
        for p in served:
            cand = promotion.candidate_path(p, label)
            cand.parent.mkdir(parents=True, exist_ok=True)
            cand.write_text(f"bad {i}")
        folder = promotion.set_aside(served, label)
        assert [p.read_text() for p in served] == ["good", "good"]  # the served build stays
        assert (folder / "events.parquet").read_text() == f"bad {i}" and folder.name == label
    kept = sorted(p.name for p in (tmp_path / "rejected").iterdir())
    assert kept == labels[-promotion.KEEP_REJECTED :]  # the newest rejected builds, for inspection
    label = promotion.build_label("run9")
    for p in served:
        cand = promotion.candidate_path(p, label)
        cand.parent.mkdir(parents=True, exist_ok=True)
        cand.write_text("new")
    promotion.promote(served, label)
    assert [p.read_text() for p in served] == ["new", "new"]
    assert not list((tmp_path / ".candidate").iterdir())  # nothing left of the candidates
