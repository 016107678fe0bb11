"""The production profile against a real PostgreSQL server: `deploy/production/dagster.yaml` (PostgreSQL storage,
the run queue with per-endpoint limits, op concurrency pools; the default run launcher in place of Kubernetes)
runs one partition end to end through Dagster's CLI, and the check-alert sensor walks PostgreSQL's event log.
Skips when PostgreSQL (`initdb`, `pg_ctl`) or dagster-postgres is absent; `.ci/postgres-and-chromium.sh` installs it."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys

import dagster as dg
import pytest
import yaml

from rlx_pipeline.orchestration import jobs
from rlx_pipeline.settings import Settings
from rlx_pipeline_tests.conftest import DATE, PARTITION_KEY, SYMBOL
from rlx_pipeline_tests.operations_servers import ROOT, pg_bin_dir, postgres_server

pytest.importorskip("dagster_postgres")
PG_BIN = pg_bin_dir()


def _no_postgres_reason() -> str | None:
    if PG_BIN is None:
        return "PostgreSQL (initdb, pg_ctl) not installed"
    if (
        os.geteuid() == 0
    ):  # PostgreSQL refuses root: the server runs as the `postgres` user of Debian's package
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and no `postgres` user to run PostgreSQL as"
    return None


pytestmark = pytest.mark.skipif(_no_postgres_reason() is not None, reason=str(_no_postgres_reason()))


def _production_yaml() -> str:
    config = yaml.safe_load((ROOT / "deploy" / "production" / "dagster.yaml").read_text())
    assert config["run_launcher"]["class"] == "K8sRunLauncher"  # the profile as shipped ...
    config["run_launcher"] = {"module": "dagster", "class": "DefaultRunLauncher"}  # ... with no cluster here
    return yaml.safe_dump(config)


@pytest.mark.slow
def test_one_partition_end_to_end_on_postgres(tmp_path, monkeypatch):
    from rlx_pipeline.simulator import SimConfig, simulate

    data, home = tmp_path / "data", tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(_production_yaml())
    settings = Settings.from_env({"RLX_DATA_DIR": str(data), "RLX_LAKE_MIN_HOURS": "1"})
    # a lake day without golden samples: every asset runs, and golden_coverage fails as a warning (an alert)
    simulate(SimConfig(symbol=SYMBOL, start=f"{DATE}T00:00:00Z", duration_s=30, seed=5)).write_lake(
        settings.layout.lake_root
    )

    with postgres_server(PG_BIN) as pg:
        env = {
            "DAGSTER_HOME": str(home),
            "RLX_DATA_DIR": str(data),
            "RLX_EXECUTOR": "in_process",
            "DAGSTER_PG_HOST": pg.host,
            "DAGSTER_PG_PORT": str(pg.port),
            "DAGSTER_PG_DB": pg.db,
            "DAGSTER_PG_USERNAME": pg.user,
            "DAGSTER_PG_PASSWORD": "unused-trust-auth",
        }
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        date, symbol = PARTITION_KEY.split("|")
        tags = {
            "dagster/partition": PARTITION_KEY,
            "dagster/partition/date": date,
            "dagster/partition/symbol": symbol,
        }
        cmd = [sys.executable, "-m", "dagster", "job", "execute", "-m", "rlx_pipeline.definitions"]
        proc = subprocess.run(
            [*cmd, "-j", "daily_pipeline", "--tags", json.dumps(tags)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

        with dg.DagsterInstance.get() as instance:
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
            runs = instance.get_runs()
            assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS]
            assert runs[0].tags["rlx/lake-endpoint"] == "local"
            for asset in ("lake_trades", "validation_report", "unified_stream", "fidelity_report"):
                assert instance.get_materialized_partitions(dg.AssetKey(asset)) == {PARTITION_KEY}, asset

            # the alert sensor over PostgreSQL's event log: the failed check once, and not again after a restart
            monkeypatch.setattr(jobs, "SETTINGS", settings)
            monkeypatch.delenv("RLX_ALERT_WEBHOOK_URL", raising=False)
            ctx = dg.build_sensor_context(instance=instance)
            jobs.check_alerts(ctx)
            alerts = [json.loads(line) for line in settings.layout.alerts_file.read_text().splitlines()]
            assert ("golden_samples", "golden_coverage", PARTITION_KEY) in {
                (a["asset"], a["check"], a["partition"]) for a in alerts
            }
            assert all(a["run_id"] == runs[0].run_id and a["url"].endswith(a["run_id"]) for a in alerts)
            jobs.check_alerts(dg.build_sensor_context(instance=instance, cursor=ctx.cursor))
            assert len(settings.layout.alerts_file.read_text().splitlines()) == len(alerts)
