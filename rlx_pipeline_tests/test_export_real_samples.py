"""The real ETHUSDT capture (../shared/real-samples/hftbacktest) through the pipeline, then exported: hftbacktest's
backtest loop replays each day's .npz to the unified stream's book and trades, and hftbacktest's Tardis converter
on the Tardis export gives the same array as the direct export."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pytest

from rlx_pipeline.capture.importers import import_files
from rlx_pipeline.catalog import read_catalog
from rlx_pipeline.export import export_hftbacktest, export_tardis
from rlx_pipeline.golden.lake_render import render_lake_from_capture
from rlx_pipeline.orchestration.assets import acquisition, fidelity, golden, reconstruction, validation
from rlx_pipeline.orchestration.resources import build_resources
from rlx_pipeline.settings import Settings
from rlx_pipeline_tests.conftest import SHORT_DAY_HOURS
from rlx_pipeline_tests.hftbacktest_replay import compare

_STAGES = (acquisition, golden, validation, reconstruction, fidelity)
ALL = [a for m in _STAGES for a in m.assets] + [c for m in _STAGES for c in m.checks]
DAYS = ("2024-08-08", "2024-08-09")


@pytest.mark.realdata
def test_real_days_export_to_hftbacktest_and_tardis_exactly(tmp_path, real_samples):
    from hftbacktest.data.utils.tardis import convert

    settings = Settings.from_env(
        {"RLX_DATA_DIR": str(tmp_path), "RLX_SYMBOLS": "ETH-USDT", "RLX_LAKE_MIN_HOURS": SHORT_DAY_HOURS}
    )
    layout = settings.layout
    files = import_files(sorted((real_samples / "hftbacktest").glob("*.gz")), layout.capture_dir / "imported")
    render_lake_from_capture(files, layout.lake_root)
    for date in DAYS:
        result = dg.materialize(
            ALL,
            partition_key=f"{date}|ETH-USDT",
            resources=build_resources(settings),
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
        assert result.success
    assert read_catalog(tmp_path, ["ETH-USDT"])["status"].to_list() == ["usable", "usable"]
    counts = {}
    for date in DAYS:
        res = export_hftbacktest(tmp_path, "ETH-USDT", date, date, tmp_path / f"{date}.npz")
        c = compare(layout.unified(date, "ETH-USDT"), layout.unified_book(date, "ETH-USDT"), res.path, "ETH-USDT",
                    res.local_offset_ns)  # fmt: skip
        tr = export_tardis(tmp_path, "ETH-USDT", date, date, tmp_path / "tardis")
        converted = convert([str(tr.files[1]), str(tr.files[0])])
        direct = np.load(export_hftbacktest(tmp_path, "ETH-USDT", date, date, tmp_path / "us.npz",
                                            timestamp_unit="us").path)["data"]  # fmt: skip
        assert len(direct) == len(converted)
        for field in direct.dtype.names:
            assert np.array_equal(direct[field], converted[field]), (date, field)
        counts[date] = {**c, "rows": res.rows, "snapshots": res.feed.snapshots,
                        "correction_rows": res.feed.correction_rows, "local_offset_ns": res.local_offset_ns}  # fmt: skip
        assert c["trades"] > 1000 and c["compared_steps"] > 1000
    print(counts)
