"""Crypto Lake acquisition: lake_trades, lake_book, lake_book_delta staged as parquet, each with a blocking check.

    lake_trades      trades        -> staged/trades/dt=/symbol=/data.parquet      STAGED_TRADES
    lake_book        book          -> staged/book/dt=/symbol=/data.parquet        STAGED_BOOK
    lake_book_delta  book_delta_v2 -> staged/book_delta/dt=/symbol=/data.parquet  STAGED_BOOK_DELTA
                                      (after lake_book and lake_trades: its check needs the day's first usable
                                      snapshot, and compares its extent with both tables of this run)

Each table is staged to a candidate file, judged by its check in the same step, and served (promoted) only when
the check passes; a failed build is kept under rejected/ and the previous staged table stays
(``rlx_pipeline.promotion``). The work is in ``rlx_pipeline.lake`` (staging, quality); this module only wires it to
Dagster.
"""

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pyarrow as pa

from rlx_pipeline import fixed_point, gate, promotion
from rlx_pipeline.lake import quality
from rlx_pipeline.lake.staging import StageResult, stage_day
from rlx_pipeline.orchestration import checking
from rlx_pipeline.orchestration.failures import explain_failures
from rlx_pipeline.orchestration.partitions import PARTITIONS, date_symbol
from rlx_pipeline.orchestration.resources import CryptoLakeResource, RlxSettings

LOG_EVERY_ROWS = 5_000_000
# The downloads share one Crypto Lake endpoint: an op concurrency pool bounds them across runs
# (`concurrency.pools` in the instance's dagster.yaml; deploy/production/dagster.yaml sets 4).
LAKE_POOL = "lake"
_PREVIEW_COLUMNS = 9  # the book has 83 columns: preview its times, sequence and best levels


def _ts(ns: int | None) -> str:
    return str(pa.scalar(ns, pa.timestamp("ns", tz="UTC")).as_py()) if ns is not None else "-"


def _preview_md(table: pa.Table | None) -> str:
    if table is None or len(table) == 0:
        return "(empty)"
    cols = table.column_names[:_PREVIEW_COLUMNS]
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for row in table.select(cols).to_pylist():
        cells = []
        for c in cols:
            v = row[c]
            if v is not None and (c in ("price", "quantity", "size") or c.endswith(("_price", "_size"))):
                v = fixed_point.format(v)
            cells.append("" if v is None else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _metadata(r: StageResult) -> dict[str, object]:
    return {
        "dagster/row_count": dg.MetadataValue.int(r.rows),
        "rows": dg.MetadataValue.int(r.rows),
        "raw_bytes": dg.MetadataValue.int(r.raw_bytes),
        "staged_bytes": dg.MetadataValue.int(r.staged_bytes),
        "seconds": dg.MetadataValue.float(round(r.seconds, 3)),
        "rows_per_s": dg.MetadataValue.float(round(r.rows_per_s, 1)),
        "MB_per_s": dg.MetadataValue.float(round(r.mb_per_s, 3)),
        "first_origin_time": dg.MetadataValue.text(_ts(r.first_origin_ns)),
        "last_origin_time": dg.MetadataValue.text(_ts(r.last_origin_ns)),
        "source": dg.MetadataValue.json(r.source),
        "objects": dg.MetadataValue.json(r.objects),
        "decimal_scale": dg.MetadataValue.int(fixed_point.SCALE),
        "path": dg.MetadataValue.path(str(r.path)),
        "preview": dg.MetadataValue.md(_preview_md(r.preview)),
    }


class StagingConfig(dg.Config):
    accept_failed_check: bool = False
    """Serve this build although its blocking check fails (a person's decision: logged and recorded as
    `accepted_despite_failed_check`). The failure stays in the check ledger, so the gate stays closed for
    reconstruction until validation passes on it or `override_validation_gate` is set."""


def _stage(
    context: dg.AssetExecutionContext,
    config: StagingConfig,
    rlx: RlxSettings,
    lake: CryptoLakeResource,
    table: str,
    assess: Callable[[Path], dg.AssetCheckResult],
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Stage the day to a candidate file, judge it (``assess``), then serve it (promote) or set it aside: the
    served staged table is one that passed its check, unless a person accepted the failure."""
    date, symbol = date_symbol(context)
    served = rlx.layout.staged(table, date, symbol)
    label = promotion.build_label(context.run_id)
    candidate = promotion.candidate_path(served, label)
    source = lake.open(rlx.layout)
    context.log.info(
        f"staging {table} {lake.exchange} {symbol} {date} from {source.describe()} -> {candidate}"
    )
    logged = [0]

    def progress(rows: int) -> None:
        if rows - logged[0] >= LOG_EVERY_ROWS:
            logged[0] = rows
            context.log.info(f"{table}: {rows:,} rows staged")

    try:
        result = stage_day(
            source,
            table,
            lake.exchange,
            symbol,
            date,
            candidate,
            batch_rows=lake.batch_rows,
            progress=progress,
        )
        context.log.info(f"{table}: {result.rows:,} rows, {result.mb_per_s:.1f} MB/s, {result.seconds:.1f} s")
        results = [assess(candidate)]
    except Exception as exc:  # an unreadable or empty day: nothing to judge, and the gate must know
        promotion.discard([served], label)
        checking.record_unjudged(context, rlx, exc)
        raise
    checked = {str(served): gate.fingerprint(candidate)}
    failed = checking.failed(results, context.assets_def.check_specs)
    if failed and config.accept_failed_check:
        context.log.warning(
            f"{table} {date}|{symbol} failed its check and is served anyway (accept_failed_check)"
        )
    if failed and not config.accept_failed_check:
        rejected = promotion.set_aside([served], label) / served.name
        context.log.error(f"{table} {date}|{symbol} rejected, kept at {rejected}; {served} still serves")
    else:
        promotion.promote([served], label)
        rejected = None
    result.path = rejected or served
    meta = _metadata(result)
    meta["served"] = dg.MetadataValue.bool(rejected is None)
    meta["accepted_despite_failed_check"] = dg.MetadataValue.bool(failed and rejected is None)
    yield dg.MaterializeResult(metadata=meta)
    yield from checking.record(context, rlx, results, checked=checked, rejected=rejected)


def _check_result(name: str, report: quality.QualityReport) -> dg.AssetCheckResult:
    metadata: dict[str, object] = {f.name: dg.MetadataValue.float(float(f.value)) for f in report.findings}
    metadata["report"] = dg.MetadataValue.md(report.to_markdown())
    metadata["stats"] = dg.MetadataValue.json(json.loads(json.dumps(report.stats, default=str)))
    failed = report.failed
    return dg.AssetCheckResult(
        check_name=name,
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR,
        description="all checks passed"
        if not failed
        else "failed: "
        + "; ".join(f"{f.name}={f.value:.6g} (limit {f.limit}) {f.detail}".strip() for f in failed),
        metadata=metadata,
    )


Extents = dict[str, tuple[int, int] | None]


def _others(rlx: RlxSettings, table: str, date: str, symbol: str) -> Extents:
    """Extents of the day's other served staged tables (for the truncation finding)."""
    paths = {t: rlx.layout.staged(t, date, symbol) for t in quality.KEYS if t != table}
    tol = rlx.thresholds.origin_time_tolerance_s
    return {t: quality.staged_extent(p, date, tol) for t, p in paths.items() if p.is_file()}


@dg.asset(
    partitions_def=PARTITIONS,
    group_name="acquisition",
    kinds={"parquet"},
    pool=LAKE_POOL,
    check_specs=[
        checking.spec(
            "lake_trades_ok",
            "lake_trades",
            "Schema, keys, prices/sizes, origin_time inside the day, trade id duplicates and gaps, not empty.",
        )
    ],
)
@explain_failures
def lake_trades(
    context: dg.AssetExecutionContext, config: StagingConfig, rlx: RlxSettings, lake: CryptoLakeResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Crypto Lake `trades` of the day: taker side, trade id, fixed-point price and quantity."""
    date, symbol = date_symbol(context)
    others = _others(rlx, "trades", date, symbol)
    yield from _stage(
        context, config, rlx, lake, "trades", lambda path: assess_trades(path, date, rlx, lake, others=others)
    )


@dg.asset(
    partitions_def=PARTITIONS,
    group_name="acquisition",
    kinds={"parquet"},
    pool=LAKE_POOL,
    check_specs=[
        checking.spec(
            "lake_book_ok",
            "lake_book",
            "Schema, keys, level prices/sizes, origin_time, sequence never decreasing, a usable snapshot.",
        )
    ],
)
@explain_failures
def lake_book(
    context: dg.AssetExecutionContext, config: StagingConfig, rlx: RlxSettings, lake: CryptoLakeResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Crypto Lake `book`: 20-level snapshots that seed the reconstruction; absent levels are null."""
    date, symbol = date_symbol(context)
    others = _others(rlx, "book", date, symbol)
    yield from _stage(
        context, config, rlx, lake, "book", lambda path: assess_book(path, date, rlx, lake, others=others)
    )


@dg.asset(
    partitions_def=PARTITIONS,
    group_name="acquisition",
    kinds={"parquet"},
    deps=[lake_book, lake_trades],
    pool=LAKE_POOL,
    check_specs=[
        checking.spec(
            "lake_book_delta_ok",
            "lake_book_delta",
            "Schema, keys, origin_time, sequence never decreasing (steps reported), share of unseeded deltas.",
        )
    ],
)
@explain_failures
def lake_book_delta(
    context: dg.AssetExecutionContext, config: StagingConfig, rlx: RlxSettings, lake: CryptoLakeResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Crypto Lake `book_delta_v2`: one row per changed level, absolute sizes, Binance `u` per message."""
    date, symbol = date_symbol(context)
    book_path = rlx.layout.staged("book", date, symbol)  # the served book: it passed lake_book_ok
    others = _others(rlx, "book_delta", date, symbol)  # the served book and trades of this run
    yield from _stage(
        context,
        config,
        rlx,
        lake,
        "book_delta",
        lambda path: assess_book_delta(
            path, book_path, date, rlx, lake, warn=context.log.warning, others=others
        ),
    )


def assess_trades(
    path: Path, date: str, rlx: RlxSettings, lake: CryptoLakeResource, *, others: Extents | None = None
) -> dg.AssetCheckResult:
    """lake_trades_ok of a staged trades file (``others``: the day's other served tables' extents)."""
    report = quality.assess_trades(
        quality.iter_staged(path, lake.batch_rows),
        date,
        rlx.thresholds,
        min_rows=lake.min_rows,
        min_hours=lake.min_hours_covered,
        others=others,
    )
    return _check_result("lake_trades_ok", report)


def assess_book(
    path: Path, date: str, rlx: RlxSettings, lake: CryptoLakeResource, *, others: Extents | None = None
) -> dg.AssetCheckResult:
    """lake_book_ok of a staged book file (``others``: the day's other served tables' extents)."""
    report = quality.assess_book(
        quality.iter_staged(path, lake.batch_rows),
        date,
        rlx.thresholds,
        min_rows=lake.min_rows,
        min_hours=lake.min_hours_covered,
        others=others,
    )
    return _check_result("lake_book_ok", report)


def assess_book_delta(
    path: Path,
    book_path: Path,
    date: str,
    rlx: RlxSettings,
    lake: CryptoLakeResource,
    warn: Callable[[str], None],
    *,
    others: Extents | None = None,
) -> dg.AssetCheckResult:
    """lake_book_delta_ok of a staged book_delta file, seeded by the first usable snapshot of ``book_path``."""
    snapshot = (
        quality.first_usable_snapshot_in(quality.iter_staged(book_path)) if book_path.is_file() else None
    )
    if snapshot is None:
        warn(f"no usable book snapshot for {date} ({book_path}): every delta is unseeded")
    report = quality.assess_book_delta(
        quality.iter_staged(path, lake.batch_rows),
        date,
        rlx.thresholds,
        first_snapshot_sequence=snapshot[0] if snapshot else None,
        min_rows=lake.min_rows,
        min_hours=lake.min_hours_covered,
        others=others,
    )
    return _check_result("lake_book_delta_ok", report)


assets = [lake_trades, lake_book, lake_book_delta]
checks: list = []  # every check runs inside its asset's step (check_specs)
