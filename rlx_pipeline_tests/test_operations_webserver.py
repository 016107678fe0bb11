"""The web UI's server end to end: dagster-webserver on 127.0.0.1 with a temporary DAGSTER_HOME, one partition of
the daily job launched through Dagster's GraphQL client, and its result read back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rlx_pipeline_tests.lake_fixtures import free_port

DAGSTER_YAML = """\
storage:
  sqlite:
    base_dir: {base}
run_coordinator:
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""


@pytest.mark.slow
def test_graphql_launch_of_one_partition(tmp_path):
    from dagster_graphql import DagsterGraphQLClient

    from rlx_pipeline.layout import DataLayout
    from rlx_pipeline.simulator import SimConfig, simulate

    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML.format(base=home / "storage"))
    layout = DataLayout(data)
    truth = simulate(SimConfig(duration_s=60, seed=3))
    truth.write_lake(layout.lake_root)
    truth.write_capture(layout.capture_dir / "imported" / "sim.jsonl.zst")

    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "RLX_DATA_DIR": str(data)}
    root = Path(__file__).resolve().parents[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster_webserver",
            "-m",
            "rlx_pipeline.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                assert server.poll() is None, "dagster-webserver exited"
                assert time.monotonic() < deadline, "dagster-webserver did not come up"
                time.sleep(1)
        client = DagsterGraphQLClient("127.0.0.1", port_number=port)
        run_id = client.submit_job_execution(
            "daily_pipeline",
            tags={
                "dagster/partition": "2024-08-09|BTC-USDT",
                "dagster/partition/date": "2024-08-09",
                "dagster/partition/symbol": "BTC-USDT",
            },
        )
        deadline = time.monotonic() + 400
        status = None
        while time.monotonic() < deadline:
            status = client.get_run_status(run_id).value
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                break
            time.sleep(2)
        assert status == "SUCCESS"
        assert (layout.report_dir("fidelity", "2024-08-09", "BTC-USDT") / "report.json").is_file()
    finally:
        server.terminate()
        server.wait(timeout=30)
