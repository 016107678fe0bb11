"""Raw Crypto Lake day files -> the normalized STAGED_* parquet tables, batch by batch.

Memory stays bounded by one batch (``batch_rows`` rows) whatever the size of the day: the source streams
row groups, each batch is normalized (names, ns UTC timestamps, int64 fixed point prices and sizes, NaN
levels -> null) and appended to a ``ParquetBatchWriter`` whose file only appears when the whole day has
been written. Any failure, an empty day included, leaves the previous staged file in place.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandera.errors
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from rlx_pipeline import fixed_point
from rlx_pipeline.formats.lake_tables import RENAME, TABLES
from rlx_pipeline.lake import schemas as lake_schemas
from rlx_pipeline.lake.source import DEFAULT_BATCH_ROWS, DayRef, LakeEmptyDay, LakeSchemaError, LakeSource
from rlx_pipeline.storage import ParquetBatchWriter

PREVIEW_ROWS = 10
_RAW_NAME = {staged: raw for raw, staged in RENAME.items()}
_FIXED_POINT_COLUMNS = {"price", "quantity", "size"}


def _fixed_point_column(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """float prices/sizes -> int64 fixed point; NaN, inf and null become null (an absent book level)."""
    arr = np.array(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64, copy=True)
    missing = ~np.isfinite(arr)
    if missing.any():
        arr[missing] = 0.0
        return pa.array(fixed_point.from_float(arr), type=pa.int64(), mask=missing)
    return pa.array(fixed_point.from_float(arr), type=pa.int64())


def _time_column(col: pa.Array) -> pa.Array:
    if pa.types.is_timestamp(col.type):
        if col.type.tz is None:  # Crypto Lake times are UTC
            col = col.cast(pa.timestamp(col.type.unit)).cast(pa.timestamp("ns"))
            return pc.assume_timezone(col, "UTC")
        return col.cast(pa.timestamp("ns", tz="UTC"))
    if pa.types.is_integer(col.type):
        return col.cast(pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
    raise TypeError(f"expected int64 ns or a timestamp, got {col.type}")


def normalize_batch(table: str, batch: pa.RecordBatch | pa.Table, ref: DayRef) -> pa.Table:
    """One raw batch -> the staged schema of ``table`` (``trades``, ``book`` or ``book_delta``)."""
    _, raw_schema, staged_schema = TABLES[table]
    present = set(batch.schema.names)
    missing = [n for n in raw_schema.names if n not in present]
    if missing:
        raise ref.error(
            LakeSchemaError,
            f"missing columns {missing}; the file has {sorted(present)[:12]}... (wrong schema)",
        )
    arrays = []
    for f in staged_schema:
        raw_name = _RAW_NAME.get(f.name, f.name)
        col = batch.column(raw_name)
        try:
            if f.type == staged_schema.field("origin_time").type:
                arrays.append(_time_column(col))
            elif f.name in _FIXED_POINT_COLUMNS or f.name.endswith(("_price", "_size")):
                if not (
                    pa.types.is_floating(col.type)
                    or pa.types.is_integer(col.type)
                    or pa.types.is_decimal(col.type)
                ):
                    raise TypeError(f"expected a number, got {col.type}")
                arrays.append(_fixed_point_column(col))
            elif pa.types.is_string(f.type):
                if not (
                    pa.types.is_string(col.type)
                    or pa.types.is_large_string(col.type)
                    or pa.types.is_dictionary(col.type)
                ):
                    raise TypeError(f"expected a string, got {col.type}")
                arrays.append(col.cast(pa.string()))
            else:
                arrays.append(col.cast(f.type))  # safe cast: 1.5 -> int64 raises
        except (TypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ref.error(
                LakeSchemaError, f"column {raw_name!r} ({col.type}) -> {f.name} {f.type}: {exc}"
            ) from exc
    return pa.Table.from_arrays(arrays, schema=staged_schema)


def validate_structure(table: str, staged: pa.Table, ref: DayRef) -> None:
    """Pandera at schema level (columns, dtypes) on a staged batch: cheap, no data scan."""
    try:
        lake_schemas.BY_TABLE[table].validate(pl.from_arrow(staged).lazy())
    except (pandera.errors.SchemaError, pandera.errors.SchemaErrors) as exc:
        raise ref.error(LakeSchemaError, f"staged {table} fails its pandera schema: {exc}") from exc


@dataclass
class StageResult:
    table: str
    ref: DayRef
    path: Path
    source: dict[str, str]
    objects: list[str]
    rows: int = 0
    raw_bytes: int = 0
    staged_bytes: int = 0
    seconds: float = 0.0
    first_origin_ns: int | None = None
    last_origin_ns: int | None = None
    preview: pa.Table | None = field(default=None, repr=False)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")

    @property
    def mb_per_s(self) -> float:
        """Raw (source) megabytes per second."""
        return self.raw_bytes / 1e6 / self.seconds if self.seconds > 0 else float("nan")


def stage_day(
    source: LakeSource,
    table: str,
    exchange: str,
    symbol: str,
    date: str,
    dest: str | Path,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress: Callable[[int], None] | None = None,
) -> StageResult:
    """Stage one day of ``table`` from ``source`` into ``dest`` atomically; returns what was written."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; expected one of {sorted(TABLES)}")
    ref = DayRef(TABLES[table][0], exchange.upper(), symbol.upper(), date)
    t0 = time.perf_counter()
    objects = source.stat(ref)
    result = StageResult(
        table=table,
        ref=ref,
        path=Path(dest),
        source=source.describe(),
        objects=[o.uri for o in objects],
        raw_bytes=sum(o.size_bytes for o in objects),
    )
    lo: int | None = None
    hi: int | None = None
    previews: list[pa.Table] = []
    with ParquetBatchWriter(dest, TABLES[table][2]) as writer:
        for batch in source.iter_batches(ref, batch_rows=batch_rows):
            staged = normalize_batch(table, batch, ref)
            validate_structure(table, staged, ref)
            writer.write(staged)
            mm = pc.min_max(staged.column("origin_time").cast(pa.int64()))
            if mm["min"].is_valid:
                lo = mm["min"].as_py() if lo is None else min(lo, mm["min"].as_py())
                hi = mm["max"].as_py() if hi is None else max(hi, mm["max"].as_py())
            if sum(len(p) for p in previews) < PREVIEW_ROWS:
                previews.append(staged.slice(0, PREVIEW_ROWS))
            if progress is not None:
                progress(writer.rows)
        if writer.rows == 0:
            # lakeapi turns an unreadable file into zero rows with a warning: an empty day is an error.
            raise ref.error(LakeEmptyDay, f"no rows in {', '.join(result.objects)}")
        result.rows = writer.rows
    result.seconds = time.perf_counter() - t0
    result.staged_bytes = Path(dest).stat().st_size
    result.first_origin_ns, result.last_origin_ns = lo, hi
    result.preview = pa.concat_tables(previews).slice(0, PREVIEW_ROWS) if previews else None
    return result
