"""Jobs, the daily schedule (with catch-up) and the check-alert sensor."""

import datetime as dt
import json
import os
import re
import urllib.parse
from pathlib import Path

import dagster as dg
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)

from rlx_pipeline.alerting import Alert, AlertSink
from rlx_pipeline.orchestration.partitions import PARTITIONS, SETTINGS
from rlx_pipeline.settings import SettingsError


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


def sensor_interval_s(value: str | None) -> int:
    """``RLX_SENSOR_INTERVAL_S``: seconds between sensor evaluations (default 60; the daemon loops every 5 s)."""
    if not value:
        return 60
    if not value.isdigit() or int(value) < 1:
        raise SettingsError(f"RLX_SENSOR_INTERVAL_S={value!r}: expected a whole number of seconds >= 1")
    return int(value)


SENSOR_INTERVAL_S = sensor_interval_s(os.environ.get("RLX_SENSOR_INTERVAL_S"))
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


def capture_partitions(path: Path, index: dict, symbols: list[str]) -> list[str]:
    """Partition keys a finished capture file covers (by its index: venue, exchange-time range and symbols)."""
    from rlx_pipeline.formats.capture_file import capture_venue

    first, last = index.get("first_event_ms"), index.get("last_event_ms")
    if first is None or last is None:
        return []
    day = dt.datetime.fromtimestamp(first / 1000, dt.UTC).date()
    end = dt.datetime.fromtimestamp(last / 1000, dt.UTC).date()
    venue = capture_venue(path, index)
    covered = {venue.lake_symbol(s) for s in index.get("symbols", [])} & set(symbols)
    keys = []
    while day <= end:
        keys += [f"{day.isoformat()}|{s}" for s in sorted(covered)]
        day += dt.timedelta(days=1)
    return keys


GOLDEN = dg.AssetKey("golden_samples")
_IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def partitions_in_progress(instance: dg.DagsterInstance) -> set[str]:
    """Partition keys of the runs queued or running now (any job, launched from anywhere)."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=_IN_PROGRESS))
    return {r.tags["dagster/partition"] for r in runs if "dagster/partition" in r.tags}


def golden_version(instance: dg.DagsterInstance, partition: str) -> str | None:
    """The capture-inputs identity (data version) the partition's latest golden_samples was built from."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=GOLDEN, asset_partitions=[partition]), limit=1
    ).records
    return records[0].asset_materialization.tags.get("dagster/data_version") if records else None


def capture_requests(
    instance: dg.DagsterInstance, capture_dir: Path, symbols: list[str], cursor: str | None
) -> tuple[list[dg.RunRequest], list[str], str]:
    """golden_job run requests for the partitions that finished capture files touched since ``cursor`` (plus those
    deferred before), the partitions deferred now (another run is materializing them), and the next cursor.

    A partition whose golden_samples was built from the same capture files (its data version) is not run again;
    the run key is the partition and that identity, so the daemon launches one run per set of inputs.
    """
    from rlx_pipeline.capture.identity import inputs_version
    from rlx_pipeline.formats.capture_file import read_index
    from rlx_pipeline.golden import capture_files_for

    state = json.loads(cursor) if cursor else {}
    since, keys = int(state.get("mtime_ns", 0)), set(state.get("deferred", []))
    newest = since
    for index_file in capture_dir.rglob("*.jsonl.zst.index.json"):
        mtime = index_file.stat().st_mtime_ns
        if mtime > since:
            newest = max(newest, mtime)
            path = Path(str(index_file)[: -len(".index.json")])
            keys.update(capture_partitions(path, read_index(path) or {}, symbols))
    busy = partitions_in_progress(instance) if keys else set()
    requests, deferred = [], []
    for key in sorted(keys):
        date, symbol = key.split("|")
        version = inputs_version(capture_files_for(capture_dir, symbol, date), capture_dir)
        if golden_version(instance, key) == version:
            continue  # already built from exactly these captures
        if key in busy:
            deferred.append(key)  # never alongside another run of the partition: asked again next tick
            continue
        requests.append(dg.RunRequest(run_key=f"{key}@{version}", partition_key=key))
    return requests, deferred, json.dumps({"mtime_ns": newest, "deferred": deferred})


@dg.sensor(
    job=golden_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="New finished capture files -> golden_samples of the days they cover (once per set of inputs).",
)
def new_captures(context: dg.SensorEvaluationContext):
    requests, deferred, cursor = capture_requests(
        context.instance, SETTINGS.layout.capture_dir, list(SETTINGS.symbols), context.cursor
    )
    context.update_cursor(cursor)
    if deferred:
        context.log.info(f"deferred while another run materializes them: {', '.join(deferred)}")
    return requests or dg.SkipReason("no capture file to build")


def _alert(record: AssetCheckExecutionRecord, ui_url: str) -> Alert | None:
    """The alert for a completed check execution that did not pass (its severity says failure or warning)."""
    entry = record.event
    ev = entry.dagster_event.event_specific_data if entry and entry.dagster_event else None
    if ev is None or ev.passed:
        return None
    md = {k: getattr(v, "value", v) for k, v in (ev.metadata or {}).items()}
    value = md.get("value", md.get("score", md.get("coverage", md.get("self_consistency"))))
    threshold = md.get("threshold")
    return Alert(
        asset=ev.asset_key.to_user_string(),
        partition=ev.partition,
        check=ev.check_name,
        severity=ev.severity.value if ev.severity else "ERROR",
        description=ev.description or "",
        value=float(value) if isinstance(value, int | float) else None,
        threshold=float(threshold) if isinstance(threshold, int | float) else None,
        run_id=record.run_id,
        url=f"{ui_url}/runs/{record.run_id}",
        event_id=record.id,
    )


_FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
_PAGE = 200


def new_check_failures(
    instance: dg.DagsterInstance, check_keys: list[dg.AssetCheckKey], cursor: str | None, ui_url: str
) -> tuple[list[Alert], str]:
    """Non-passing check executions not reported before ``cursor``, and the next cursor.

    Reads ``asset_check_executions`` (``get_asset_check_execution_history``), which every instance storage
    supports; the event log's ``get_event_records(after_cursor=...)`` is refused by the default run-sharded
    SQLite storage. An execution row is created when the check is *planned* and completed later, so row ids
    are not in completion order: the cursor keeps a watermark (every row at or below it is resolved: completed,
    or planned in a run that finished without evaluating it) plus the ids above it already reported. A restart
    from the stored cursor neither repeats nor loses an alert.
    """
    state = json.loads(cursor) if cursor else {}
    watermark, reported = int(state.get("watermark", 0)), set(state.get("reported", []))
    rows: list[AssetCheckExecutionRecord] = []
    for key in check_keys:  # newest first, paged down to the watermark
        page_cursor = None
        while True:
            page = instance.event_log_storage.get_asset_check_execution_history(
                key, limit=_PAGE, cursor=page_cursor
            )
            rows += [r for r in page if r.id > watermark]
            if len(page) < _PAGE or page[-1].id <= watermark:
                break
            page_cursor = page[-1].id
    rows.sort(key=lambda r: r.id)
    alerts, pending = [], []
    for r in rows:
        if r.status == AssetCheckExecutionRecordStatus.PLANNED:
            run = instance.get_run_by_id(r.run_id)
            if run is not None and run.status not in _FINISHED:
                pending.append(r.id)
            continue
        if r.id in reported:
            continue
        reported.add(r.id)
        alert = _alert(r, ui_url)
        if alert is not None:
            alerts.append(alert)
    top = rows[-1].id if rows else watermark
    watermark = max(watermark, (min(pending) - 1) if pending else top)
    state = {"watermark": watermark, "reported": sorted(i for i in reported if i > watermark)}
    return alerts, json.dumps(state)


@dg.sensor(
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every non-passing check evaluation, once: to the alerts file, the log and RLX_ALERT_WEBHOOK_URL.",
)
def check_alerts(context: dg.SensorEvaluationContext):
    from rlx_pipeline.definitions import defs  # this module is part of the definitions

    check_keys = sorted(defs.resolve_asset_graph().asset_check_keys, key=str)
    alerts, cursor = new_check_failures(context.instance, check_keys, context.cursor, SETTINGS.ui_url)
    for a in alerts:
        context.log.warning(a.text())
    webhook = os.environ.get("RLX_ALERT_WEBHOOK_URL") or None  # a secret: environment only, never logged
    # recorded before the cursor moves, and recorded once per key: a crash in between repeats nothing
    counts = AlertSink(SETTINGS.layout.alerts_file, webhook).emit(alerts)  # delivery runs in the background
    context.update_cursor(cursor)
    return dg.SkipReason(f"{counts['recorded']} new alert(s); {counts['owed']} webhook delivery(ies) owed")


jobs = [daily_pipeline, golden_job]
schedules = [daily_pipeline_schedule]
sensors = [check_alerts, new_captures]
