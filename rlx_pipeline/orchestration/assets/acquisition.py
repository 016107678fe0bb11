"""Crypto Lake acquisition: lake_trades, lake_book, lake_book_delta staged as parquet, each with a blocking check.

    lake_trades      trades        -> staged/trades/dt=/symbol=/data.parquet      STAGED_TRADES
    lake_book        book          -> staged/book/dt=/symbol=/data.parquet        STAGED_BOOK
    lake_book_delta  book_delta_v2 -> staged/book_delta/dt=/symbol=/data.parquet  STAGED_BOOK_DELTA
                                      (after lake_book: its check needs the day's first usable snapshot)

The work is in ``rlx_pipeline.lake`` (staging, quality); this module only wires it to Dagster.
"""

import json

import dagster as dg
import pyarrow as pa

from rlx_pipeline import fixed_point
from rlx_pipeline.lake import quality
from rlx_pipeline.lake.staging import StageResult, stage_day
from rlx_pipeline.orchestration.failures import explain_failures
from rlx_pipeline.orchestration.partitions import PARTITIONS, date_symbol
from rlx_pipeline.orchestration.resources import CryptoLakeResource, RlxSettings

LOG_EVERY_ROWS = 5_000_000
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


def _stage(
    context: dg.AssetExecutionContext, rlx: RlxSettings, lake: CryptoLakeResource, table: str
) -> dg.MaterializeResult:
    date, symbol = date_symbol(context)
    dest = rlx.layout.staged(table, date, symbol)
    source = lake.open(rlx.layout)
    context.log.info(f"staging {table} {lake.exchange} {symbol} {date} from {source.describe()} -> {dest}")
    logged = [0]

    def progress(rows: int) -> None:
        if rows - logged[0] >= LOG_EVERY_ROWS:
            logged[0] = rows
            context.log.info(f"{table}: {rows:,} rows staged")

    result = stage_day(
        source, table, lake.exchange, symbol, date, dest, batch_rows=lake.batch_rows, progress=progress
    )
    context.log.info(f"{table}: {result.rows:,} rows, {result.mb_per_s:.1f} MB/s, {result.seconds:.1f} s")
    return dg.MaterializeResult(metadata=_metadata(result))


def _check_result(report: quality.QualityReport) -> dg.AssetCheckResult:
    metadata: dict[str, object] = {f.name: dg.MetadataValue.float(float(f.value)) for f in report.findings}
    metadata["report"] = dg.MetadataValue.md(report.to_markdown())
    metadata["stats"] = dg.MetadataValue.json(json.loads(json.dumps(report.stats, default=str)))
    failed = report.failed
    return dg.AssetCheckResult(
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR,
        description="all checks passed"
        if not failed
        else "failed: "
        + "; ".join(f"{f.name}={f.value:.6g} (limit {f.limit}) {f.detail}".strip() for f in failed),
        metadata=metadata,
    )


def _missing(path) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False, description=f"no staged file at {path}: materialize the asset first"
    )


@dg.asset(partitions_def=PARTITIONS, group_name="acquisition", kinds={"parquet"})
@explain_failures
def lake_trades(
    context: dg.AssetExecutionContext, rlx: RlxSettings, lake: CryptoLakeResource
) -> dg.MaterializeResult:
    """Crypto Lake `trades` of the day: taker side, trade id, fixed-point price and quantity."""
    return _stage(context, rlx, lake, "trades")


@dg.asset(partitions_def=PARTITIONS, group_name="acquisition", kinds={"parquet"})
@explain_failures
def lake_book(
    context: dg.AssetExecutionContext, rlx: RlxSettings, lake: CryptoLakeResource
) -> dg.MaterializeResult:
    """Crypto Lake `book`: 20-level snapshots that seed the reconstruction; absent levels are null."""
    return _stage(context, rlx, lake, "book")


@dg.asset(partitions_def=PARTITIONS, group_name="acquisition", kinds={"parquet"}, deps=[lake_book])
@explain_failures
def lake_book_delta(
    context: dg.AssetExecutionContext, rlx: RlxSettings, lake: CryptoLakeResource
) -> dg.MaterializeResult:
    """Crypto Lake `book_delta_v2`: one row per changed level, absolute sizes, Binance `u` per message."""
    return _stage(context, rlx, lake, "book_delta")


@dg.asset_check(asset=lake_trades, blocking=True, partitions_def=PARTITIONS)
def lake_trades_ok(
    context: dg.AssetCheckExecutionContext, rlx: RlxSettings, lake: CryptoLakeResource
) -> dg.AssetCheckResult:
    """Schema, keys, prices/sizes, origin_time inside the day, trade id duplicates and gaps, not empty."""
    date, symbol = date_symbol(context)
    path = rlx.layout.staged("trades", date, symbol)
    if not path.is_file():
        return _missing(path)
    report = quality.assess_trades(
        quality.iter_staged(path, lake.batch_rows),
        date,
        rlx.thresholds,
        min_rows=lake.min_rows,
        min_hours=lake.min_hours_covered,
    )
    return _check_result(report)


@dg.asset_check(asset=lake_book, blocking=True, partitions_def=PARTITIONS)
def lake_book_ok(
    context: dg.AssetCheckExecutionContext, rlx: RlxSettings, lake: CryptoLakeResource
) -> dg.AssetCheckResult:
    """Schema, keys, level prices/sizes, origin_time, sequence never decreasing, a usable snapshot."""
    date, symbol = date_symbol(context)
    path = rlx.layout.staged("book", date, symbol)
    if not path.is_file():
        return _missing(path)
    report = quality.assess_book(
        quality.iter_staged(path, lake.batch_rows),
        date,
        rlx.thresholds,
        min_rows=lake.min_rows,
        min_hours=lake.min_hours_covered,
    )
    return _check_result(report)


@dg.asset_check(asset=lake_book_delta, blocking=True, partitions_def=PARTITIONS)
def lake_book_delta_ok(
    context: dg.AssetCheckExecutionContext, rlx: RlxSettings, lake: CryptoLakeResource
) -> dg.AssetCheckResult:
    """Schema, keys, origin_time, sequence never decreasing (steps reported), share of unseeded deltas."""
    date, symbol = date_symbol(context)
    path = rlx.layout.staged("book_delta", date, symbol)
    if not path.is_file():
        return _missing(path)
    book_path = rlx.layout.staged("book", date, symbol)
    snapshot = (
        quality.first_usable_snapshot_in(quality.iter_staged(book_path)) if book_path.is_file() else None
    )
    if snapshot is None:
        context.log.warning(
            f"no usable book snapshot for {date} {symbol} ({book_path}): every delta is unseeded"
        )
    report = quality.assess_book_delta(
        quality.iter_staged(path, lake.batch_rows),
        date,
        rlx.thresholds,
        first_snapshot_sequence=snapshot[0] if snapshot else None,
        min_rows=lake.min_rows,
        min_hours=lake.min_hours_covered,
    )
    return _check_result(report)


assets = [lake_trades, lake_book, lake_book_delta]
checks = [lake_trades_ok, lake_book_ok, lake_book_delta_ok]
