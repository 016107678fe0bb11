"""Check alerts: one record per failed check evaluation, to a JSONL file, the log, and a Slack-compatible webhook.

Delivery never blocks the caller: ``AlertSink.emit`` appends to the alerts file and to an outbox file under
``RLX_DATA_DIR``, then hands the outbox to a background thread (one per outbox) that posts what is due, one attempt
each with a short timeout. A failed delivery stays in the outbox with exponential backoff and is retried by a later
``emit`` (the sensor calls it on every tick), so a webhook that is down or hangs, or a restart, loses nothing.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from rlx_pipeline import storage

TIMEOUT_S = 10.0  # in the background: a slow webhook costs no sensor time
BACKOFF_S = (5, 15, 60, 300, 900)

# One lock for the outbox file and one deliverer per outbox, shared by every AlertSink of this process.
_outbox_locks: dict[Path, threading.Lock] = {}
_deliver_locks: dict[Path, threading.Lock] = {}
_workers: dict[Path, threading.Thread] = {}
_registry_lock = threading.Lock()


def _locks(path: Path) -> tuple[threading.Lock, threading.Lock]:
    with _registry_lock:
        return (
            _outbox_locks.setdefault(path, threading.Lock()),
            _deliver_locks.setdefault(path, threading.Lock()),
        )


@dataclass(frozen=True)
class Alert:
    asset: str
    partition: str | None
    check: str
    severity: str
    description: str
    value: float | None
    threshold: float | None
    run_id: str
    url: str
    event_id: int

    def text(self) -> str:
        value = "" if self.value is None else f" value={self.value:.6g}"
        limit = "" if self.threshold is None else f" threshold={self.threshold:.6g}"
        return (
            f":rotating_light: check `{self.check}` on `{self.asset}` [{self.partition}] FAILED ({self.severity})"
            f"{value}{limit}: {self.description} <{self.url}|run {self.run_id[:8]}>"
        )

    def slack_payload(self) -> dict:
        return {"text": self.text(), "rlx": asdict(self)}


def _append_line(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:  # one write per line: appends do not interleave
        f.write(json.dumps(obj, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def post_json(url: str, payload: dict, timeout: float = TIMEOUT_S) -> None:
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - URL from the operator's settings
        if resp.status >= 300:
            raise urllib.error.HTTPError(url, resp.status, "webhook refused", resp.headers, None)


class AlertSink:
    """``alerts.jsonl`` (every alert), ``outbox.json`` (webhook deliveries still owed)."""

    def __init__(self, alerts_file: Path, webhook_url: str | None) -> None:
        self.alerts_file = Path(alerts_file)
        self.outbox = self.alerts_file.with_name("outbox.json")
        self.webhook_url = webhook_url
        self._outbox_lock, self._deliver_lock = _locks(self.outbox.resolve())

    def _load_outbox(self) -> list[dict]:
        return json.loads(self.outbox.read_text()) if self.outbox.is_file() else []

    def owed(self) -> list[dict]:
        """Deliveries still owed to the webhook (oldest first)."""
        with self._outbox_lock:
            return self._load_outbox()

    def record(self, alerts: list[Alert]) -> None:
        """Append ``alerts`` to the alerts file and, with a webhook, to the outbox (no network)."""
        for a in alerts:
            _append_line(self.alerts_file, asdict(a))
        if self.webhook_url and alerts:
            with self._outbox_lock:
                items = self._load_outbox()
                items += [
                    {"id": uuid.uuid4().hex, "payload": a.slack_payload(), "attempts": 0, "next": 0.0}
                    for a in alerts
                ]
                storage.write_json(self.outbox, items)

    def deliver_due(self, now: float | None = None) -> dict[str, int]:
        """Post every owed delivery that is due (one attempt each), in this thread; returns counts."""
        if not self.webhook_url:
            return {"delivered": 0, "owed": 0}
        with self._deliver_lock:
            now = time.time() if now is None else now
            due = [item for item in self.owed() if item["next"] <= now]
            done: set[str] = set()
            failed: dict[str, str] = {}
            for item in due:  # the network, outside the outbox lock: record() never waits for it
                try:
                    post_json(self.webhook_url, item["payload"])
                    done.add(item["id"])
                except (OSError, urllib.error.URLError) as exc:
                    failed[item["id"]] = str(exc)[:200]
            with self._outbox_lock:
                keep = []
                for item in self._load_outbox():
                    if item["id"] in done:
                        continue
                    if item["id"] in failed:
                        item["attempts"] += 1
                        item["next"] = now + BACKOFF_S[min(item["attempts"] - 1, len(BACKOFF_S) - 1)]
                        item["last_error"] = failed[item["id"]]
                    keep.append(item)
                if due:
                    storage.write_json(self.outbox, keep)
            return {"delivered": len(done), "owed": len(keep)}

    def emit(self, alerts: list[Alert]) -> dict[str, int]:
        """Record ``alerts`` and start a background delivery of everything due; returns at once with counts."""
        self.record(alerts)
        owed = len(self.owed()) if self.webhook_url else 0
        if owed:
            key = self.outbox.resolve()
            with _registry_lock:
                worker = _workers.get(key)
                if worker is None or not worker.is_alive():
                    worker = threading.Thread(
                        target=self._deliver_quietly, name="rlx-alert-webhook", daemon=True
                    )
                    _workers[key] = worker
                    worker.start()
        return {"recorded": len(alerts), "owed": owed}

    def _deliver_quietly(self) -> None:
        try:
            self.deliver_due()
        except Exception:  # noqa: BLE001 - the outbox keeps the work; the next emit retries it
            logging.getLogger(__name__).exception("alert delivery to the webhook failed")

    def join(self, timeout: float | None = None) -> None:
        """Wait for this outbox's background delivery (tests, shutdown)."""
        worker = _workers.get(self.outbox.resolve())
        if worker is not None:
            worker.join(timeout)
