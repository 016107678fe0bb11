"""Failures a person can act on: the domain's errors become ``dagster.Failure`` with one line saying what is wrong,
where (file, partition) and what to do, plus the same facts as metadata.

Dagster shows a ``Failure``'s description at the top of the failed step (UI, ``dagster asset materialize``), where
an arbitrary exception would show a stack trace starting in Dagster's internals. Assets opt in with
``@explain_failures`` under ``@dg.asset``; errors this module does not know pass through unchanged.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TypeVar

import dagster as dg

from rlx_pipeline.formats.capture_file import CaptureFormatError
from rlx_pipeline.gate import GateClosed
from rlx_pipeline.lake.source import (
    LakeAccessDenied,
    LakeCorruptFile,
    LakeEmptyDay,
    LakeError,
    LakeMissingDay,
    LakeSchemaError,
    LakeUnreachable,
)

# Headline and what to do, by error type (the most specific first).
_LAKE: list[tuple[type[LakeError], str, str]] = [
    (
        LakeMissingDay,
        "Crypto Lake day missing",
        "Crypto Lake publishes a day after it ends: for a recent day, wait and re-run the partition; otherwise "
        "check RLX_LAKE_SOURCE, RLX_LAKE_DIR and the symbol, which names the exchange (BTC-USDT: BINANCE, "
        "BTC-USDT-PERP: BINANCE_FUTURES; a local lake: `rlx-pipeline lake publish` or `rlx-pipeline simulate --lake`)",
    ),
    (
        LakeCorruptFile,
        "Crypto Lake file truncated or corrupt",
        "delete the file, download or publish it again, then re-run the partition",
    ),
    (
        LakeSchemaError,
        "Crypto Lake file with the wrong schema",
        "the file's columns or types are not Crypto Lake's for this table: check the symbol's market (spot or -PERP) and that the file "
        "sits under the right table in the lake layout",
    ),
    (
        LakeEmptyDay,
        "Crypto Lake day empty",
        "the day's file has no rows: check the source (lakeapi skips unreadable files), then re-run",
    ),
    (
        LakeAccessDenied,
        "Crypto Lake access denied",
        "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE for Crypto Lake, then re-run",
    ),
    (
        LakeUnreachable,
        "Crypto Lake unreachable",
        "check the network and AWS_ENDPOINT_URL, then re-run the partition",
    ),
    (
        LakeError,
        "Crypto Lake day unreadable",
        "check the Crypto Lake source settings (RLX_LAKE_SOURCE, AWS_*), then re-run the partition",
    ),
]


def _failure(description: str, partition: str | None, advice: str, **facts: str) -> dg.Failure:
    return dg.Failure(
        description=f"{description} What to do: {advice}.",
        metadata={**facts, "partition": partition or "", "what_to_do": advice},
    )


def failure_for(exc: Exception, partition: str | None) -> dg.Failure | None:
    """The ``dagster.Failure`` a person can act on for a known domain error, or None."""
    where = f"partition {partition}" if partition else "this run"
    if isinstance(exc, LakeError):
        headline, advice = next((h, a) for cls, h, a in _LAKE if isinstance(exc, cls))
        return _failure(
            f"{headline} ({exc.table}) for {where}: {exc.detail}.",
            partition,
            advice,
            error=type(exc).__name__,
            table=exc.table,
            exchange=exc.exchange,
            symbol=exc.symbol,
            date=exc.date,
            detail=exc.detail,
        )
    if isinstance(exc, CaptureFormatError):
        advice = "re-import the capture (`rlx-pipeline capture import`) or move the file out of RLX_DATA_DIR/capture"
        return _failure(
            f"CaptureFormatError for {where}: {exc}.",
            partition,
            advice,
            error="CaptureFormatError",
            detail=str(exc),
        )
    if isinstance(exc, GateClosed):
        # the gate's message already says how to go on anyway (gate.OVERRIDE_HINT)
        advice = "fix the cause of the failed checks above, then re-run the partition"
        return _failure(
            f"Reconstruction refused for {where}: {exc}",
            partition,
            advice,
            error="GateClosed",
            detail=str(exc),
        )
    return None


F = TypeVar("F", bound=Callable[..., object])


def explain_failures(fn: F) -> F:
    """Decorate an asset's function (under ``@dg.asset``): known domain errors become ``failure_for``'s Failure.
    Works for generator functions (assets that yield their check results) too."""

    def convert(context, exc: Exception) -> dg.Failure | None:
        partition = context.partition_key if context.has_partition_key else None
        return failure_for(exc, str(partition) if partition is not None else None)

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(context, *args, **kwargs):
            try:
                yield from fn(context, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - re-raised, as a Failure when it is a known domain error
                failure = convert(context, exc)
                if failure is None:
                    raise
                raise failure from None  # the description says it all; the cause is in the metadata

        return generator  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(context, *args, **kwargs):
        try:
            return fn(context, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - re-raised, as a Failure when it is a known domain error
            failure = convert(context, exc)
            if failure is None:
                raise
            raise failure from None  # the description says it all; the cause is in the metadata

    return wrapper  # type: ignore[return-value]


def no_capture(
    capture_dir: str, date: str, symbol: str, checks: list[str], partials: list[str] = ()
) -> list[dg.AssetCheckResult]:
    """The golden ``checks`` of a day without any finished capture file: non-passing warnings that say so and what
    to do (nothing was measured: never a pass; a lake-only day still validates and reconstructs). ``partials``:
    unfinished capture files of the day, which are not read."""
    advice = (
        "capture the symbol live (`rlx-pipeline capture run`) or import a capture of the day "
        "(`rlx-pipeline capture import`), then re-materialize golden_samples"
    )
    if partials:
        advice = (
            f"{len(partials)} unfinished capture file(s) (.partial) are not read: restart the capture service "
            f"to finalise them, or {advice}"
        )
    return [
        dg.AssetCheckResult(
            check_name=name,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=(
                f"no capture for {symbol} on {date} under {capture_dir}: the comparisons with golden data are "
                f"not checked. What to do: {advice}."
            ),
            metadata={
                "coverage": dg.MetadataValue.float(0.0),
                "files": dg.MetadataValue.int(0),
                "capture_dir": dg.MetadataValue.path(capture_dir),
                "what_to_do": dg.MetadataValue.text(advice),
            },
        )
        for name in checks
    ]
