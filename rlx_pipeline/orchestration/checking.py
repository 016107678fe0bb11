"""Checks run inside their asset's step (``check_specs``), and every outcome persisted in the gate's ledger.

Running a check in the step that built the output is what lets a build be judged before it is served
(``rlx_pipeline.promotion``), and costs no process per check. Dagster fails the step after it yields a failing
blocking check (severity ERROR), so downstream steps of the run are skipped; the ledger
(``rlx_pipeline.gate.record_check``) carries the outcome to later runs and to the read API.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

import dagster as dg

from rlx_pipeline import gate
from rlx_pipeline.orchestration.partitions import PARTITIONS, date_symbol
from rlx_pipeline.orchestration.resources import RlxSettings


def spec(name: str, asset: str, description: str, *, blocking: bool = True) -> dg.AssetCheckSpec:
    """A check of ``asset`` per partition: its evaluations carry the partition key (the UI's partition view, the
    alerts), as the separate partitioned checks did."""
    with (
        warnings.catch_warnings()
    ):  # a preview parameter in Dagster 1.13, the one way to partition an in-step check
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(
            name, asset=asset, blocking=blocking, description=description, partitions_def=PARTITIONS
        )


def record(
    context: dg.AssetExecutionContext,
    rlx: RlxSettings,
    results: Iterable[dg.AssetCheckResult],
    *,
    checked: dict[str, str | None] | None = None,
    rejected: Path | None = None,
) -> list[dg.AssetCheckResult]:
    """Persist each result in the ledger (with what it judged and where a rejected build went) and return the
    results to yield, with ``rejected_path`` in the metadata of the failed ones."""
    date, symbol = date_symbol(context)
    specs = {s.name: s for s in context.assets_def.check_specs}
    out = []
    for r in results:
        s = specs[r.check_name]
        if rejected is not None and not r.passed:
            r = r.with_metadata({**r.metadata, "rejected_path": dg.MetadataValue.path(str(rejected))})
        gate.record_check(
            rlx.layout,
            date,
            symbol,
            gate.CheckRecord(
                check=s.name,
                asset=s.asset_key.to_user_string(),
                passed=bool(r.passed),
                severity=r.severity.value,
                blocking=s.blocking,
                description=r.description or "",
                run_id=context.run_id,
                checked=checked or {},
                rejected_path=str(rejected) if rejected is not None and not r.passed else None,
            ),
        )
        out.append(r)
    return out


def record_unjudged(context: dg.AssetExecutionContext, rlx: RlxSettings, exc: BaseException) -> None:
    """The build failed before its checks could judge it (e.g. an unreadable source day): record each of the
    asset's checks as failed, so the gate does not go on trusting the previous outcome."""
    date, symbol = date_symbol(context)
    for s in context.assets_def.check_specs:
        gate.record_check(
            rlx.layout,
            date,
            symbol,
            gate.CheckRecord(
                check=s.name,
                asset=s.asset_key.to_user_string(),
                passed=False,
                blocking=s.blocking,
                description=f"the build failed before it could be judged: {type(exc).__name__}: {exc}",
                run_id=context.run_id,
            ),
        )


def failed(results: Iterable[dg.AssetCheckResult], specs: Iterable[dg.AssetCheckSpec]) -> bool:
    """Any blocking check failed with severity ERROR (what keeps a build from being served)."""
    blocking = {s.name for s in specs if s.blocking}
    return any(
        r.check_name in blocking and not r.passed and r.severity == dg.AssetCheckSeverity.ERROR
        for r in results
    )
