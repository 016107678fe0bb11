"""Golden samples: the day's raw Binance captures parsed into typed tables (``rlx_pipeline.golden``).

golden_samples  capture/**/*.jsonl.zst -> golden/{trades,agg_trades,depth,snapshots,book_ticker}/dt=/symbol=/
                + reports/golden/dt=/symbol=/coverage.json
checks          golden_integrity (silent gaps, unbridged runs, trade ids, malformed lines: blocks)
                golden_coverage  (share of the day covered: warns, never blocks; 0 = no capture that day)
"""

import json

import dagster as dg

from rlx_pipeline import storage
from rlx_pipeline.capture.identity import inputs_version
from rlx_pipeline.golden import TABLES, build_golden, capture_files_for
from rlx_pipeline.orchestration.failures import explain_failures, no_capture
from rlx_pipeline.orchestration.partitions import PARTITIONS, date_symbol
from rlx_pipeline.orchestration.resources import RlxSettings


def _coverage_path(rlx: RlxSettings, date: str, symbol: str):
    return rlx.layout.report_dir("golden", date, symbol) / "coverage.json"


@dg.asset(partitions_def=PARTITIONS, group_name="golden", kinds={"parquet"}, owners=["team:market-data"])
@explain_failures
def golden_samples(context: dg.AssetExecutionContext, rlx: RlxSettings) -> dg.MaterializeResult:
    """Raw Binance WebSocket captures of the day (trade, aggTrade, depth@100ms, bookTicker, REST snapshots),
    parsed into typed tables with exact decimals, with depth continuity and coverage. A day without captures
    materializes empty tables and coverage 0, so the lake-only checks still run downstream."""
    date, symbol = date_symbol(context)
    layout = rlx.layout
    files = capture_files_for(layout.capture_dir, symbol, date)
    context.log.info(f"{len(files)} capture file(s) for {symbol} {date} under {layout.capture_dir}")
    result = build_golden(
        files,
        symbol,
        date,
        lambda table: layout.golden(table, date, symbol),
        progress=lambda n: context.log.info(f"{n:,} lines read"),
    )
    summary = result.summary()
    storage.write_json(_coverage_path(rlx, date, symbol), summary)
    for f, n, e in result.malformed[:20]:
        context.log.warning(f"malformed line {f}:{n}: {e}")
    table_md = "| table | rows |\n| --- | --- |\n" + "\n".join(
        f"| {t} | {result.rows[t]:,} |" for t in TABLES
    )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(inputs_version(files, layout.capture_dir)),  # what new_captures compares
        metadata={
            "dagster/row_count": dg.MetadataValue.int(sum(result.rows.values())),
            "files": dg.MetadataValue.json([str(f) for f in files]),
            "capture": dg.MetadataValue.text(
                f"{len(files)} file(s)" if files else "none: golden checks not measured"
            ),
            "rows": dg.MetadataValue.md(table_md),
            "messages": dg.MetadataValue.json(dict(result.messages)),
            "coverage": dg.MetadataValue.float(round(result.coverage, 6)),
            "silent_gaps": dg.MetadataValue.int(len(result.silent_gaps)),
            "malformed_lines": dg.MetadataValue.int(len(result.malformed)),
            "path": dg.MetadataValue.path(str(layout.golden("trades", date, symbol).parents[2])),
        },
    )


def _summary(rlx: RlxSettings, date: str, symbol: str) -> dict | None:
    path = _coverage_path(rlx, date, symbol)
    return json.loads(path.read_text()) if path.is_file() else None


@dg.asset_check(asset=golden_samples, blocking=True, partitions_def=PARTITIONS)
def golden_integrity(context: dg.AssetCheckExecutionContext, rlx: RlxSettings) -> dg.AssetCheckResult:
    """Depth gaps outside declared resyncs, depth runs without a bridging snapshot, trade-id gaps and
    duplicates, malformed lines: all must be zero."""
    date, symbol = date_symbol(context)
    s = _summary(rlx, date, symbol)
    if s is None:
        return dg.AssetCheckResult(
            passed=False, description="no coverage.json: materialize golden_samples first"
        )
    if not s["files"]:
        return no_capture(str(rlx.layout.capture_dir), date, symbol)
    counts = {
        "silent_gaps": s["silent_gaps"],
        "unbridged_runs": s["unbridged_runs"],
        "trade_id_gaps": s["trade_id_gaps"],
        "trade_id_duplicates": s["trade_id_duplicates"],
        "malformed_lines": s["malformed_lines"],
    }
    bad = {k: v for k, v in counts.items() if v}
    return dg.AssetCheckResult(
        passed=not bad,
        description="no gaps, every depth run bridged, no malformed line"
        if not bad
        else "; ".join(f"{k}={v}" for k, v in bad.items()),
        metadata={
            **{k: dg.MetadataValue.int(v) for k, v in counts.items()},
            "declared_resyncs": dg.MetadataValue.int(s["declared_resyncs"]),
            "depth_runs": dg.MetadataValue.int(s["depth_runs"]),
            "gaps": dg.MetadataValue.json(s["gaps"][:20]),
            "malformed": dg.MetadataValue.json(s["malformed"][:20]),
        },
    )


@dg.asset_check(asset=golden_samples, blocking=True, partitions_def=PARTITIONS)
def golden_coverage(context: dg.AssetCheckExecutionContext, rlx: RlxSettings) -> dg.AssetCheckResult:
    """Share of the day's minutes the captures cover. Below RLX_GOLDEN_COVERAGE_MIN (or no capture at all) it
    warns: a short capture still validates the minutes it covers, and a lake-only day still runs."""
    date, symbol = date_symbol(context)
    s = _summary(rlx, date, symbol) or {"coverage": 0.0, "minutes_covered": 0, "files": []}
    if not s["files"]:
        return no_capture(str(rlx.layout.capture_dir), date, symbol)
    minimum = rlx.thresholds.golden_coverage_min
    has_any = s["minutes_covered"] > 0
    passed = has_any and s["coverage"] >= minimum
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{s['minutes_covered']} of 1440 minutes covered"
        if has_any
        else "no golden samples for this day: comparisons with golden data are not checked",
        metadata={
            "coverage": dg.MetadataValue.float(float(s["coverage"])),
            "threshold": dg.MetadataValue.float(minimum),
            "minutes_covered": dg.MetadataValue.int(s["minutes_covered"]),
            "files": dg.MetadataValue.int(len(s["files"])),
        },
    )


assets = [golden_samples]
checks = [golden_integrity, golden_coverage]
