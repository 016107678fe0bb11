"""The check-alert sensor as deployed: the real `dagster-daemon` on an instance built from the repo's `dagster.yaml`
(SQLite, run-sharded event log) and on PostgreSQL (the production profile), a partition whose check fails
materialized by Dagster's CLI, the alert received at a local webhook; a second failed partition after the sensor
has a cursor; a daemon restart in between, with a failure while it was down: no alert repeated, none lost."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest
import yaml

from rlx_pipeline.settings import Settings
from rlx_pipeline.simulator import SimConfig, faults, simulate
from rlx_pipeline_tests.operations_servers import (
    ROOT,
    Deployment,
    dagster_daemon,
    deployment,
    instance_yaml_from_repo,
    pg_bin_dir,
    postgres_server,
    succeeded,
    webhook_server,
)

SYMBOL = "BTC-USDT"
DAYS = ["2024-08-09", "2024-08-10", "2024-08-11"]
SECRET_PATH = "/services/T000/B000/s3cr3t-t0ken"


def _wait(
    what: str, done: Callable[[], bool], proc: subprocess.Popen, log: Path, timeout_s: float = 300
) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert proc.poll() is None, (
            f"dagster-daemon exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        )
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f} s\n{log.read_text()[-3000:]}"
        time.sleep(1)


def _alert_cursor(env: dict[str, str]) -> dict | None:
    """The check_alerts sensor's stored cursor, read from the instance as the daemon left it."""
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        for state in instance.all_instigator_state():
            if state.name == "check_alerts" and state.instigator_data and state.instigator_data.cursor:
                return json.loads(state.instigator_data.cursor)
    return None


def _fail_partition(deployed: Deployment, date: str) -> None:
    """A lake day with one trade missing, then `dagster asset materialize` of lake_trades: its check fails."""
    truth = simulate(SimConfig(symbol=SYMBOL, start=f"{date}T00:00:00Z", duration_s=20, seed=3))
    tables, _ = faults.drop_trades(truth.lake_tables(), 1, seed=1)
    truth.write_lake(Settings.from_env({"RLX_DATA_DIR": str(deployed.data)}).layout.lake_root, tables=tables)
    proc = deployed.materialize("lake_trades", f"{date}|{SYMBOL}", timeout=300)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]  # the blocking check failed


def _alerted(received: list[dict]) -> list[tuple[str, str]]:
    return [(r["rlx"]["check"], r["rlx"]["partition"]) for r in received]


def _run_scenario(root: Path, instance_yaml: str, extra_env: dict[str, str]) -> None:
    with webhook_server(SECRET_PATH) as (url, received):
        deployed = deployment(
            root,
            instance_yaml=instance_yaml,
            **extra_env,
            RLX_SENSOR_INTERVAL_S="5",
            RLX_ALERT_WEBHOOK_URL=url,
        )
        home, data, env = deployed.home, deployed.data, deployed.env
        log = home / "daemon.log"
        # the storage first, then the daemon (a daemon racing the first writer of a fresh SQLite instance dies)
        succeeded(deployed.run(sys.executable, "-m", "dagster", "instance", "migrate"))
        expected = [("lake_trades_ok", f"{d}|{SYMBOL}") for d in DAYS]

        with dagster_daemon(env, log) as daemon:
            _fail_partition(deployed, DAYS[0])
            _wait("the first alert", lambda: len(received) >= 1, daemon, log)
            # a second failed partition once the sensor has a cursor
            _wait("the sensor's cursor", lambda: _alert_cursor(env) is not None, daemon, log)
            _fail_partition(deployed, DAYS[1])
            _wait("the second alert", lambda: len(received) >= 2, daemon, log)
            _wait("the cursor past the second", lambda: _alert_cursor(env)["watermark"] > 0, daemon, log)
        cursor_at_stop = _alert_cursor(env)
        _fail_partition(deployed, DAYS[2])  # while the daemon is down
        with dagster_daemon(env, log) as daemon:
            _wait("the alert of the failure while down", lambda: len(received) >= 3, daemon, log)
            # a few more ticks after the restart: nothing is sent again
            _wait("more ticks", lambda: _alert_cursor(env) != cursor_at_stop, daemon, log)
            time.sleep(12)

        assert _alerted(received) == expected
        assert all(r["rlx"]["severity"] == "ERROR" and "FAILED" in r["text"] for r in received)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            run_ids = {
                r.tags["dagster/partition"]: r.run_id
                for r in instance.get_runs()
                if "dagster/partition" in r.tags
            }
        assert [r["rlx"]["run_id"] for r in received] == [run_ids[p] for _, p in expected]
        lines = [json.loads(x) for x in (data / "alerts" / "alerts.jsonl").read_text().splitlines()]
        assert [(a["check"], a["partition"]) for a in lines] == expected
        assert json.loads((data / "alerts" / "outbox.json").read_text()) == []
        # the webhook URL is a secret: not in the daemon's (and its code server's) log
        assert SECRET_PATH not in log.read_text() and "s3cr3t" not in log.read_text()


@pytest.mark.slow
def test_alerts_from_the_daemon_on_the_repos_sqlite_instance(tmp_path):
    home = tmp_path / "home"
    config = yaml.safe_load(instance_yaml_from_repo(home / "storage"))
    assert config["storage"]["sqlite"]["base_dir"] == str(home / "storage")  # SQLite: run-sharded event log
    _run_scenario(tmp_path, instance_yaml_from_repo(home / "storage"), {})


PG_BIN = pg_bin_dir()


@pytest.mark.slow
@pytest.mark.skipif(PG_BIN is None, reason="PostgreSQL (initdb, pg_ctl) not installed")
def test_alerts_from_the_daemon_on_postgres(tmp_path, monkeypatch):
    pytest.importorskip("dagster_postgres")
    config = yaml.safe_load((ROOT / "deploy" / "production" / "dagster.yaml").read_text())
    config["run_launcher"] = {"module": "dagster", "class": "DefaultRunLauncher"}  # no cluster here
    with postgres_server(PG_BIN) as pg:
        env = {
            "DAGSTER_PG_HOST": pg.host,
            "DAGSTER_PG_PORT": str(pg.port),
            "DAGSTER_PG_DB": pg.db,
            "DAGSTER_PG_USERNAME": pg.user,
            "DAGSTER_PG_PASSWORD": "unused-trust-auth",
        }
        for k, v in env.items():  # this process reads the instance too
            monkeypatch.setenv(k, v)
        _run_scenario(tmp_path, yaml.safe_dump(config), env)
