"""Jobs, the daily schedule (with catch-up) and the check-alert sensor."""

import datetime as dt
import os
import re
import urllib.parse

import dagster as dg
from dagster import DagsterEventType, EventRecordsFilter

from rlx_pipeline.alerting import Alert, AlertSink
from rlx_pipeline.orchestration.partitions import PARTITIONS, SETTINGS


def executor_from_env(kind: str | None = None) -> dg.ExecutorDefinition:
    """The step executor, chosen by ``RLX_EXECUTOR``: ``multiprocess`` (default: one process per step),
    ``in_process`` (one process per run: small days, tests, CI), or ``k8s`` (one pod per step, needs dagster-k8s)."""
    kind = kind or os.environ.get("RLX_EXECUTOR", "multiprocess")
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "multiprocess":
        return dg.multiprocess_executor
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor  # only in the production image

        return k8s_job_executor
    raise ValueError(f"RLX_EXECUTOR={kind!r}: expected multiprocess, in_process or k8s")


def lake_endpoint(lake_source: str, bucket: str, endpoint_url: str | None = None) -> str:
    """The value of the ``rlx/lake-endpoint`` run tag: runs sharing a download endpoint share its run-queue limit
    (``tag_concurrency_limits`` in ``dagster.yaml``)."""
    if lake_source != "lakeapi":
        return "local"
    host = urllib.parse.urlparse(endpoint_url).netloc if endpoint_url else "s3"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{host}_{bucket}")[:63]


daily_pipeline = dg.define_asset_job(
    "daily_pipeline",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups("catalog", "export"),  # the per-day pipeline
    partitions_def=PARTITIONS,
    executor_def=executor_from_env(),
    tags={
        "rlx/lake-endpoint": lake_endpoint(
            SETTINGS.lake_source, SETTINGS.lake_bucket, os.environ.get("AWS_ENDPOINT_URL")
        )
    },
    description="Every asset of one date x symbol partition: lake downloads to fidelity report.",
)

golden_job = dg.define_asset_job(
    "golden_job",
    selection=dg.AssetSelection.assets("golden_samples"),
    partitions_def=PARTITIONS,
    description="Parse the captures of a day into golden samples (requested when capture files arrive).",
)

CATCHUP_DAYS = 7
LAST_ASSET = dg.AssetKey("fidelity_report")


def due_partitions(
    now: dt.datetime, symbols: list[str], first_day: str, done: set[str], catchup_days: int = CATCHUP_DAYS
) -> list[str]:
    """Partition keys to run at ``now``: yesterday (Crypto Lake publishes a day after it ends) and every earlier
    day of the last ``catchup_days`` whose pipeline never completed, for every symbol; oldest first."""
    yesterday = (now.astimezone(dt.UTC) - dt.timedelta(days=1)).date()
    start = max(dt.date.fromisoformat(first_day), yesterday - dt.timedelta(days=catchup_days - 1))
    keys = []
    day = start
    while day <= yesterday:
        for sym in symbols:
            key = f"{day.isoformat()}|{sym}"
            if key not in done or day == yesterday:
                keys.append(key)
        day += dt.timedelta(days=1)
    return keys


def _hh_mm() -> tuple[int, int]:
    hh, mm = SETTINGS.schedule_utc.split(":")
    return int(hh), int(mm)


@dg.schedule(
    job=daily_pipeline,
    cron_schedule=f"{_hh_mm()[1]} {_hh_mm()[0]} * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily at RLX_SCHEDULE_UTC: yesterday for every symbol, plus missed days of the last week.",
)
def daily_pipeline_schedule(context: dg.ScheduleEvaluationContext):
    now = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
    done = {str(k) for k in context.instance.get_materialized_partitions(LAST_ASSET)}
    keys = due_partitions(now, list(SETTINGS.symbols), SETTINGS.partition_start, done)
    return [dg.RunRequest(run_key=f"{key}@{now:%Y-%m-%d}", partition_key=key) for key in keys]


def capture_partitions(index: dict, symbols: list[str]) -> list[str]:
    """Partition keys a finished capture file covers (by its index: exchange-time range and symbols)."""
    from rlx_pipeline.instruments import to_lake

    first, last = index.get("first_event_ms"), index.get("last_event_ms")
    if first is None or last is None:
        return []
    day = dt.datetime.fromtimestamp(first / 1000, dt.UTC).date()
    end = dt.datetime.fromtimestamp(last / 1000, dt.UTC).date()
    covered = {to_lake(s) for s in index.get("symbols", [])} & set(symbols)
    keys = []
    while day <= end:
        keys += [f"{day.isoformat()}|{s}" for s in sorted(covered)]
        day += dt.timedelta(days=1)
    return keys


@dg.sensor(
    job=golden_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="New finished capture files (their .index.json) -> golden_samples of the days they cover.",
)
def new_captures(context: dg.SensorEvaluationContext):
    from rlx_pipeline.capture.format import read_index

    since = float(context.cursor) if context.cursor else 0.0
    newest = since
    requests = []
    for index_path in sorted(SETTINGS.layout.capture_dir.rglob("*.jsonl.zst.index.json")):
        mtime = index_path.stat().st_mtime
        if mtime <= since:
            continue
        newest = max(newest, mtime)
        capture = str(index_path)[: -len(".index.json")]
        for key in capture_partitions(read_index(capture) or {}, list(SETTINGS.symbols)):
            requests.append(dg.RunRequest(run_key=f"{capture}@{mtime}|{key}", partition_key=key))
    if newest > since:
        context.update_cursor(str(newest))
    return requests or dg.SkipReason("no new capture file")


def _alerts_from_records(records, ui_url: str) -> list[Alert]:
    alerts = []
    for rec in records:
        entry = rec.event_log_entry
        ev = entry.dagster_event.event_specific_data
        if ev is None or ev.passed:
            continue
        md = {k: getattr(v, "value", v) for k, v in (ev.metadata or {}).items()}
        value = md.get("value", md.get("score", md.get("coverage", md.get("self_consistency"))))
        alerts.append(
            Alert(
                asset=ev.asset_key.to_user_string(),
                partition=ev.partition,
                check=ev.check_name,
                severity=ev.severity.value if ev.severity else "ERROR",
                description=ev.description or "",
                value=float(value) if isinstance(value, int | float) else None,
                threshold=float(md["threshold"]) if isinstance(md.get("threshold"), int | float) else None,
                run_id=entry.run_id,
                url=f"{ui_url}/runs/{entry.run_id}",
                event_id=rec.storage_id,
            )
        )
    return alerts


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every failed check evaluation, once: to the alerts file, the log and RLX_ALERT_WEBHOOK_URL.",
)
def check_alerts(context: dg.SensorEvaluationContext):
    after = int(context.cursor) if context.cursor else None
    records = context.instance.get_event_records(
        EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=after),
        limit=500,
        ascending=True,
    )
    alerts = _alerts_from_records(records, SETTINGS.ui_url)
    for a in alerts:
        context.log.warning(a.text())
    webhook = os.environ.get("RLX_ALERT_WEBHOOK_URL") or None  # a secret: environment only, never logged
    counts = AlertSink(SETTINGS.layout.alerts_file, webhook).emit(alerts)  # delivery runs in the background
    if records:
        context.update_cursor(str(records[-1].storage_id))
    return dg.SkipReason(f"{counts['recorded']} new alert(s); {counts['owed']} webhook delivery(ies) owed")


jobs = [daily_pipeline, golden_job]
schedules = [daily_pipeline_schedule]
sensors = [check_alerts, new_captures]
