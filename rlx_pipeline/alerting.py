"""Check alerts: one record per non-passing check evaluation, to a JSONL file, the log, and a Slack-compatible webhook.

Delivery never blocks the caller: ``AlertSink.emit`` appends to the alerts file and to an outbox file under
``RLX_DATA_DIR``, then hands the outbox to a background thread (one per outbox) that posts what is due, one attempt
each with a short timeout. A failed delivery (any error: refused, timeout, malformed URL) stays in the outbox with
exponential backoff and is retried by a later ``emit`` (the sensor calls it on every tick), so a webhook that is
down or hangs, or a restart, loses nothing.

Exactly once, as far as a webhook allows: an alert is recorded once per key (run, asset, check, partition) whatever
the caller repeats; a delivery is removed from the outbox as soon as it is posted, and one process at a time
delivers an outbox (a file lock), so two code servers never post the same item. Only a process killed during
the HTTP request itself can leave a posted item owed (the webhook cannot say whether it saw it).

The webhook URL is a secret: it is never logged nor stored; errors are stored without it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from rlx_pipeline import storage

TIMEOUT_S = 10.0  # in the background: a slow webhook costs no sensor time
BACKOFF_S = (5, 15, 60, 300, 900)

# One lock for the outbox file and one deliverer per outbox, shared by every AlertSink of this process
# (the file lock below does the same across processes).
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


@contextlib.contextmanager
def _file_lock(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """An exclusive ``flock`` on ``path``; yields False (without waiting) when ``blocking`` is off and it is held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Alert:
    asset: str
    partition: str | None
    check: str
    severity: str  # ERROR: the check failed; WARN: a non-passing warning (e.g. could not measure)
    description: str
    value: float | None
    threshold: float | None
    run_id: str
    url: str
    event_id: int

    @property
    def key(self) -> str:
        """One check evaluation: a check runs once per run and partition."""
        return f"{self.run_id}/{self.asset}/{self.check}/{self.partition}"

    def text(self) -> str:
        if self.severity == "WARN":
            head = (
                f":warning: check `{self.check}` on `{self.asset}` [{self.partition}] did not pass (warning)"
            )
        else:
            head = f":rotating_light: check `{self.check}` on `{self.asset}` [{self.partition}] FAILED"
        return f"{head}: {self.description} <{self.url}|run {self.run_id[:8]}>"

    def slack_payload(self) -> dict:
        return {"text": self.text(), "rlx": asdict(self)}


def _append_line(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:  # one write per line: appends do not interleave
        f.write(json.dumps(obj, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def webhook_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be posted to (without quoting it: it is a secret), or None."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return "RLX_ALERT_WEBHOOK_URL is not an http(s) URL with a host"
    return None


def post_json(url: str, payload: dict, timeout: float = TIMEOUT_S) -> None:
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - URL from the operator's settings
        if resp.status >= 300:
            raise urllib.error.HTTPError("webhook", resp.status, "webhook refused", resp.headers, None)


def _describe_error(exc: BaseException, url: str) -> str:
    """The error without the secret URL (nor its host or path, which some errors quote)."""
    text = f"{type(exc).__name__}: {exc}"
    parsed = urllib.parse.urlsplit(url)
    for secret in sorted({url, parsed.netloc, parsed.path, parsed.query} - {"", "/"}, key=len, reverse=True):
        text = text.replace(secret, "<webhook>")
    return text[:200]


class AlertSink:
    """``alerts.jsonl`` (every alert, once), ``outbox.json`` (webhook deliveries still owed)."""

    def __init__(self, alerts_file: Path, webhook_url: str | None) -> None:
        self.alerts_file = Path(alerts_file)
        self.outbox = self.alerts_file.with_name("outbox.json")
        self._lock_file = self.alerts_file.with_name(".outbox.lock")
        self._deliver_lock_file = self.alerts_file.with_name(".deliver.lock")
        self.webhook_url = webhook_url
        self._outbox_lock, self._deliver_lock = _locks(self.outbox.resolve())

    def _load_outbox(self) -> list[dict]:
        return json.loads(self.outbox.read_text()) if self.outbox.is_file() else []

    @contextlib.contextmanager
    def _outbox_locked(self) -> Iterator[None]:
        with self._outbox_lock, _file_lock(self._lock_file):
            yield

    def owed(self) -> list[dict]:
        """Deliveries still owed to the webhook (oldest first)."""
        with self._outbox_locked():
            return self._load_outbox()

    def recorded_keys(self) -> set[str]:
        if not self.alerts_file.is_file():
            return set()
        return {json.loads(line).get("key", "") for line in self.alerts_file.read_text().splitlines() if line}

    def record(self, alerts: list[Alert]) -> list[Alert]:
        """Append the alerts not recorded before (by ``Alert.key``) to the alerts file and, with a webhook, to the
        outbox (no network); returns the new ones."""
        with self._outbox_locked():
            seen = self.recorded_keys()
            new = []
            for a in alerts:
                if a.key not in seen:
                    seen.add(a.key)
                    new.append(a)
            if self.webhook_url and new:
                items = self._load_outbox()
                items += [
                    {"id": uuid.uuid4().hex, "payload": a.slack_payload(), "attempts": 0, "next": 0.0}
                    for a in new
                ]
                storage.write_json(self.outbox, items)
            for a in new:  # after the outbox: a crash in between re-records nothing and loses no delivery
                _append_line(self.alerts_file, {**asdict(a), "key": a.key})
        return new

    def deliver_due(self, now: float | None = None) -> dict[str, int]:
        """Post every owed delivery that is due (one attempt each), in this thread; returns counts. Every error
        counts as a failed attempt with backoff; another process delivering this outbox makes it a no-op."""
        if not self.webhook_url:
            return {"delivered": 0, "owed": 0}
        with self._deliver_lock, _file_lock(self._deliver_lock_file, blocking=False) as mine:
            if not mine:
                return {"delivered": 0, "owed": len(self.owed())}
            now = time.time() if now is None else now
            due = [item for item in self.owed() if item["next"] <= now]
            problem = webhook_url_problem(self.webhook_url)
            done: set[str] = set()
            failed: dict[str, str] = {}
            for item in due:  # the network, outside the outbox lock: record() never waits for it
                if problem:
                    failed[item["id"]] = problem
                    continue
                try:
                    post_json(self.webhook_url, item["payload"])
                except Exception as exc:  # noqa: BLE001 - any failure is retried later, never raised
                    failed[item["id"]] = _describe_error(exc, self.webhook_url)
                    continue
                done.add(item["id"])
                self._update(now, done, {})  # at once: a crash after this post does not post it again
            return self._update(now, done, failed) | {"delivered": len(done)}

    def _update(self, now: float, done: set[str], failed: dict[str, str]) -> dict[str, int]:
        with self._outbox_locked():
            keep = []
            for item in self._load_outbox():
                if item["id"] in done:
                    continue
                if item["id"] in failed:
                    item["attempts"] += 1
                    item["next"] = now + BACKOFF_S[min(item["attempts"] - 1, len(BACKOFF_S) - 1)]
                    item["last_error"] = failed[item["id"]]
                keep.append(item)
            storage.write_json(self.outbox, keep)
            return {"owed": len(keep)}

    def emit(self, alerts: list[Alert]) -> dict[str, int]:
        """Record ``alerts`` and start a background delivery of everything due; returns at once with counts."""
        new = self.record(alerts)
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
        return {"recorded": len(new), "owed": owed}

    def _deliver_quietly(self) -> None:
        try:
            self.deliver_due()
        except Exception as exc:  # noqa: BLE001 - the outbox keeps the work; the next emit retries it
            # no traceback: its frames hold the URL
            logging.getLogger(__name__).error(
                "alert delivery failed: %s", _describe_error(exc, self.webhook_url or "")
            )

    def join(self, timeout: float | None = None) -> None:
        """Wait for this outbox's background delivery (tests, shutdown)."""
        worker = _workers.get(self.outbox.resolve())
        if worker is not None:
            worker.join(timeout)
