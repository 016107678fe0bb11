"""Exact decimal prices and quantities as int64 fixed point.

Binance sends every price and quantity as a decimal string with at most 8 fractional digits, so every value
the pipeline handles is an integer number of 1e-8 units. Keeping them as int64 at ``SCALE = 8`` is exact,
sorts correctly, is a valid book key and runs in numba; BTC at 1e6 USD is 1e14 units, far inside int64.
Parquet files record the scale in their schema metadata under ``SCALE_METADATA_KEY``.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import polars as pl
import pyarrow as pa

SCALE = 8
UNIT = 10**SCALE
SCALE_METADATA_KEY = b"rlx.decimal_scale"
# Arrow type used when a consumer wants real decimals rather than fixed-point integers.
DECIMAL_TYPE = pa.decimal128(38, SCALE)


class DecimalFormatError(ValueError):
    """A price or quantity string that is not an exact decimal with at most ``SCALE`` fractional digits."""


def parse(text: str) -> int:
    """``"2683.80000000"`` -> ``268380000000``; exact, rejects more than 8 fractional digits."""
    s = text.strip()
    neg = s.startswith("-")
    if neg or s.startswith("+"):
        s = s[1:]
    whole, _, frac = s.partition(".")
    if not whole and not frac or not (whole or "0").isdigit() or (frac and not frac.isdigit()):
        raise DecimalFormatError(f"not a decimal number: {text!r}")
    if len(frac) > SCALE:
        if frac[SCALE:].strip("0"):
            raise DecimalFormatError(f"more than {SCALE} fractional digits: {text!r}")
        frac = frac[:SCALE]
    value = int(whole or "0") * UNIT + int(frac.ljust(SCALE, "0") or "0")
    return -value if neg else value


def format(value: int, places: int = SCALE) -> str:  # noqa: A001 - mirrors parse()
    """``268380000000`` -> ``"2683.80000000"`` (Binance's rendering with ``places=8``)."""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(int(value)), UNIT)
    if places == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{str(frac).rjust(SCALE, '0')[:places]}"


def to_decimal(value: int) -> Decimal:
    return Decimal(int(value)).scaleb(-SCALE)


def from_float(values: np.ndarray | pl.Series | float) -> np.ndarray:
    """Floats as stored by Crypto Lake -> fixed point, rounding to the nearest 1e-8.

    float64 carries 15-17 significant digits, so any Binance value below 1e7 with 8 decimals round-trips
    exactly; NaN raises (callers decide what a missing value means before converting).
    """
    arr = np.asarray(values, dtype=np.float64)
    if np.isnan(arr).any():
        raise DecimalFormatError("NaN cannot be converted to fixed point")
    return np.rint(arr * UNIT).astype(np.int64)


def expr_from_float(col: str | pl.Expr) -> pl.Expr:
    """Polars expression form of :func:`from_float` (NaN/null stay null)."""
    e = pl.col(col) if isinstance(col, str) else col
    return pl.when(e.is_nan()).then(None).otherwise((e * UNIT).round(0)).cast(pl.Int64)


def expr_from_str(col: str | pl.Expr) -> pl.Expr:
    """Polars expression: decimal strings -> fixed point, exact (via Decimal(38, 8))."""
    e = pl.col(col) if isinstance(col, str) else col
    return (e.cast(pl.Decimal(38, SCALE)) * UNIT).cast(pl.Int64)


def expr_to_float(col: str | pl.Expr) -> pl.Expr:
    e = pl.col(col) if isinstance(col, str) else col
    return e.cast(pl.Float64) / UNIT


def expr_to_decimal(col: str | pl.Expr) -> pl.Expr:
    """Fixed-point int64 column -> Decimal(38, 8), exactly. (Dividing a Decimal(38, 0) by ``UNIT`` would keep
    scale 0 and truncate: 50000000 -> 0.) Multiplying by exactly 1e-8 and casting to scale 8 loses nothing."""
    e = pl.col(col) if isinstance(col, str) else col
    return (e.cast(pl.Decimal(38, 0)) * pl.lit(Decimal(1).scaleb(-SCALE))).cast(pl.Decimal(38, SCALE))


def with_scale_metadata(schema: pa.Schema) -> pa.Schema:
    md = dict(schema.metadata or {})
    md[SCALE_METADATA_KEY] = str(SCALE).encode()
    return schema.with_metadata(md)
