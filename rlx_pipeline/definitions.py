"""The Dagster code location: read it as the pipeline's table of contents.

lake_trades, lake_book, lake_book_delta   (acquisition)    Crypto Lake day files, staged and checked
golden_samples                            (golden)         raw Binance captures, parsed and checked
validation_report                         (validation)     K-S, power-law, gaps, origin_time -> verdict
unified_stream                            (reconstruction) book rebuilt from snapshot + deltas, with trades
fidelity_report                           (fidelity)       the reconstruction against the golden samples
day_catalog, hftbacktest_export           (catalog, export) which days are usable; an optional hftbacktest file
"""

from __future__ import annotations

import dagster as dg

from rlx_pipeline.orchestration import jobs
from rlx_pipeline.orchestration.assets import acquisition, fidelity, golden, reconstruction, validation
from rlx_pipeline.orchestration.assets import catalog as catalog_assets
from rlx_pipeline.orchestration.partitions import SETTINGS
from rlx_pipeline.orchestration.resources import build_resources

_stages = (acquisition, golden, validation, reconstruction, fidelity, catalog_assets)

defs = dg.Definitions(
    assets=[a for m in _stages for a in m.assets],
    asset_checks=[c for m in _stages for c in m.checks],
    jobs=jobs.jobs,
    schedules=jobs.schedules,
    sensors=jobs.sensors + [s for m in _stages for s in getattr(m, "sensors", [])],
    resources=build_resources(SETTINGS),
    # every run, `dagster asset materialize` (the implicit asset job) included, executes by RLX_EXECUTOR
    executor=jobs.executor_from_env(),
)
