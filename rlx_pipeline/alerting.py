"""Check alerts: one record per failed check evaluation, to a JSONL file, the log, and a Slack-compatible webhook.

Delivery never blocks the caller for long: one attempt with a short timeout; a failed delivery goes to an outbox
file under ``RLX_DATA_DIR`` and is retried on later ticks with exponential backoff (so a restart loses nothing).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from rlx_pipeline import storage

TIMEOUT_S = 2.0
BACKOFF_S = (5, 15, 60, 300, 900)


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

    def _load_outbox(self) -> list[dict]:
        return json.loads(self.outbox.read_text()) if self.outbox.is_file() else []

    def _save_outbox(self, items: list[dict]) -> None:
        storage.write_json(self.outbox, items)

    def emit(self, alerts: list[Alert], now: float | None = None) -> dict[str, int]:
        """Record ``alerts`` and try to deliver them and anything owed; returns counts."""
        now = time.time() if now is None else now
        for a in alerts:
            _append_line(self.alerts_file, asdict(a))
        if not self.webhook_url:
            return {"recorded": len(alerts), "delivered": 0, "owed": 0}
        owed = self._load_outbox() + [
            {"payload": a.slack_payload(), "attempts": 0, "next": 0.0} for a in alerts
        ]
        delivered, keep = 0, []
        for item in owed:
            if item["next"] > now:
                keep.append(item)
                continue
            try:
                post_json(self.webhook_url, item["payload"])
                delivered += 1
            except (OSError, urllib.error.URLError) as exc:
                item["attempts"] += 1
                item["next"] = now + BACKOFF_S[min(item["attempts"] - 1, len(BACKOFF_S) - 1)]
                item["last_error"] = str(exc)[:200]
                keep.append(item)
        if keep or self.outbox.exists():
            self._save_outbox(keep)
        return {"recorded": len(alerts), "delivered": delivered, "owed": len(keep)}
