"""Run the daily job for partitions in this process, on the current Dagster instance, and summarize it.

Used by ``rlx-pipeline demo``; the runs land in ``DAGSTER_HOME``'s instance, so ``dagster dev`` shows them.
"""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg


def _rows(event: dg.DagsterEvent) -> str:
    md = event.materialization.metadata
    for key in ("dagster/row_count", "rows"):
        if key in md:
            return f"{md[key].value:,} rows"
    return ""


def run_partitions(partition_keys: list[str], echo: Callable[[str], None] = print) -> bool:
    """Materialize every asset (and its checks) of each partition; True when every run succeeded."""
    from rlx_pipeline.definitions import defs

    job = defs.resolve_job_def("daily_pipeline")
    ok = True
    with dg.DagsterInstance.get() as instance:
        for key in partition_keys:
            echo(f"\n== {key}: materializing every asset (Dagster run on {instance.root_directory})")
            result = job.execute_in_process(partition_key=key, instance=instance, raise_on_error=False)
            echo(f"run {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'}")
            for event in result.get_asset_materialization_events():
                key = event.materialization.asset_key.to_user_string()
                echo(f"  materialized {key:20} {_rows(event)}")
            for ev in result.get_asset_check_evaluations():
                status = "passed" if ev.passed else "FAILED"
                desc = f" - {ev.description}" if ev.description else ""
                echo(f"  check {ev.asset_key.to_user_string()}.{ev.check_name:28} {status}{desc}"[:200])
            for ev in result.all_events:
                if ev.is_step_skipped or ev.is_step_failure:
                    what = "skipped (blocked upstream)" if ev.is_step_skipped else "FAILED"
                    echo(f"  step {ev.step_key}: {what}")
            ok = ok and result.success
    return ok
