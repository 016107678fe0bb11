"""One partitions definition shared by every main asset: date (UTC days) x symbol (Crypto Lake names)."""

from __future__ import annotations

import dagster as dg

from rlx_pipeline.settings import Settings


def build_partitions(settings: Settings) -> dg.MultiPartitionsDefinition:
    # Symbols come from RLX_SYMBOLS, so adding one is a settings change and a code-location reload.
    return dg.MultiPartitionsDefinition(
        {
            "date": dg.DailyPartitionsDefinition(start_date=settings.partition_start, timezone="UTC"),
            "symbol": dg.StaticPartitionsDefinition(list(settings.symbols)),
        }
    )


SETTINGS = Settings.from_env()
PARTITIONS = build_partitions(SETTINGS)


def date_symbol(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> tuple[str, str]:
    """The (date, symbol) of the partition being materialized or checked."""
    key = context.partition_key
    if not isinstance(key, dg.MultiPartitionKey):
        key = PARTITIONS.get_partition_key_from_str(str(key))
    dims = key.keys_by_dimension
    return dims["date"], dims["symbol"]
