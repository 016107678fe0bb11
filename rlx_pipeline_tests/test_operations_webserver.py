"""The web UI's server end to end: dagster-webserver on 127.0.0.1 with a temporary DAGSTER_HOME, one partition of
the daily job launched through Dagster's GraphQL client and its result read back; then the asset graph page in
a real browser (Playwright driving Debian's chromium; skipped when either is absent)."""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest

from rlx_pipeline_tests.conftest import DATE, PARTITION_KEY, SYMBOL
from rlx_pipeline_tests.operations_servers import chromium_path, dagster_webserver, deployment

GROUPS = ("acquisition", "golden", "validation", "reconstruction", "fidelity")


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    from rlx_pipeline.layout import DataLayout
    from rlx_pipeline.simulator import SimConfig, simulate

    root = tmp_path_factory.mktemp("webserver")
    layout = DataLayout(root / "data")
    truth = simulate(SimConfig(symbol=SYMBOL, start=f"{DATE}T00:00:00Z", duration_s=30, seed=3))
    truth.write_lake(layout.lake_root)
    truth.write_capture(layout.capture_dir / "imported" / "sim.jsonl.zst")
    with dagster_webserver(deployment(root), root / "webserver.log") as server:
        server.layout = layout
        yield server


@pytest.mark.slow
def test_graphql_launch_of_one_partition(webserver):
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=webserver.port)
    date, symbol = PARTITION_KEY.split("|")
    run_id = client.submit_job_execution(
        "daily_pipeline",
        tags={
            "dagster/partition": PARTITION_KEY,
            "dagster/partition/date": date,
            "dagster/partition/symbol": symbol,
        },
    )
    deadline = time.monotonic() + 300
    status = None
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id).value
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == "SUCCESS"
    assert (webserver.layout.report_dir("fidelity", DATE, SYMBOL) / "report.json").is_file()
    assert webserver.layout.unified(DATE, SYMBOL).is_file()
    assert webserver.layout.unified_book(DATE, SYMBOL).is_file()


@pytest.mark.slow
def test_asset_graph_page_in_a_browser(webserver, tmp_path):
    chromium = chromium_path()
    if chromium is None:
        pytest.skip("no chromium (Debian package `chromium`; .ci/postgres-and-chromium.sh installs it)")
    playwright = pytest.importorskip("playwright.sync_api")
    import matplotlib.image

    shot = tmp_path / "asset-graph.png"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{webserver.url}/asset-groups", wait_until="domcontentloaded", timeout=60_000)
            skip = page.get_by_role("button", name="Skip")  # Dagster's first-visit community dialog
            with contextlib.suppress(playwright.Error):  # absent once dismissed
                skip.click(timeout=15_000)
            deadline = time.monotonic() + 60
            for group in GROUPS:  # each group in the side tree and as a node of the lineage graph
                while page.get_by_text(group, exact=True).count() < 2:
                    assert time.monotonic() < deadline, f"asset group {group} not drawn"
                    page.wait_for_timeout(250)
            page.wait_for_timeout(1000)  # let the graph's layout settle before the screenshot
            page.screenshot(path=str(shot))
            text = page.inner_text("body")
        finally:
            browser.close()
    assert "Something went wrong" not in text and "Page not found" not in text
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (900, 1400)
    # a rendered graph, not a blank or single-colour error page: many distinct colours
    colours = np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50, len(colours)
