"""A backfill's summary, per partition: its latest run's status, what materialized, which checks failed and which
steps were blocked. Usable from a notebook or as ``python -m rlx_pipeline.orchestration.backfills BACKFILL_ID``
(on the instance of ``DAGSTER_HOME``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import dagster as dg
from dagster import DagsterEventType


@dataclass
class PartitionOutcome:
    partition: str
    run_id: str
    status: str
    materialized: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    failed_steps: list[str] = field(default_factory=list)
    blocked: list[str] = field(
        default_factory=list
    )  # steps that never ran: an upstream failure or a failed check


def backfill_summary(instance: dg.DagsterInstance, backfill_id: str) -> list[PartitionOutcome]:
    """One row per partition of the backfill (its latest run), sorted by partition key."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    latest: dict[str, dg.DagsterRun] = {}
    for run in runs:  # newest first
        latest.setdefault(run.tags.get("dagster/partition", "?"), run)
    out = []
    for key in sorted(latest):
        run = latest[key]
        row = PartitionOutcome(key, run.run_id, run.status.value)
        kinds = {
            DagsterEventType.ASSET_MATERIALIZATION,
            DagsterEventType.ASSET_CHECK_EVALUATION,
            DagsterEventType.STEP_START,
            DagsterEventType.STEP_FAILURE,
        }
        started = set()
        for entry in instance.all_logs(run.run_id, of_type=kinds):
            ev = entry.dagster_event
            if ev.event_type == DagsterEventType.ASSET_MATERIALIZATION:
                row.materialized.append(ev.asset_key.to_user_string())
            elif ev.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
                data = ev.event_specific_data
                if not data.passed:
                    row.failed_checks.append(f"{data.asset_key.to_user_string()}.{data.check_name}")
            elif ev.event_type == DagsterEventType.STEP_START:
                started.add(ev.step_key)
            else:
                row.failed_steps.append(ev.step_key)
        plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        if run.is_finished:  # a step that never started was blocked (the executors differ in reporting skips)
            row.blocked = sorted(s.key for s in plan.steps if s.key not in started)
        out.append(row)
    return out


def format_summary(rows: list[PartitionOutcome]) -> str:
    """A markdown table, one line per partition."""
    lines = [
        "| partition | status | materialized | failed checks | failed steps | blocked steps |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.partition.replace('|', chr(92) + '|')} | {r.status} | {len(r.materialized)} | {', '.join(r.failed_checks) or '-'} "
            f"| {', '.join(r.failed_steps) or '-'} | {', '.join(r.blocked) or '-'} |"
        )
    ok = sum(r.status == "SUCCESS" for r in rows)
    lines.append(f"\n{ok} of {len(rows)} partition(s) succeeded.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m rlx_pipeline.orchestration.backfills BACKFILL_ID", file=sys.stderr)
        return 2
    with dg.DagsterInstance.get() as instance:
        print(format_summary(backfill_summary(instance, args[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
