"""Spot and perp side by side in one deployment: each simulated day captured live from the local exchange over a
real WebSocket (USD-M's protocol for the perp), then every asset through Dagster's own CLI, same invocation."""

from __future__ import annotations

import json
from pathlib import Path

from rlx_pipeline_tests.conftest import DATE
from rlx_pipeline_tests.operations_servers import deployment, succeeded

SYMBOLS = ("BTC-USDT", "BTC-USDT-PERP")


def _report(data: Path, kind: str, symbol: str, name: str) -> dict:
    return json.loads((data / "reports" / kind / f"dt={DATE}" / f"symbol={symbol}" / name).read_text())


def test_spot_and_perp_reach_full_fidelity_in_one_deployment(tmp_path):
    deployed = deployment(tmp_path, RLX_SYMBOLS=",".join(SYMBOLS), RLX_LAKE_MIN_HOURS="1", RLX_EXCHANGE=None)
    data = deployed.data
    succeeded(
        deployed.rlx(
            "demo", "--prepare-only", "--capture", "live", "--minutes", "1", "--symbols", ",".join(SYMBOLS)
        )
    )
    captures = sorted(p.name.split("-", 1)[0] for p in (data / "capture").rglob("*.jsonl.zst"))
    assert captures == ["binance_spot", "binance_usdm"]  # one live capture per venue
    lake = data / "lake" / "market-data" / "cryptofeed" / "trades"
    assert (lake / "exchange=BINANCE_FUTURES" / "symbol=BTC-USDT-PERP").is_dir()
    assert (lake / "exchange=BINANCE" / "symbol=BTC-USDT").is_dir()
    for symbol in SYMBOLS:
        succeeded(deployed.materialize("*", f"{DATE}|{symbol}"))
    for symbol, trade_ids in zip(SYMBOLS, ("trade ids", "aggTrade ids"), strict=True):
        fidelity = _report(data, "fidelity", symbol, "report.json")
        assert (fidelity["score"], fidelity["passed"], fidelity["trade_id_kind"]) == (1.0, True, trade_ids)
        integrity = _report(data, "checks", symbol, "golden_integrity.json")
        assert integrity["passed"] and integrity["description"].startswith("no gaps"), integrity
