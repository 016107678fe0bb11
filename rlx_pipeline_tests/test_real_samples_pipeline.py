"""The real ETHUSDT capture (../shared/real-samples/hftbacktest) through the whole graph: imported as golden
samples, rendered as Crypto Lake tables, validated, reconstructed and held against itself."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from rlx_pipeline.capture.importers import import_files
from rlx_pipeline.golden.lake_render import render_lake_from_capture
from rlx_pipeline.orchestration.assets import acquisition, fidelity, golden, reconstruction, validation
from rlx_pipeline.orchestration.resources import build_resources
from rlx_pipeline.settings import Settings

_STAGES = (acquisition, golden, validation, reconstruction, fidelity)
ALL = [a for m in _STAGES for a in m.assets] + [c for m in _STAGES for c in m.checks]


@pytest.mark.realdata
def test_real_ethusdt_days_pass_every_check_at_full_fidelity(tmp_path, real_samples):
    settings = Settings.from_env(
        {"RLX_DATA_DIR": str(tmp_path), "RLX_SYMBOLS": "ETH-USDT", "RLX_LAKE_MIN_HOURS": "1"}
    )
    layout = settings.layout
    files = import_files(sorted((real_samples / "hftbacktest").glob("*.gz")), layout.capture_dir / "imported")
    rendered = render_lake_from_capture(files, layout.lake_root)
    assert set(rendered) == {("ETH-USDT", "2024-08-08"), ("ETH-USDT", "2024-08-09")}
    book_ticker_matches = 0
    for date in ("2024-08-08", "2024-08-09"):
        result = dg.materialize(
            ALL,
            partition_key=f"{date}|ETH-USDT",
            resources=build_resources(settings),
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert result.success and all(checks.values()), checks
        report = json.loads((layout.report_dir("fidelity", date, "ETH-USDT") / "report.json").read_text())
        assert report["score"] >= 0.999
        assert report["golden_update_ids_missing_in_recon"] == 0
        book_ticker_matches += report["components"]["book_ticker"]["matched"]
        assert report["components"]["book_ticker"]["value"] == 1.0
    # the README of the samples: best bid/ask equals bookTicker at every shared update id (1,056 of 1,056)
    assert book_ticker_matches == 1056
