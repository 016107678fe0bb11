"""Dagster's own CLI on the pipeline as a person runs it: `dagster asset materialize` follows RLX_EXECUTOR, and a
failure says what went wrong, where, and what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from rlx_pipeline.settings import Settings
from rlx_pipeline.simulator import SimConfig, simulate
from rlx_pipeline_tests.conftest import DATE, PARTITION_KEY, SYMBOL
from rlx_pipeline_tests.operations_servers import deployment


def _materialize(tmp_path: Path, select: str) -> tuple[subprocess.CompletedProcess, Path]:
    deployed = deployment(tmp_path)
    return deployed.materialize(select, PARTITION_KEY, timeout=600), deployed.home


def _write_lake_day(data: Path) -> None:
    truth = simulate(SimConfig(symbol=SYMBOL, start=f"{DATE}T00:00:00Z", duration_s=20, seed=4))
    truth.write_lake(Settings.from_env({"RLX_DATA_DIR": str(data)}).layout.lake_root)


def test_asset_materialize_runs_every_step_in_one_process_with_in_process(tmp_path):
    _write_lake_day(tmp_path / "data")
    proc, home = _materialize(tmp_path, "lake_trades,lake_book,golden_samples")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        steps = [
            e.dagster_event
            for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
            if e.dagster_event
        ]
        run_start = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_START)[0].dagster_event
    assert {s.step_key for s in steps} >= {"lake_trades", "lake_book", "golden_samples"}
    assert {s.pid for s in steps} == {run_start.pid}  # every step in the run's own process


def test_a_missing_lake_day_fails_with_what_to_do(tmp_path):
    proc, home = _materialize(tmp_path, "lake_trades")
    assert proc.returncode == 1
    missing = (
        tmp_path
        / "data/lake/market-data/cryptofeed/trades/exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-09/1.snappy.parquet"
    )
    expected = (
        f"Crypto Lake day missing (trades) for partition {PARTITION_KEY}: no file at {missing}. What to do: "
        "Crypto Lake publishes a day after it ends: for a recent day, wait and re-run the partition; otherwise "
        "check RLX_LAKE_SOURCE, RLX_LAKE_DIR and the symbol, which names the exchange (BTC-USDT: BINANCE, "
        "BTC-USDT-PERP: BINANCE_FUTURES; a local lake: `rlx-pipeline lake publish` or `rlx-pipeline simulate --lake`)."
    )
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        (failure,) = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    data = failure.dagster_event.step_failure_data.user_failure_data
    assert data.description == expected  # what the UI shows on the failed step
    assert {k: data.metadata[k].value for k in ("error", "table", "symbol", "date")} == {
        "error": "LakeMissingDay",
        "table": "trades",
        "symbol": SYMBOL,
        "date": DATE,
    }
    assert f"Failure: {expected}" in proc.stderr + proc.stdout  # what the CLI prints


def test_a_day_without_capture_is_a_golden_warning_with_what_to_do(tmp_path):
    from rlx_pipeline.orchestration.assets import golden
    from rlx_pipeline.orchestration.resources import RlxSettings

    settings = Settings.from_env({"RLX_DATA_DIR": str(tmp_path)})
    result = dg.materialize(
        golden.assets + golden.checks,
        partition_key=PARTITION_KEY,
        resources={"rlx": RlxSettings.from_settings(settings)},
        instance=dg.DagsterInstance.ephemeral(),
    )
    expected = (
        f"no capture for {SYMBOL} on {DATE} under {settings.layout.capture_dir}: the comparisons with golden data "
        "are not checked. What to do: capture the symbol live (`rlx-pipeline capture run`) or import a capture of "
        "the day (`rlx-pipeline capture import`), then re-materialize golden_samples."
    )
    (mat,) = result.asset_materializations_for_node("golden_samples")
    assert (
        mat.metadata["capture"].value == "none: golden checks not measured"
    )  # the materialization says so too
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {"golden_coverage", "golden_integrity"}
    for e in evaluations.values():  # nothing measured: never a pass, a warning (it does not block)
        assert (e.passed, e.severity, e.description) == (False, dg.AssetCheckSeverity.WARN, expected)


def test_failure_for_a_truncated_and_a_wrong_schema_file():
    from rlx_pipeline.lake.source import LakeCorruptFile, LakeSchemaError
    from rlx_pipeline.orchestration.failures import failure_for

    where = {"table": "book", "exchange": "BINANCE", "symbol": SYMBOL, "date": DATE}
    truncated = failure_for(
        LakeCorruptFile("/lake/x.parquet: truncated or corrupt parquet", **where), PARTITION_KEY
    )
    assert truncated.description == (
        f"Crypto Lake file truncated or corrupt (book) for partition {PARTITION_KEY}: /lake/x.parquet: truncated "
        "or corrupt parquet. What to do: delete the file, download or publish it again, then re-run the partition."
    )
    schema = failure_for(LakeSchemaError("missing column price", **where), PARTITION_KEY)
    assert schema.description.startswith(
        f"Crypto Lake file with the wrong schema (book) for partition {PARTITION_KEY}: missing column price. "
        "What to do: the file's columns or types are not Crypto Lake's"
    )
    assert failure_for(ValueError("not a domain error"), PARTITION_KEY) is None


def test_the_demo_prints_a_summary_and_its_runs_are_in_the_ui_it_names(tmp_path):
    """`rlx-pipeline demo` as a new user runs it (no DAGSTER_HOME): a summary on stdout, no Dagster log lines,
    and the instance it tells you to open in the UI holds its run."""
    import json
    import re
    import urllib.request

    from rlx_pipeline_tests.operations_servers import dagster_webserver

    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "RLX_DATA_DIR", "RLX_SYMBOLS")}
    cli = Path(sys.executable).parent / "rlx-pipeline"  # the console script the README runs
    cmd = [str(cli), "demo", "--capture", "perfect", "--minutes", "0.5"]
    proc = subprocess.run(
        [*cmd, "--symbols", SYMBOL],
        cwd=tmp_path,
        env={**env, "RLX_EXECUTOR": "in_process"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " - dagster - " not in proc.stderr + proc.stdout  # Dagster's own log lines: only with --verbose
    assert "check lake_trades.lake_trades_ok" in proc.stdout and "materialized fidelity_report" in proc.stdout
    (run_id,) = re.findall(r"^run ([0-9a-f-]{36}): SUCCESS$", proc.stdout, re.M)
    home, data = tmp_path / "data" / "dagster", tmp_path / "data"
    assert f"export DAGSTER_HOME={home} RLX_DATA_DIR={data}" in proc.stdout
    assert "key: dagster/partition" in (home / "dagster.yaml").read_text()  # the repo's instance, installed

    demo = deployment(tmp_path, home=home, data=data, existing=True)
    with dagster_webserver(demo, tmp_path / "webserver.log") as server:
        query = "{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }"
        req = urllib.request.Request(
            f"{server.url}/graphql",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            runs = json.loads(resp.read())["data"]["runsOrError"]["results"]
    assert [(r["runId"], r["status"]) for r in runs] == [(run_id, "SUCCESS")]
    assert {"key": "dagster/partition", "value": PARTITION_KEY} in runs[0]["tags"]


def test_a_day_with_only_an_unfinished_capture_says_so(tmp_path):
    from rlx_pipeline.orchestration.assets import golden
    from rlx_pipeline.orchestration.resources import RlxSettings

    settings = Settings.from_env({"RLX_DATA_DIR": str(tmp_path)})
    partial = settings.layout.capture_dir / DATE / "00-x.jsonl.zst.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"")
    result = dg.materialize(
        golden.assets + golden.checks,
        partition_key=PARTITION_KEY,
        resources={"rlx": RlxSettings.from_settings(settings)},
        instance=dg.DagsterInstance.ephemeral(),
    )
    for e in result.get_asset_check_evaluations():
        assert (e.passed, e.severity) == (False, dg.AssetCheckSeverity.WARN)
        assert (
            "What to do: 1 unfinished capture file(s) (.partial) are not read: restart the capture service"
            in (e.description)
        )
