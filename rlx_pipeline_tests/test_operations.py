"""Operations: the daily schedule with catch-up, and the check-alert sensor (once per failure, restart-safe,
webhook down survived) against a real HTTP server."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading

import dagster as dg
import pytest

from rlx_pipeline.alerting import Alert, AlertSink
from rlx_pipeline.orchestration import jobs
from rlx_pipeline.orchestration.assets import golden
from rlx_pipeline.settings import Settings
from rlx_pipeline_tests.lake_fixtures import free_port
from rlx_pipeline_tests.operations_servers import webhook_server


def test_due_partitions_yesterday_and_missed_days():
    now = dt.datetime(2024, 8, 12, 3, 0, tzinfo=dt.UTC)
    done = {"2024-08-09|BTC-USDT", "2024-08-10|BTC-USDT", "2024-08-10|ETH-USDT"}
    keys = jobs.due_partitions(now, ["BTC-USDT", "ETH-USDT"], "2024-08-09", done, catchup_days=7)
    assert keys == ["2024-08-09|ETH-USDT", "2024-08-11|BTC-USDT", "2024-08-11|ETH-USDT"]


def test_schedule_requests_yesterday_and_catches_up_missed_days():
    from rlx_pipeline.definitions import defs

    assert jobs.SETTINGS.symbols == ("BTC-USDT", "ETH-USDT")  # the defaults (RLX_SYMBOLS unset)
    hh, mm = jobs.SETTINGS.schedule_hour_minute
    assert jobs.daily_pipeline_schedule.cron_schedule == f"{mm} {hh} * * *"
    assert jobs.daily_pipeline_schedule.execution_timezone == "UTC"
    assert jobs.daily_pipeline_schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    when = dt.datetime(2024, 8, 12, hh, mm, tzinfo=dt.UTC)
    with dg.instance_for_test() as instance:
        # the pipeline completed (fidelity_report) for every day and symbol since 2024-08-01, except three
        missed = {"2024-08-07|BTC-USDT", "2024-08-09|ETH-USDT", "2024-08-10|BTC-USDT"}
        for day in range(1, 11):
            for sym in ("BTC-USDT", "ETH-USDT"):
                key = f"2024-08-{day:02d}|{sym}"
                if key not in missed:
                    instance.report_runless_asset_event(
                        dg.AssetMaterialization(jobs.LAST_ASSET, partition=key)
                    )

        def evaluate():
            ctx = dg.build_schedule_context(
                instance=instance, scheduled_execution_time=when, repository_def=defs.get_repository_def()
            )
            return jobs.daily_pipeline_schedule.evaluate_tick(ctx).run_requests

        requests = evaluate()
        assert [r.partition_key for r in requests] == [
            "2024-08-07|BTC-USDT",  # missed days of the last week, oldest first
            "2024-08-09|ETH-USDT",
            "2024-08-10|BTC-USDT",
            "2024-08-11|BTC-USDT",  # yesterday, for every symbol
            "2024-08-11|ETH-USDT",
        ]
        assert all(r.run_key.endswith("@2024-08-12") for r in requests)
        # the same tick evaluated again (a daemon restart) asks for the same run keys: the daemon launches them once
        assert [r.run_key for r in evaluate()] == [r.run_key for r in requests]


@pytest.fixture
def webhook():
    with webhook_server() as hook:
        yield hook


def test_alert_sensor_sends_each_failure_once(tmp_path, monkeypatch, webhook):
    url, received = webhook
    settings = Settings.from_env({"RLX_DATA_DIR": str(tmp_path), "RLX_LAKE_MIN_HOURS": "1"})
    monkeypatch.setattr(jobs, "SETTINGS", settings)
    monkeypatch.setenv("RLX_ALERT_WEBHOOK_URL", url)
    from rlx_pipeline.orchestration.resources import RlxSettings

    instance = dg.DagsterInstance.ephemeral()
    for _ in range(2):  # two runs, each with two non-passing (warning) golden checks: no capture at all
        dg.materialize(
            golden.assets + golden.checks,
            partition_key="2024-08-09|BTC-USDT",
            resources={"rlx": RlxSettings.from_settings(settings)},
            instance=instance,
        )
    ctx = dg.build_sensor_context(instance=instance)
    jobs.check_alerts(ctx)
    AlertSink(settings.layout.alerts_file, url).join(timeout=30)  # the webhook is posted in the background
    alerts = [json.loads(line) for line in settings.layout.alerts_file.read_text().splitlines()]
    assert sorted((a["check"], a["partition"], a["severity"]) for a in alerts) == sorted(
        [(c, "2024-08-09|BTC-USDT", "WARN") for c in ("golden_coverage", "golden_integrity")] * 2
    )
    assert len({a["run_id"] for a in alerts}) == 2 and len(received) == 4
    assert all(a["url"].endswith(a["run_id"]) for a in alerts)
    # a warning reads as one, not as a failure
    assert all("did not pass (warning)" in r["text"] and "FAILED" not in r["text"] for r in received)
    # a restart: a new context from the stored cursor sees nothing new
    again = dg.build_sensor_context(instance=instance, cursor=ctx.cursor)
    jobs.check_alerts(again)
    # a tick whose cursor was lost (a crash before the daemon stored it) records and sends nothing twice
    jobs.check_alerts(dg.build_sensor_context(instance=instance))
    AlertSink(settings.layout.alerts_file, url).join(timeout=30)
    assert len(settings.layout.alerts_file.read_text().splitlines()) == 4 and len(received) == 4


def _alert(i: int) -> Alert:
    return Alert(
        "a", "2024-08-09|BTC-USDT", "c", "ERROR", "d", 0.5, 0.1, f"run{i}", f"http://ui/runs/run{i}", i
    )


def test_webhook_down_is_retried_with_backoff(tmp_path, webhook):
    url, received = webhook
    dead = f"http://127.0.0.1:{free_port()}/hook"
    sink = AlertSink(tmp_path / "alerts.jsonl", dead)
    sink.record([_alert(1)])
    assert sink.deliver_due(now=1000.0) == {"delivered": 0, "owed": 1}
    assert sink.owed()[0]["attempts"] == 1 and "refused" in sink.owed()[0]["last_error"].lower()
    sink.webhook_url = url  # the webhook comes back (same outbox)
    assert sink.deliver_due(now=1001.0) == {"delivered": 0, "owed": 1}  # still backing off (5 s)
    assert received == []
    assert sink.deliver_due(now=1010.0) == {"delivered": 1, "owed": 0}
    assert len(received) == 1 and received[0]["rlx"]["event_id"] == 1
    assert (
        len((tmp_path / "alerts.jsonl").read_text().splitlines()) == 1
    )  # recorded once, whatever the webhook did


class _SlowHook(http.server.BaseHTTPRequestHandler):
    """Holds every request until the test releases it: a webhook that hangs."""

    entered = threading.Event()
    release = threading.Event()
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _SlowHook.entered.set()
        _SlowHook.release.wait(30)
        _SlowHook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_emit_returns_while_the_webhook_hangs(tmp_path):
    _SlowHook.entered.clear()
    _SlowHook.release.clear()
    _SlowHook.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _SlowHook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sink = AlertSink(tmp_path / "alerts.jsonl", f"http://127.0.0.1:{server.server_port}/hook")
        counts = sink.emit([_alert(7)])  # returns before the webhook answers
        assert counts == {"recorded": 1, "owed": 1}
        assert _SlowHook.entered.wait(10)
        assert _SlowHook.received == [] and len(sink.owed()) == 1  # the post is still in flight
        sink.emit([_alert(8)])  # a second tick while the first post hangs: recorded, not blocked
        assert len(sink.owed()) == 2
        _SlowHook.release.set()
        sink.join(timeout=30)
        # the first post succeeded on its first attempt (a blocking caller would have timed out on it)
        assert [r["rlx"]["event_id"] for r in _SlowHook.received] == [7]
        assert [o["payload"]["rlx"]["event_id"] for o in sink.owed()] == [8] and sink.owed()[0][
            "attempts"
        ] == 0
        sink.emit([])  # the next tick delivers what is still owed
        sink.join(timeout=30)
        assert [r["rlx"]["event_id"] for r in _SlowHook.received] == [7, 8] and sink.owed() == []
    finally:
        _SlowHook.release.set()
        server.shutdown()


def test_new_captures_once_per_inputs_and_never_alongside_another_run(tmp_path, monkeypatch):
    from rlx_pipeline.capture.identity import inputs_version
    from rlx_pipeline.definitions import defs
    from rlx_pipeline.orchestration.resources import RlxSettings
    from rlx_pipeline.simulator import SimConfig, simulate

    key = "2024-08-09|BTC-USDT"
    settings = Settings.from_env({"RLX_DATA_DIR": str(tmp_path), "RLX_LAKE_MIN_HOURS": "1"})
    monkeypatch.setattr(jobs, "SETTINGS", settings)
    captures = settings.layout.capture_dir / "imported"
    a = simulate(SimConfig(duration_s=5)).write_capture(captures / "a.jsonl.zst")
    with dg.instance_for_test() as instance:

        def tick(cursor=None):
            ctx = dg.build_sensor_context(
                instance=instance, cursor=cursor, repository_def=defs.get_repository_def()
            )
            return jobs.new_captures.evaluate_tick(ctx)

        first = tick()
        version_a = inputs_version([a], settings.layout.capture_dir)
        assert [(r.partition_key, r.run_key) for r in first.run_requests] == [(key, f"{key}@{version_a}")]
        assert tick().run_requests[0].run_key == f"{key}@{version_a}"  # same inputs, same key: launched once
        assert tick(first.cursor).run_requests == []  # nothing new since the cursor

        # golden_samples already built from these captures (the demo does it): a fresh sensor launches nothing
        dg.materialize(
            golden.assets + golden.checks,
            partition_key=key,
            resources={"rlx": RlxSettings.from_settings(settings)},
            instance=instance,
        )
        assert jobs.golden_version(instance, key) == version_a
        assert tick().run_requests == []

        # a new capture of the day while another run materializes the partition: deferred, then requested
        other = instance.add_run(
            dg.DagsterRun(
                job_name="daily_pipeline", status=dg.DagsterRunStatus.STARTED, tags={"dagster/partition": key}
            )
        )
        b = simulate(SimConfig(duration_s=5, seed=9)).write_capture(captures / "b.jsonl.zst")
        busy = tick(first.cursor)
        assert busy.run_requests == [] and json.loads(busy.cursor)["deferred"] == [key]
        instance.report_run_canceled(other)
        done = tick(busy.cursor)
        version_ab = inputs_version([a, b], settings.layout.capture_dir)
        assert version_ab != version_a
        assert [(r.partition_key, r.run_key) for r in done.run_requests] == [(key, f"{key}@{version_ab}")]
        assert json.loads(done.cursor)["deferred"] == []


def test_a_malformed_webhook_url_is_retried_with_backoff_and_never_logged(tmp_path, caplog):
    secret = "hooks.example.com/services/T0/B0/s3cr3t"  # no scheme: urllib raises ValueError quoting it
    sink = AlertSink(tmp_path / "alerts.jsonl", secret)
    sink.record([_alert(1)])
    assert sink.deliver_due(now=1000.0) == {"delivered": 0, "owed": 1}
    owed = sink.owed()[0]
    assert (owed["attempts"], owed["next"]) == (1, 1005.0)
    assert owed["last_error"] == "RLX_ALERT_WEBHOOK_URL is not an http(s) URL with a host"
    assert sink.deliver_due(now=1001.0) == {"delivered": 0, "owed": 1}  # backing off: no attempt
    assert sink.owed()[0]["attempts"] == 1
    sink.emit([])
    sink.join(timeout=30)
    assert "s3cr3t" not in (tmp_path / "outbox.json").read_text() + caplog.text


def test_an_error_from_the_webhook_is_stored_without_the_url(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/services/s3cr3t"
    sink = AlertSink(tmp_path / "alerts.jsonl", dead)
    sink.record([_alert(1)])
    sink.deliver_due(now=0.0)
    assert "s3cr3t" not in (tmp_path / "outbox.json").read_text()
    assert sink.owed()[0]["last_error"].startswith("URLError: ")


def test_an_alert_is_recorded_once_whatever_the_caller_repeats(tmp_path, webhook):
    url, received = webhook
    sink = AlertSink(tmp_path / "alerts.jsonl", url)
    assert [a.event_id for a in sink.record([_alert(1), _alert(2)])] == [1, 2]
    assert sink.record([_alert(2), _alert(3)]) == [_alert(3)]
    assert sink.deliver_due(now=0.0) == {"delivered": 3, "owed": 0}
    assert sink.deliver_due(now=100.0) == {"delivered": 0, "owed": 0}
    assert sorted(r["rlx"]["event_id"] for r in received) == [1, 2, 3]


def test_sensor_interval_setting():
    from rlx_pipeline.settings import SettingsError

    assert (jobs.sensor_interval_s(None), jobs.sensor_interval_s("5")) == (60, 5)
    for bad in ("0", "-1", "1.5", "soon"):
        with pytest.raises(SettingsError, match=f"RLX_SENSOR_INTERVAL_S='{bad}'"):
            jobs.sensor_interval_s(bad)
