"""Unified stream: the reconstructed book merged with trades."""

import dagster as dg

from rlx_pipeline.orchestration.partitions import PARTITIONS
from rlx_pipeline.orchestration.resources import RlxSettings


@dg.asset(
    partitions_def=PARTITIONS,
    group_name="reconstruction",
    deps=["lake_trades", "lake_book", "lake_book_delta", "validation_report"],
    kinds={"parquet"},
)
def unified_stream(context: dg.AssetExecutionContext, rlx: RlxSettings) -> dg.MaterializeResult:
    raise NotImplementedError("unified_stream is not implemented yet (issue 7)")


@dg.asset_check(asset=unified_stream, blocking=True, partitions_def=PARTITIONS)
def unified_stream_ok(context: dg.AssetCheckExecutionContext, rlx: RlxSettings) -> dg.AssetCheckResult:
    raise NotImplementedError("the checks of unified_stream are not implemented yet (issue 7)")


assets = [unified_stream]
checks = [unified_stream_ok]
