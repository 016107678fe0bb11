"""Validation: the day's lake data against its golden samples (``rlx_pipeline.validation``).

validation_report   reports/validation/dt=/symbol=/ report.json, report.md, ecdf.png, tail.png, gaps.png, verdict.json
checks (blocking)   validation_ks, validation_tail, validation_gaps, validation_origin_time
                    a failure stops unified_stream in this run; verdict.json stops it in later runs
config              require_golden (default false): a day without golden samples fails ks/tail instead of
                    letting the lake-only checks decide
"""

import base64
import json

import dagster as dg

from rlx_pipeline.orchestration.failures import explain_failures
from rlx_pipeline.orchestration.partitions import PARTITIONS, date_symbol
from rlx_pipeline.orchestration.resources import RlxSettings
from rlx_pipeline.validation.day import validate_day
from rlx_pipeline.validation.report import to_markdown, write_report


class ValidationConfig(dg.Config):
    require_golden: bool = False
    """Fail the golden comparisons (ks, tail) of a day without golden samples instead of letting the lake-only
    checks (gaps on trade ids and sequence order, origin_time) decide the verdict."""
    resume: bool = True
    """Resume an interrupted validation from its checkpoint (reports/../checkpoints/validation/...)."""


@dg.asset(
    partitions_def=PARTITIONS,
    group_name="validation",
    deps=["lake_trades", "lake_book", "lake_book_delta", "golden_samples"],
    kinds={"polars", "scipy"},
    owners=["team:market-data"],
)
@explain_failures
def validation_report(
    context: dg.AssetExecutionContext, rlx: RlxSettings, config: ValidationConfig
) -> dg.MaterializeResult:
    """K-S (gated on D), power-law tail |delta alpha|, sequence gaps and origin_time of the lake day against the
    golden samples of the same minutes; writes the verdict that gates reconstruction."""
    date, symbol = date_symbol(context)
    last_log: dict[str, int] = {}

    def progress(phase: str, done: int, total: int) -> None:
        pct = 100 * done // total
        if pct - last_log.get(phase, -100) >= 25 or done == total:
            last_log[phase] = pct
            context.log.info(f"validation {date}|{symbol}: {phase} {done}/{total} row groups")

    v = validate_day(
        rlx.layout,
        date,
        symbol,
        rlx.thresholds,
        require_golden=config.require_golden,
        resume=config.resume,
        progress=progress,
    )
    if v.scan.get("resumed_from"):
        context.log.info(f"validation {date}|{symbol} resumed from checkpoint at {v.scan['resumed_from']}")
    paths = write_report(rlx.layout, v)
    images = {
        name: "data:image/png;base64," + base64.b64encode(paths[name].read_bytes()).decode()
        for name in ("ecdf", "tail", "gaps")
        if name in paths
    }
    status = "passed" if v.passed else f"FAILED: {', '.join(v.failed)}"
    (context.log.info if v.passed else context.log.warning)(f"validation {date}|{symbol} {status}")
    return dg.MaterializeResult(
        metadata={
            "verdict": dg.MetadataValue.text(status),
            "golden_minutes_covered": dg.MetadataValue.int(v.covered_minutes),
            "require_golden": dg.MetadataValue.bool(config.require_golden),
            "report": dg.MetadataValue.md(to_markdown(v, images)),
            "report_path": dg.MetadataValue.path(str(paths["md"])),
            **{f"ks_d/{k.metric}": dg.MetadataValue.float(round(k.d, 6)) for k in v.ks},
            **{f"alpha/{src}": dg.MetadataValue.float(round(t.alpha, 4)) for src, t in v.tails.items() if t},
            "lake_trade_rows": dg.MetadataValue.int(v.scan["lake_trade_rows"]),
            "lake_delta_messages": dg.MetadataValue.int(v.scan["lake_delta_messages"]),
        }
    )


def _check(name: str, doc: str):
    @dg.asset_check(
        asset=validation_report,
        name=f"validation_{name}",
        blocking=True,
        partitions_def=PARTITIONS,
        description=doc,
    )
    def _fn(context: dg.AssetCheckExecutionContext, rlx: RlxSettings) -> dg.AssetCheckResult:
        date, symbol = date_symbol(context)
        path = rlx.layout.report_dir("validation", date, symbol) / "report.json"
        if not path.is_file():
            return dg.AssetCheckResult(passed=False, description=f"no report at {path}")
        report = json.loads(path.read_text())
        c = next(c for c in report["checks"] if c["name"] == name)
        extra = {}
        if name == "ks":
            extra = {f"d/{k['metric']}": dg.MetadataValue.float(k["d"]) for k in report["ks"]}
        return dg.AssetCheckResult(
            passed=bool(c["passed"]),
            description=c["detail"],
            metadata={
                "checked": dg.MetadataValue.bool(c["checked"]),
                "value": dg.MetadataValue.float(float(c["value"]))
                if c["value"] is not None
                else dg.MetadataValue.text("-"),
                "threshold": dg.MetadataValue.float(float(c["threshold"])),
                "n": dg.MetadataValue.int(int(c["n"])),
                **extra,
            },
        )

    return _fn


checks = [
    _check(
        "ks",
        "Two-sample K-S D of each of trade size, inter-arrival, 1 s returns, levels/message <= RLX_KS_D_MAX.",
    ),
    _check("tail", "|alpha lake - alpha golden| of the trade-size power-law tail <= RLX_ALPHA_DIFF_MAX."),
    _check(
        "gaps",
        "Worst of: golden depth messages missing from the lake, missing+duplicated trade ids, delta messages "
        "out of sequence order (each a share) <= RLX_GAP_RATE_MAX.",
    ),
    _check(
        "origin_time", "Share of null/zero/out-of-day/backwards origin times <= RLX_ORIGIN_TIME_INVALID_MAX."
    ),
]
assets = [validation_report]
