"""Golden samples: the day's raw Binance captures parsed into typed tables (``rlx_pipeline.golden``).

golden_samples  capture/**/*.jsonl.zst -> golden/{trades,agg_trades,depth,snapshots,book_ticker}/dt=/symbol=/
                + reports/golden/dt=/symbol=/coverage.json
checks          golden_integrity (silent gaps, unbridged runs, trade ids, malformed lines and unreadable capture
                                  bytes: blocks)
                golden_coverage  (share of the day covered, unfinished .partial files: warns, never blocks)
"""

from collections.abc import Iterator

import dagster as dg

from rlx_pipeline import gate, storage
from rlx_pipeline.capture.identity import inputs_version
from rlx_pipeline.golden import TABLES, build_golden, capture_files_for, partial_files_for
from rlx_pipeline.orchestration import checking
from rlx_pipeline.orchestration.failures import explain_failures, no_capture
from rlx_pipeline.orchestration.partitions import PARTITIONS, date_symbol
from rlx_pipeline.orchestration.resources import RlxSettings


def _coverage_path(rlx: RlxSettings, date: str, symbol: str):
    return rlx.layout.report_dir("golden", date, symbol) / "coverage.json"


@dg.asset(
    partitions_def=PARTITIONS,
    group_name="golden",
    kinds={"parquet"},
    owners=["team:market-data"],
    check_specs=[
        checking.spec(
            "golden_integrity",
            "golden_samples",
            "Depth gaps outside declared resyncs, depth runs without a bridging snapshot, trade-id gaps and "
            "duplicates, malformed lines: all must be zero.",
        ),
        checking.spec(
            "golden_coverage",
            "golden_samples",
            "Share of the day's minutes the captures cover. Below RLX_GOLDEN_COVERAGE_MIN (or no capture at all) "
            "it warns: a short capture still validates the minutes it covers, and a lake-only day still runs.",
        ),
    ],
)
@explain_failures
def golden_samples(
    context: dg.AssetExecutionContext, rlx: RlxSettings
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
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
    partials = [str(p) for p in partial_files_for(layout.capture_dir, date)]
    for p in partials:
        context.log.warning(
            f"unfinished capture file not read: {p} (restart the capture service to finalise it)"
        )
    summary = result.summary() | {"partial_files": partials}
    storage.write_json(_coverage_path(rlx, date, symbol), summary)
    for f, n, e in result.malformed[:20]:
        context.log.warning(f"malformed line {f}:{n}: {e}")
    table_md = "| table | rows |\n| --- | --- |\n" + "\n".join(
        f"| {t} | {result.rows[t]:,} |" for t in TABLES
    )
    yield dg.MaterializeResult(
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
            "partial_files": dg.MetadataValue.json(partials),
            "path": dg.MetadataValue.path(str(layout.golden("trades", date, symbol).parents[2])),
        },
    )
    checked = {
        str(layout.golden(t, date, symbol)): gate.fingerprint(layout.golden(t, date, symbol)) for t in TABLES
    }
    results = [golden_integrity(summary), golden_coverage(summary, rlx.thresholds.golden_coverage_min)]
    if not files:  # nothing measured: warnings that say so, never a pass
        results = no_capture(str(layout.capture_dir), date, symbol, [r.check_name for r in results], partials)
    yield from checking.record(context, rlx, results, checked=checked)


def golden_integrity(s: dict) -> dg.AssetCheckResult:
    """golden_integrity of a golden build's summary (``GoldenResult.summary``): depth gaps outside declared
    resyncs, depth runs without a bridging snapshot, trade-id gaps and duplicates, malformed lines (unreadable
    capture bytes included): all must be zero."""
    counts = {
        "silent_gaps": s["silent_gaps"],
        "unbridged_runs": s["unbridged_runs"],
        "trade_id_gaps": s["trade_id_gaps"],
        "trade_id_duplicates": s["trade_id_duplicates"],
        "malformed_lines": s["malformed_lines"],
        "unreadable_bytes": s.get("unreadable_bytes", 0),
    }
    bad = {k: v for k, v in counts.items() if v}
    return dg.AssetCheckResult(
        check_name="golden_integrity",
        passed=not bad,
        description="no gaps, every depth run bridged, no malformed line"
        if not bad
        else "; ".join(f"{k}={v}" for k, v in bad.items()),
        metadata={
            **{k: dg.MetadataValue.int(v) for k, v in counts.items()},
            "declared_resyncs": dg.MetadataValue.int(s["declared_resyncs"]),
            "depth_runs": dg.MetadataValue.int(s["depth_runs"]),
            # a hand-over's copies, dropped (not a failure); older summaries lack the count
            "overlap_duplicates": dg.MetadataValue.int(s.get("overlap_duplicates", 0)),
            "gaps": dg.MetadataValue.json(s["gaps"][:20]),
            "malformed": dg.MetadataValue.json(s["malformed"][:20]),
        },
    )


def golden_coverage(s: dict, minimum: float) -> dg.AssetCheckResult:
    """golden_coverage of a golden build's summary: a warning below ``minimum`` or without any capture."""
    has_any = s["minutes_covered"] > 0
    partials = s.get("partial_files", [])
    passed = has_any and s["coverage"] >= minimum and not partials
    description = (
        f"{s['minutes_covered']} of 1440 minutes covered"
        if has_any
        else "no golden samples for this day: comparisons with golden data are not checked"
    )
    if partials:
        description += (
            f"; {len(partials)} unfinished capture file(s) (.partial) not read: restart the capture service "
            "(it finalises a killed run's files), then re-materialize"
        )
    return dg.AssetCheckResult(
        check_name="golden_coverage",
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "coverage": dg.MetadataValue.float(float(s["coverage"])),
            "threshold": dg.MetadataValue.float(minimum),
            "minutes_covered": dg.MetadataValue.int(s["minutes_covered"]),
            "files": dg.MetadataValue.int(len(s["files"])),
            "partial_files": dg.MetadataValue.json(partials),
        },
    )


assets = [golden_samples]
checks: list = []  # every check runs inside its asset's step (check_specs)
