"""A capture file says which venue it holds; golden discovery and the capture sensor select by venue + symbol."""

from __future__ import annotations

import json

import orjson
import pytest

from rlx_pipeline.capture.importers import import_files
from rlx_pipeline.formats.capture_file import (
    CaptureWriter,
    capture_venue,
    finalize_partial,
    index_path,
    read_index,
    write_capture,
)
from rlx_pipeline.golden import build_golden, capture_files_for
from rlx_pipeline.orchestration.jobs import capture_partitions

DAY_MS = 1_723_161_600_000  # 2024-08-09T00:00:00Z


def _lines(n: int = 3) -> list[tuple[int, str, bytes]]:
    """A few btcusdt depth diffs: spot and USD-M both name the stream ``btcusdt@depth@100ms``."""
    return [
        (
            (DAY_MS + 1000 * i) * 1_000_000,
            "btcusdt@depth@100ms",
            orjson.dumps({"e": "depthUpdate", "E": DAY_MS + 1000 * i, "U": i, "u": i, "b": [], "a": []}),
        )
        for i in range(1, n + 1)
    ]


def test_golden_discovery_never_mixes_spot_and_perp_of_one_stream_symbol(tmp_path):
    spot = write_capture(tmp_path / "2024-08-09" / "spot.jsonl.zst", _lines(), venue="binance_spot")
    perp = write_capture(tmp_path / "2024-08-09" / "perp.jsonl.zst", _lines(), venue="binance_usdm")
    assert read_index(perp)["venue"] == "binance_usdm"
    assert capture_files_for(tmp_path, "BTC-USDT", "2024-08-09") == [spot]
    assert capture_files_for(tmp_path, "BTC-USDT-PERP", "2024-08-09") == [perp]


def test_a_capture_without_a_venue_is_read_as_spot(tmp_path):
    legacy = write_capture(tmp_path / "legacy.jsonl.zst", _lines())
    index = json.loads(index_path(legacy).read_text())
    index.pop("venue")  # as written before capture files named their venue
    index_path(legacy).write_text(json.dumps(index))
    assert capture_venue(legacy, read_index(legacy)).name == "binance_spot"
    assert capture_files_for(tmp_path, "BTC-USDT", "2024-08-09") == [legacy]
    assert capture_files_for(tmp_path, "BTC-USDT-PERP", "2024-08-09") == []


def test_a_killed_perp_capture_is_finalised_as_perp_by_its_name(tmp_path):
    w = CaptureWriter(tmp_path / "binance_usdm-00-s1.jsonl.zst", venue="binance_usdm", fsync=False)
    for line in _lines():
        w.write(*line)
    w.flush()
    w._file.close()  # killed: no close(), the .partial and no index remain
    path, index = finalize_partial(tmp_path / "binance_usdm-00-s1.jsonl.zst.partial")
    assert index["venue"] == "binance_usdm"
    assert capture_files_for(tmp_path, "BTC-USDT-PERP", "2024-08-09") == [path]


def test_the_capture_sensor_maps_a_perp_capture_to_the_perp_partition(tmp_path):
    perp = write_capture(tmp_path / "perp.jsonl.zst", _lines(), venue="binance_usdm")
    symbols = ["BTC-USDT", "BTC-USDT-PERP"]
    assert capture_partitions(perp, read_index(perp), symbols) == ["2024-08-09|BTC-USDT-PERP"]


@pytest.mark.realdata
def test_real_usdm_samples_import_as_perp_and_bridge_without_gaps(tmp_path, real_samples):
    cf = real_samples / "cryptofeed"
    [path] = import_files([cf / "BINANCE_FUTURES.ws.1.0", cf / "BINANCE_FUTURES.http.0.0"], tmp_path / "cap")
    assert read_index(path)["venue"] == "binance_usdm"
    date = "2021-07-22"
    for symbol in ("SUSHI-USDT-PERP", "AKRO-USDT-PERP", "CTK-USDT-PERP", "KEEP-USDT-PERP"):
        assert capture_files_for(tmp_path / "cap", symbol, date) == [path]
        assert capture_files_for(tmp_path / "cap", symbol.removesuffix("-PERP"), date) == []
        res = build_golden([path], symbol, date, lambda t, s=symbol: tmp_path / s / f"{t}.parquet")
        assert res.messages["depth@100ms"] > 0 and res.messages["aggTrade"] > 0, symbol
        assert (res.gaps, res.unbridged_runs, res.malformed) == ([], 0, []), symbol
