"""The day catalog: which days x symbols can be used, and why not, from what the pipeline left on disk.

    from rlx_pipeline.catalog import read_catalog
    cat = read_catalog("data", symbols=["BTC-USDT"], start="2024-08-01", end="2024-08-31")
    usable_days = cat.filter(pl.col("usable"))["date"].to_list()

One row per day and symbol (``CATALOG_SCHEMA``):

- ``status``: ``usable`` (validation passed, the unified stream served is the build the gate promoted, no blocking
  check of the day failed since, fidelity not failed: what the read API serves), ``failed`` (validation or a later
  blocking check failed: ``failed_checks`` names them), ``not reconstructed`` (validation passed, no promoted
  unified stream yet), ``not run`` (no verdict);
- ``build``: the unified stream's build id (events and book files carry the same one);
- ``fidelity``: the fidelity score, null when not measured (no golden samples: ``fidelity_checked`` false);
- ``golden_coverage``: share of the day's minutes the golden samples cover (null: golden samples never parsed);
- ``invalid_share``: share of the day inside the stream's invalid intervals (the book not known to be right),
  null when the stream carries no validity flags.

``day_status`` is the one place that reads verdicts and stream metadata: exports and the CLI go through it, so
the rules of the gate apply to everything that leaves the project.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from rlx_pipeline import gate
from rlx_pipeline.book.read import check_pair
from rlx_pipeline.layout import DataLayout

USABLE, FAILED, NOT_RECONSTRUCTED, NOT_RUN = "usable", "failed", "not reconstructed", "not run"
STATUSES = (USABLE, FAILED, NOT_RECONSTRUCTED, NOT_RUN)
DAY_NS = 86_400 * 1_000_000_000

CATALOG_SCHEMA = {
    "date": pl.String,
    "symbol": pl.String,
    "status": pl.String,
    "usable": pl.Boolean,
    "failed_checks": pl.List(pl.String),
    "build": pl.String,
    "verdict_at": pl.String,
    "fidelity": pl.Float64,
    "fidelity_checked": pl.Boolean,
    "golden_coverage": pl.Float64,
    "invalid_share": pl.Float64,
    "reason": pl.String,
}


class DayNotUsable(RuntimeError):
    """A day asked for (export, serving) whose catalog status is not ``usable``; the message says why."""


@dataclass(frozen=True)
class DayStatus:
    date: str
    symbol: str
    status: str
    failed_checks: list[str] = field(default_factory=list)
    build: str | None = None
    verdict_at: str | None = None
    fidelity: float | None = None
    fidelity_checked: bool = False
    golden_coverage: float | None = None
    invalid_share: float | None = None
    reason: str = ""

    @property
    def usable(self) -> bool:
        return self.status == USABLE

    def line(self) -> str:
        """One line for ``rlx-pipeline status``."""

        def pct(v: float | None, places: int = 2) -> str:
            return "-" if v is None else f"{v:.{places}%}"

        fid = pct(self.fidelity, 3) if self.fidelity_checked else "not checked"
        return (
            f"{self.date} {self.symbol:<12} {self.status:<17} build={self.build or '-'} fidelity={fid} "
            f"invalid={pct(self.invalid_share)} golden={pct(self.golden_coverage)}"
            + (f" failed: {', '.join(self.failed_checks)}" if self.failed_checks else "")
            + (f" ({self.reason})" if self.reason and not self.usable else "")
        )


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def invalid_share(book: Path, date: str) -> float | None:
    """Share of the day during which the stream's ``book_valid`` flag is false (time-weighted: a state holds
    until the next one); None when the book states carry no such flag."""
    pf = pq.ParquetFile(book)
    if "book_valid" not in pf.schema_arrow.names:
        return None
    df = pl.read_parquet(book, columns=["origin_time", "book_valid"])
    day0 = int(dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC).timestamp()) * 1_000_000_000
    if df.is_empty():
        return 1.0
    t = df["origin_time"].dt.epoch("ns").clip(day0, day0 + DAY_NS)
    ends = t.shift(-1, fill_value=day0 + DAY_NS)
    invalid_ns = ((ends - t).clip(0, None) * (~df["book_valid"].fill_null(False)).cast(pl.Int64)).sum()
    before_first = int(t[0]) - day0  # before the first state the book is not known
    return float((invalid_ns + before_first) / DAY_NS)


def invalid_intervals(layout: DataLayout, date: str, symbol: str) -> pl.DataFrame | None:
    """The day's invalid intervals (spans whose book is not trusted: ``start``, ``end`` and what the stream says
    of them), or None when the stream has none recorded (built before the gap-aware stream)."""
    path = layout.unified(date, symbol).with_name("invalid_intervals.parquet")
    return pl.read_parquet(path) if path.is_file() else None


def day_status(layout: DataLayout, date: str, symbol: str) -> DayStatus:
    """The status of one day x symbol (the adapter over the gate's verdict and the stream's files)."""
    symbol = symbol.upper()
    verdict = gate.read_verdict(layout, date, symbol)
    golden = _json(layout.report_dir("golden", date, symbol) / "coverage.json")
    fid = _json(layout.report_dir("fidelity", date, symbol) / "report.json")
    common = {
        "golden_coverage": float(golden["coverage"]) if golden else None,
        "fidelity": fid.get("score") if fid else None,
        "fidelity_checked": bool(fid and fid.get("measurable")),
        "verdict_at": verdict.created_at if verdict else None,
    }
    if verdict is None:
        return DayStatus(date, symbol, NOT_RUN, reason="no validation verdict", **common)
    if not verdict.passed:
        return DayStatus(
            date, symbol, FAILED, list(verdict.failed_checks), reason="validation failed", **common
        )
    events, book = layout.unified(date, symbol), layout.unified_book(date, symbol)
    if not events.is_file():
        return DayStatus(date, symbol, NOT_RECONSTRUCTED, reason="no unified stream", **common)
    try:
        build = check_pair(events, book)
    except (FileNotFoundError, ValueError) as e:
        return DayStatus(date, symbol, NOT_RECONSTRUCTED, reason=str(e), **common)
    share = invalid_share(book, date)
    problems = gate.read_problems(layout, date, symbol, build)  # the read API's rule: a vouched-for build
    if problems:
        failed = [r.check for r in gate.failed_checks(layout, date, symbol)]
        return DayStatus(
            date, symbol, FAILED if failed else NOT_RECONSTRUCTED, failed, build, reason="; ".join(problems),
            invalid_share=share, **common,
        )  # fmt: skip
    if fid and fid.get("passed") is False:
        return DayStatus(
            date, symbol, FAILED, ["fidelity_ok"], build, reason="fidelity below threshold",
            invalid_share=share, **common,
        )  # fmt: skip
    return DayStatus(date, symbol, USABLE, [], build, invalid_share=share, **common)


def require_usable(layout: DataLayout, date: str, symbol: str) -> DayStatus:
    """The day's status, or ``DayNotUsable`` naming what is wrong (the gate's rules for what leaves the project)."""
    s = day_status(layout, date, symbol)
    if not s.usable:
        raise DayNotUsable(
            f"{date}|{s.symbol} is {s.status}"
            + (f" ({', '.join(s.failed_checks)})" if s.failed_checks else "")
            + (f": {s.reason}" if s.reason else "")
        )
    return s


def days(start: str, end: str) -> list[str]:
    a, b = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    if b < a:
        raise ValueError(f"end {end} is before start {start}")
    return [(a + dt.timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


def _days_on_disk(layout: DataLayout, symbols: list[str] | None) -> set[tuple[str, str]]:
    """(date, symbol) pairs with a verdict, a unified stream or golden samples."""
    found = set()
    for pattern in (
        "reports/validation/dt=*/symbol=*/verdict.json",
        "unified/dt=*/symbol=*/events.parquet",
        "reports/golden/dt=*/symbol=*/coverage.json",
    ):
        for p in layout.root.glob(pattern):
            date, sym = p.parent.parent.name.removeprefix("dt="), p.parent.name.removeprefix("symbol=")
            if symbols is None or sym in symbols:
                found.add((date, sym))
    return found


def catalog(
    data_dir: str | os.PathLike[str],
    symbols: list[str] | None = None,
    start: str | None = None,
    end: str | None = None,
) -> list[DayStatus]:
    """Statuses of every day ``start``..``end`` (inclusive) x symbol; without a range, from the first to the
    last day the pipeline wrote anything for; without symbols, the symbols found on disk."""
    layout = DataLayout(Path(data_dir))
    syms = [s.upper() for s in symbols] if symbols else None
    on_disk = _days_on_disk(layout, syms)
    if syms is None:
        syms = sorted({s for _, s in on_disk})
    if start is None or end is None:
        seen = sorted(d for d, _ in on_disk)
        if not seen:
            return []
        start, end = start or seen[0], end or seen[-1]
    return [day_status(layout, d, s) for d in days(start, end) for s in syms]


def to_frame(statuses: list[DayStatus]) -> pl.DataFrame:
    rows = [{**asdict(s), "usable": s.usable} for s in statuses]
    return pl.DataFrame(rows, schema=CATALOG_SCHEMA)


def read_catalog(
    data_dir: str | os.PathLike[str],
    symbols: list[str] | None = None,
    start: str | None = None,
    end: str | None = None,
) -> pl.DataFrame:
    """The catalog as a Polars frame (``CATALOG_SCHEMA``), one row per day x symbol, by date then symbol."""
    return to_frame(catalog(data_dir, symbols, start, end))
