"""`rlx-pipeline faults inject`: the named faults of `simulator/faults.py` applied to a local lake day or capture."""

from __future__ import annotations

import pyarrow.parquet as pq
from click.testing import CliRunner

from rlx_pipeline.cli import main
from rlx_pipeline.layout import lake_key
from rlx_pipeline.simulator import SimConfig, simulate
from rlx_pipeline_tests.conftest import DATE, SYMBOL


def _inject(tmp_path, *args: str):
    return CliRunner().invoke(
        main,
        ["faults", "inject", "--date", DATE, "--symbol", SYMBOL, *args],
        env={"RLX_DATA_DIR": str(tmp_path)},
    )


def test_faults_inject_corrupts_the_local_lake_day(tmp_path):
    truth = simulate(SimConfig(symbol=SYMBOL, start=f"{DATE}T00:00:00Z", duration_s=20, seed=2))
    truth.write_lake(tmp_path / "lake")
    trades = tmp_path / "lake" / lake_key("trades", "BINANCE", SYMBOL, DATE)
    before = pq.read_table(trades)["id"].to_pylist()

    out = _inject(tmp_path, "--kind", "drop_trades", "--n", "2", "--seed", "3")
    assert out.exit_code == 0, out.output
    after = pq.read_table(trades)["id"].to_pylist()
    gone = sorted(set(before) - set(after))
    assert len(after) == len(before) - 2 and f"affected: {gone}" in out.output
    assert f"--partition '{DATE}|{SYMBOL}'" in out.output  # what to run next

    size = trades.stat().st_size
    assert _inject(tmp_path, "--kind", "truncate_file", "--table", "trades", "--keep", "0.5").exit_code == 0
    assert trades.stat().st_size == size // 2

    assert _inject(tmp_path, "--kind", "remove_day").exit_code == 0
    assert not any((tmp_path / "lake").rglob("*.parquet"))
    missing = _inject(tmp_path, "--kind", "drop_trades")
    assert missing.exit_code != 0 and "no lake file" in missing.output
