"""Crypto Lake's raw parquet columns (docs/crypto-lake.md) and the staged table each one becomes.

Raw files keep cryptofeed's names (``timestamp``, ``receipt_timestamp``, ``amount``, ``id``); times are
int64 ns, prices and sizes float64. ``book_delta_v2`` is the S3 table name of the staged ``book_delta``.
"""

from __future__ import annotations

import pyarrow as pa

from rlx_pipeline import schemas
from rlx_pipeline.schemas import BOOK_LEVELS

RAW_TRADES = pa.schema(
    [
        ("side", pa.string()),
        ("amount", pa.float64()),
        ("price", pa.float64()),
        ("id", pa.int64()),
        ("timestamp", pa.int64()),
        ("receipt_timestamp", pa.int64()),
    ]
)

RAW_BOOK = pa.schema(
    [("timestamp", pa.int64()), ("receipt_timestamp", pa.int64()), ("sequence_number", pa.int64())]
    + [
        pa.field(f"{side}_{i}_{what}", pa.float64())
        for side in ("bid", "ask")
        for i in range(BOOK_LEVELS)
        for what in ("price", "size")
    ]
)

RAW_BOOK_DELTA = pa.schema(
    [
        ("timestamp", pa.int64()),
        ("receipt_timestamp", pa.int64()),
        ("sequence_number", pa.int64()),
        ("side_is_bid", pa.bool_()),
        ("price", pa.float64()),
        ("size", pa.float64()),
    ]
)

# staged table name -> (S3 table name, raw schema, staged schema)
TABLES: dict[str, tuple[str, pa.Schema, pa.Schema]] = {
    "trades": ("trades", RAW_TRADES, schemas.STAGED_TRADES),
    "book": ("book", RAW_BOOK, schemas.STAGED_BOOK),
    "book_delta": ("book_delta_v2", RAW_BOOK_DELTA, schemas.STAGED_BOOK_DELTA),
}

# raw name -> staged name (columns not listed keep their name)
RENAME = {
    "timestamp": "origin_time",
    "receipt_timestamp": "received_time",
    "amount": "quantity",
    "id": "trade_id",
}


def lake_table(staged_table: str) -> str:
    """``book_delta`` -> ``book_delta_v2``; raises for an unknown table."""
    try:
        return TABLES[staged_table][0]
    except KeyError:
        raise ValueError(
            f"unknown staged lake table {staged_table!r}; expected one of {sorted(TABLES)}"
        ) from None
