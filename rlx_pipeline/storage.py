"""Atomic writes: a reader never sees a half-written file, a failed write keeps the previous good one.

Every output goes to a temporary file in the destination's directory, is flushed and fsynced, then renamed
over the destination (``os.replace`` is atomic on POSIX); the directory is fsynced so the rename survives a
crash. On any exception the temporary file is removed and the destination is untouched. Files get the mode a
plain ``open()`` would give them (0666 less the process umask), not ``mkstemp``'s private 0600: outputs are read
by other users' notebooks.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rlx_pipeline import fixed_point

ROW_GROUP_SIZE = 1_000_000


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (``os.umask`` alone must set it)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_dir = _fsync_dir  # public: ``promotion`` makes its renames durable the same way


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it replaces ``dest`` atomically."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(dest: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def write_text(dest: str | os.PathLike[str], text: str) -> Path:
    return write_bytes(dest, text.encode())


def write_json(dest: str | os.PathLike[str], obj: Any) -> Path:
    return write_text(dest, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_table(dest: str | os.PathLike[str], table: pa.Table, *, fixed_point_scale: bool = True) -> Path:
    """Write one Arrow table as parquet (zstd), atomically."""
    with ParquetBatchWriter(dest, table.schema, fixed_point_scale=fixed_point_scale) as w:
        w.write_table(table)
    return Path(dest)


def write_batches(
    dest: str | os.PathLike[str],
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch | pa.Table],
    *,
    fixed_point_scale: bool = True,
) -> int:
    """Stream batches into one parquet file, atomically; returns the number of rows written."""
    with ParquetBatchWriter(dest, schema, fixed_point_scale=fixed_point_scale) as w:
        for b in batches:
            w.write(b)
        return w.rows


class ParquetBatchWriter:
    """Parquet writer for bounded-memory output: batches go out as they come, the file appears at close.

    Use as a context manager; an exception inside the block discards everything written so far.
    """

    def __init__(
        self,
        dest: str | os.PathLike[str],
        schema: pa.Schema,
        *,
        fixed_point_scale: bool = True,
        row_group_size: int = ROW_GROUP_SIZE,
        compression: str = "zstd",
        use_dictionary: bool = True,
        column_encoding: dict[str, str] | None = None,
    ) -> None:
        self.dest = Path(dest)
        self.schema = fixed_point.with_scale_metadata(schema) if fixed_point_scale else schema
        self.rows = 0
        self._row_group_size = row_group_size
        self._compression = compression
        self._use_dictionary = use_dictionary
        self._column_encoding = column_encoding
        self._ctx: contextlib.AbstractContextManager[Path] | None = None
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> ParquetBatchWriter:
        self._ctx = atomic_path(self.dest)
        tmp = self._ctx.__enter__()
        self._writer = pq.ParquetWriter(
            tmp,
            self.schema,
            compression=self._compression,
            use_dictionary=self._use_dictionary,
            column_encoding=self._column_encoding,
        )
        return self

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        assert self._writer is not None, "use ParquetBatchWriter as a context manager"
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        if len(table) == 0:
            return
        table = table.cast(self.schema) if table.schema != self.schema else table
        self._writer.write_table(table, row_group_size=self._row_group_size)
        self.rows += len(table)

    write_table = write

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert self._writer is not None and self._ctx is not None
        try:
            self._writer.close()
        except BaseException as close_exc:
            if exc_type is None:  # the close itself failed: discard the temp file, then raise
                self._ctx.__exit__(type(close_exc), close_exc, close_exc.__traceback__)
                raise
        return bool(self._ctx.__exit__(exc_type, exc, tb))


def streaming_parquet(
    path: str | os.PathLike[str], read_dictionary: list[str] | None = None
) -> pq.ParquetFile:
    """A parquet file to read in one pass of ``iter_batches`` in bounded memory (``read_dictionary``: columns
    read as dictionary arrays).

    pyarrow's default ``pre_buffer=True`` keeps the bytes of every row group read so far until the reader is
    done, so one pass over a whole file ends up holding most of it (170 MB of a 24 h staged ``book_delta``, and
    more for every larger file); without it the reader holds the row group it is in. Same data, same CPU time
    on local files."""
    return pq.ParquetFile(path, pre_buffer=False, read_dictionary=read_dictionary)
