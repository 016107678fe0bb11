"""The validation verdict of a partition, and the gate that keeps reconstruction from running past it.

Dagster's blocking checks stop downstream steps only inside the run that failed them (docs/dagster.md),
so the verdict is also persisted next to the validation report and every later run, backfill or automation
reads it before reconstructing. A person can override it; the override is logged and recorded in the output.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from rlx_pipeline import storage
from rlx_pipeline.layout import DataLayout

VERDICT_FILE = "verdict.json"


class GateClosed(RuntimeError):
    """Reconstruction refused: the partition's latest validation verdict failed or is missing."""


@dataclass(frozen=True)
class Verdict:
    date: str
    symbol: str
    passed: bool
    failed_checks: list[str] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)
    created_at: str = ""


def verdict_path(layout: DataLayout, date: str, symbol: str) -> Path:
    return layout.report_dir("validation", date, symbol) / VERDICT_FILE


def write_verdict(layout: DataLayout, verdict: Verdict) -> Path:
    payload = dict(verdict.__dict__)
    payload["created_at"] = verdict.created_at or dt.datetime.now(dt.UTC).isoformat()
    return storage.write_json(verdict_path(layout, verdict.date, verdict.symbol), payload)


def read_verdict(layout: DataLayout, date: str, symbol: str) -> Verdict | None:
    path = verdict_path(layout, date, symbol)
    if not path.exists():
        return None
    return Verdict(**json.loads(path.read_text()))


def require_passed(layout: DataLayout, date: str, symbol: str, *, override: bool = False) -> Verdict | None:
    """Return the passing verdict, or raise ``GateClosed`` naming the failed checks.

    With ``override=True`` a failed or missing verdict is returned instead of raising; the caller logs it.
    """
    verdict = read_verdict(layout, date, symbol)
    if verdict is None:
        msg = f"no validation verdict for {date}|{symbol}: materialize validation_report first"
    elif not verdict.passed:
        msg = (
            f"validation failed for {date}|{symbol} ({verdict.created_at}): "
            f"{', '.join(verdict.failed_checks) or 'unspecified'}"
        )
    else:
        return verdict
    if override:
        return verdict
    raise GateClosed(msg + ". To reconstruct anyway, set run config override_validation_gate: true.")
