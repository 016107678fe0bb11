"""Jobs, schedules and sensors (issue 8 completes them)."""

from __future__ import annotations

import dagster as dg

from rlx_pipeline.orchestration.partitions import PARTITIONS

daily_pipeline = dg.define_asset_job(
    "daily_pipeline",
    selection=dg.AssetSelection.all(),
    partitions_def=PARTITIONS,
    description="Every asset of one date x symbol partition: lake downloads to fidelity report.",
)

jobs = [daily_pipeline]
schedules: list = []
sensors: list = []
