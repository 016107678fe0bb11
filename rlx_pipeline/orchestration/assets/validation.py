"""Validation: the day's lake data against its golden samples (``rlx_pipeline.validation``).

validation_report   reports/validation/dt=/symbol=/ report.json, report.md, ecdf.png, tail.png, gaps.png, verdict.json
checks (blocking)   validation_ks, validation_tail, validation_gaps, validation_origin_time, in the step
                    a failure stops unified_stream in this run; verdict.json (bound to the fingerprints of the
                    tables judged and the thresholds; pending while validation runs) stops it in later runs;
                    a check that could not measure (too few golden samples) is a non-passing WARN
config              require_golden (default RLX_REQUIRE_GOLDEN): unmeasurable checks fail (ERROR) instead
"""

import base64
from collections.abc import Iterator

import dagster as dg

from rlx_pipeline import gate
from rlx_pipeline.orchestration import checking
from rlx_pipeline.orchestration.failures import explain_failures
from rlx_pipeline.orchestration.partitions import PARTITIONS, date_symbol
from rlx_pipeline.orchestration.resources import RlxSettings
from rlx_pipeline.validation.day import validate_day
from rlx_pipeline.validation.report import to_markdown, write_report


class ValidationConfig(dg.Config):
    require_golden: bool | None = None
    """This run's override of RLX_REQUIRE_GOLDEN (unset: the setting): true fails the checks that could not
    measure (ks, tail without enough golden samples) instead of reporting them as non-passing warnings."""
    resume: bool = True
    """Resume an interrupted validation from its checkpoint (reports/../checkpoints/validation/...)."""


_CHECKS = {
    "ks": "Two-sample K-S D of each of trade size, inter-arrival, 1 s returns, levels/message <= RLX_KS_D_MAX.",
    "tail": "|alpha lake - alpha golden| of the trade-size power-law tail <= RLX_ALPHA_DIFF_MAX.",
    "gaps": "Worst of: golden depth messages missing from the lake, missing+duplicated trade ids, delta messages "
    "out of sequence order (each a share) <= RLX_GAP_RATE_MAX.",
    "origin_time": "Share of null/zero/out-of-day/backwards origin times <= RLX_ORIGIN_TIME_INVALID_MAX.",
}


@dg.asset(
    partitions_def=PARTITIONS,
    group_name="validation",
    deps=["lake_trades", "lake_book", "lake_book_delta", "golden_samples"],
    kinds={"polars", "scipy"},
    owners=["team:market-data"],
    check_specs=[
        checking.spec(f"validation_{name}", "validation_report", doc) for name, doc in _CHECKS.items()
    ],
)
@explain_failures
def validation_report(
    context: dg.AssetExecutionContext, rlx: RlxSettings, config: ValidationConfig
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """K-S (gated on D), power-law tail |delta alpha|, sequence gaps and origin_time of the lake day against the
    golden samples of the same minutes; writes the verdict that gates reconstruction, bound to the fingerprints of
    the tables it judged and the thresholds in force (pending while it runs: a crash leaves the gate closed)."""
    date, symbol = date_symbol(context)
    gate.begin_validation(rlx.layout, date, symbol, context.run_id)
    inputs = gate.input_fingerprints(rlx.layout, date, symbol)  # before reading: what this run judges
    last_log: dict[str, int] = {}

    def progress(phase: str, done: int, total: int) -> None:
        pct = 100 * done // total
        if pct - last_log.get(phase, -100) >= 25 or done == total:
            last_log[phase] = pct
            context.log.info(f"validation {date}|{symbol}: {phase} {done}/{total} row groups")

    require_golden = rlx.require_golden if config.require_golden is None else config.require_golden
    v = validate_day(
        rlx.layout,
        date,
        symbol,
        rlx.thresholds,
        require_golden=require_golden,
        resume=config.resume,
        progress=progress,
    )
    if v.scan.get("resumed_from"):
        context.log.info(f"validation {date}|{symbol} resumed from checkpoint at {v.scan['resumed_from']}")
    paths = write_report(rlx.layout, v, inputs=inputs, thresholds=rlx.thresholds, run_id=context.run_id)
    images = {
        name: "data:image/png;base64," + base64.b64encode(paths[name].read_bytes()).decode()
        for name in ("ecdf", "tail", "gaps")
        if name in paths
    }
    status = "passed" if v.passed else f"FAILED: {', '.join(v.failed)}"
    if v.not_checked:
        status += f" (not checked: {', '.join(v.not_checked)})"
    (context.log.info if v.passed else context.log.warning)(f"validation {date}|{symbol} {status}")
    yield dg.MaterializeResult(
        metadata={
            "verdict": dg.MetadataValue.text(status),
            "golden_minutes_covered": dg.MetadataValue.int(v.covered_minutes),
            "require_golden": dg.MetadataValue.bool(require_golden),
            "report": dg.MetadataValue.md(to_markdown(v, images)),
            "report_path": dg.MetadataValue.path(str(paths["md"])),
            **{f"ks_d/{k.metric}": dg.MetadataValue.float(round(k.d, 6)) for k in v.ks},
            **{f"alpha/{src}": dg.MetadataValue.float(round(t.alpha, 4)) for src, t in v.tails.items() if t},
            "lake_trade_rows": dg.MetadataValue.int(v.scan["lake_trade_rows"]),
            "lake_delta_messages": dg.MetadataValue.int(v.scan["lake_delta_messages"]),
        }
    )
    report = v.to_dict()
    judged = {str(p): inputs[name] for name, p in gate.judged_files(rlx.layout, date, symbol).items()}
    yield from checking.record(
        context,
        rlx,
        [validation_check(report, n) for n in _CHECKS],
        checked=judged,
    )


def validation_check(report: dict, name: str) -> dg.AssetCheckResult:
    """validation_<name> from a validation report (``DayValidation.to_dict()``, as in report.json)."""
    c = next(c for c in report["checks"] if c["name"] == name)
    extra = {}
    if name == "ks":
        extra = {f"d/{k['metric']}": dg.MetadataValue.float(k["d"]) for k in report["ks"]}
    status = c.get("status") or ("passed" if c["passed"] else "failed")
    return dg.AssetCheckResult(
        check_name=f"validation_{name}",
        passed=status == "passed",
        # could not measure: a non-passing warning (never green, never blocking) unless RLX_REQUIRE_GOLDEN
        severity=dg.AssetCheckSeverity.WARN if status == "not_checked" else dg.AssetCheckSeverity.ERROR,
        description=c["detail"],
        metadata={
            "status": dg.MetadataValue.text(status),
            "checked": dg.MetadataValue.bool(c["checked"]),
            "value": dg.MetadataValue.float(float(c["value"]))
            if c["value"] is not None
            else dg.MetadataValue.text("-"),
            "threshold": dg.MetadataValue.float(float(c["threshold"])),
            "n": dg.MetadataValue.int(int(c["n"])),
            **extra,
        },
    )


assets = [validation_report]
checks: list = []  # every check runs inside its asset's step (check_specs)
