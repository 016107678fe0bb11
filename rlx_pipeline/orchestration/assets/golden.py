"""Golden samples: raw Binance captures parsed into typed tables."""

import dagster as dg

from rlx_pipeline.orchestration.partitions import PARTITIONS
from rlx_pipeline.orchestration.resources import RlxSettings


@dg.asset(partitions_def=PARTITIONS, group_name="golden", deps=[], kinds={"parquet"})
def golden_samples(context: dg.AssetExecutionContext, rlx: RlxSettings) -> dg.MaterializeResult:
    raise NotImplementedError("golden_samples is not implemented yet (issue 5)")


@dg.asset_check(asset=golden_samples, blocking=True, partitions_def=PARTITIONS)
def golden_samples_ok(context: dg.AssetCheckExecutionContext, rlx: RlxSettings) -> dg.AssetCheckResult:
    raise NotImplementedError("the checks of golden_samples are not implemented yet (issue 5)")


assets = [golden_samples]
checks = [golden_samples_ok]
