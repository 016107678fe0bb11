"""Validation report and the blocking checks that gate reconstruction."""

import dagster as dg

from rlx_pipeline.orchestration.partitions import PARTITIONS
from rlx_pipeline.orchestration.resources import RlxSettings


@dg.asset(
    partitions_def=PARTITIONS,
    group_name="validation",
    deps=["lake_trades", "lake_book", "lake_book_delta", "golden_samples"],
    kinds={"parquet"},
)
def validation_report(context: dg.AssetExecutionContext, rlx: RlxSettings) -> dg.MaterializeResult:
    raise NotImplementedError("validation_report is not implemented yet (issue 6)")


@dg.asset_check(asset=validation_report, blocking=True, partitions_def=PARTITIONS)
def validation_report_ok(context: dg.AssetCheckExecutionContext, rlx: RlxSettings) -> dg.AssetCheckResult:
    raise NotImplementedError("the checks of validation_report are not implemented yet (issue 6)")


assets = [validation_report]
checks = [validation_report_ok]
