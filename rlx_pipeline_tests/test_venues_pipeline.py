"""Spot and perp side by side in one deployment: each simulated day captured live from the local exchange over a
real WebSocket (USD-M's protocol for the perp), then every asset through Dagster's own CLI, same invocation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rlx_pipeline_tests.conftest import DATE
from rlx_pipeline_tests.operations_servers import ROOT, SQLITE_DAGSTER_YAML

SYMBOLS = ("BTC-USDT", "BTC-USDT-PERP")


def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _report(data: Path, kind: str, symbol: str, name: str) -> dict:
    return json.loads((data / "reports" / kind / f"dt={DATE}" / f"symbol={symbol}" / name).read_text())


def test_spot_and_perp_reach_full_fidelity_in_one_deployment(tmp_path):
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    (home / "dagster.yaml").write_text(SQLITE_DAGSTER_YAML.format(base=home / "storage"))
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "RLX_DATA_DIR": str(data),
        "RLX_SYMBOLS": ",".join(SYMBOLS),
        "RLX_LAKE_MIN_HOURS": "1",
        "RLX_EXECUTOR": "in_process",
    }
    env.pop("RLX_EXCHANGE", None)
    cli = [sys.executable, "-c", "from rlx_pipeline.cli import main; main()"]
    _run(
        [
            *cli,
            "demo",
            "--prepare-only",
            "--capture",
            "live",
            "--minutes",
            "1",
            "--symbols",
            ",".join(SYMBOLS),
        ],
        env,
    )
    captures = sorted(p.name.split("-", 1)[0] for p in (data / "capture").rglob("*.jsonl.zst"))
    assert captures == ["binance_spot", "binance_usdm"]  # one live capture per venue
    lake = data / "lake" / "market-data" / "cryptofeed" / "trades"
    assert (lake / "exchange=BINANCE_FUTURES" / "symbol=BTC-USDT-PERP").is_dir()
    assert (lake / "exchange=BINANCE" / "symbol=BTC-USDT").is_dir()
    materialize = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "rlx_pipeline.definitions"]
    for symbol in SYMBOLS:
        _run([*materialize, "--select", "*", "--partition", f"{DATE}|{symbol}"], env)
    for symbol, trade_ids in zip(SYMBOLS, ("trade ids", "aggTrade ids"), strict=True):
        fidelity = _report(data, "fidelity", symbol, "report.json")
        assert (fidelity["score"], fidelity["passed"], fidelity["trade_id_kind"]) == (1.0, True, trade_ids)
        integrity = _report(data, "checks", symbol, "golden_integrity.json")
        assert integrity["passed"] and integrity["description"].startswith("no gaps"), integrity
