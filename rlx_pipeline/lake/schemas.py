"""Pandera (polars backend) schemas of the staged lake tables, mirroring ``rlx_pipeline.schemas``.

Staging validates every batch it writes against them at schema level (columns, dtypes: cheap); the asset
checks validate the staged file at data level too (nulls in keys, prices > 0, sizes >= 0, side values).
"""

from __future__ import annotations

import pandera.polars as pa_pl
import polars as pl
import pyarrow as pa

from rlx_pipeline import schemas
from rlx_pipeline.schemas import BOOK_LEVELS

TS = pl.Datetime("ns", "UTC")


def _times() -> dict[str, pa_pl.Column]:
    return {
        "origin_time": pa_pl.Column(TS, nullable=False),
        "received_time": pa_pl.Column(TS, nullable=False),
    }


def _price(nullable: bool = False) -> pa_pl.Column:
    return pa_pl.Column(pl.Int64, checks=pa_pl.Check.gt(0), nullable=nullable)


def _size(nullable: bool = False) -> pa_pl.Column:
    return pa_pl.Column(pl.Int64, checks=pa_pl.Check.ge(0), nullable=nullable)


STAGED_TRADES = pa_pl.DataFrameSchema(
    {
        **_times(),
        "trade_id": pa_pl.Column(pl.Int64, nullable=False),
        "side": pa_pl.Column(pl.String, checks=pa_pl.Check.isin(["buy", "sell"]), nullable=False),
        "price": _price(),
        "quantity": _size(),
    },
    name="staged_trades",
    strict=True,
    ordered=True,
)

STAGED_BOOK_DELTA = pa_pl.DataFrameSchema(
    {
        **_times(),
        "sequence_number": pa_pl.Column(pl.Int64, nullable=False),
        "side_is_bid": pa_pl.Column(pl.Boolean, nullable=False),
        "price": _price(),
        "size": _size(),
    },
    name="staged_book_delta",
    strict=True,
    ordered=True,
)

# Book levels may be absent (null) on a thin side; present ones must be sane.
_levels = {}
for _side in ("bid", "ask"):
    for _i in range(BOOK_LEVELS):
        _levels[f"{_side}_{_i}_price"] = _price(nullable=True)
        _levels[f"{_side}_{_i}_size"] = _size(nullable=True)

STAGED_BOOK = pa_pl.DataFrameSchema(
    {**_times(), "sequence_number": pa_pl.Column(pl.Int64, nullable=False), **_levels},
    name="staged_book",
    strict=True,
    ordered=True,
)

BY_TABLE: dict[str, pa_pl.DataFrameSchema] = {
    "trades": STAGED_TRADES,
    "book": STAGED_BOOK,
    "book_delta": STAGED_BOOK_DELTA,
}
ARROW_BY_TABLE: dict[str, pa.Schema] = {
    "trades": schemas.STAGED_TRADES,
    "book": schemas.STAGED_BOOK,
    "book_delta": schemas.STAGED_BOOK_DELTA,
}
