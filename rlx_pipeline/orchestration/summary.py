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


def _failure_line(event: dg.DagsterEvent) -> str:
    """A failed step's one-line reason: the Failure's description, else the error's first line."""
    data = event.step_failure_data
    user = data.user_failure_data if data else None
    if user is not None and user.description:
        return user.description
    return (data.error.message.strip().splitlines() or [""])[0] if data and data.error else ""


def run_partitions(
    partition_keys: list[str], echo: Callable[[str], None] = print, verbose: bool = False
) -> bool:
    """Materialize every asset (and its checks) of each partition; True when every run succeeded. Dagster's own
    logs go to stderr only with ``verbose`` (the summary says what happened)."""
    import warnings

    run_config = {} if verbose else {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    with warnings.catch_warnings():
        if not verbose:
            warnings.simplefilter("ignore")  # Dagster's preview notices
        from rlx_pipeline.definitions import defs

        job = defs.resolve_job_def("daily_pipeline")
        with dg.DagsterInstance.get() as instance:
            return all([_run_one(job, instance, key, run_config, echo) for key in partition_keys])


def _run_one(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    key: str,
    run_config: dict,
    echo: Callable[[str], None],
) -> bool:
    echo(f"\n== {key}: materializing every asset (Dagster run on {instance.root_directory})")
    result = job.execute_in_process(
        partition_key=key, instance=instance, raise_on_error=False, run_config=run_config
    )
    echo(f"run {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'}")
    for event in result.get_asset_materialization_events():
        asset = event.materialization.asset_key.to_user_string()
        echo(f"  materialized {asset:20} {_rows(event)}")
    for ev in result.get_asset_check_evaluations():
        warn = ev.severity == dg.AssetCheckSeverity.WARN
        status = "passed" if ev.passed else ("warning" if warn else "FAILED")
        desc = f" - {ev.description}" if ev.description else ""
        echo(f"  check {ev.asset_key.to_user_string()}.{ev.check_name:28} {status}{desc}"[:240])
    for ev in result.all_events:
        if ev.is_step_skipped or ev.is_step_failure:
            what = "skipped (blocked upstream)" if ev.is_step_skipped else f"FAILED: {_failure_line(ev)}"
            echo(f"  step {ev.step_key}: {what}")
    return result.success
