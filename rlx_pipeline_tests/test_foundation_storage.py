import os
import stat

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlx_pipeline import fixed_point, storage


def _table(n: int) -> pa.Table:
    return pa.table({"a": pa.array(range(n), pa.int64())})


def test_write_table_is_atomic_and_records_the_scale(tmp_path):
    dest = tmp_path / "x" / "data.parquet"
    storage.write_table(dest, _table(3))
    t = pq.read_table(dest)
    assert t.column("a").to_pylist() == [0, 1, 2]
    assert t.schema.metadata[fixed_point.SCALE_METADATA_KEY] == b"8"
    assert [p.name for p in dest.parent.iterdir()] == ["data.parquet"]


def test_a_write_that_raises_midway_keeps_the_previous_file(tmp_path):
    dest = tmp_path / "data.parquet"
    storage.write_table(dest, _table(2))

    def batches():
        yield _table(5)
        raise RuntimeError("source broke mid-way")

    with pytest.raises(RuntimeError, match="mid-way"):
        storage.write_batches(dest, _table(0).schema, batches())
    assert pq.read_table(dest).num_rows == 2
    assert [p.name for p in tmp_path.iterdir()] == ["data.parquet"]  # no temp file left behind


def test_batch_writer_streams_and_is_idempotent(tmp_path):
    dest = tmp_path / "data.parquet"
    for _ in range(2):
        n = storage.write_batches(dest, _table(0).schema, (_table(10) for _ in range(3)))
    assert n == 30
    assert pq.read_table(dest).num_rows == 30


def test_json_and_text_writes_replace_atomically(tmp_path):
    dest = tmp_path / "r" / "report.json"
    storage.write_json(dest, {"b": 1, "a": 2})
    assert dest.read_text().startswith('{\n  "a": 2')
    with pytest.raises(ZeroDivisionError), storage.atomic_path(dest) as tmp:
        tmp.write_text("half")
        1 / 0  # noqa: B018
    assert '"a": 2' in dest.read_text()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    """Another user's notebook reads the outputs: atomic writes honour the umask like open() does."""
    old = os.umask(umask)
    try:
        paths = [
            storage.write_json(tmp_path / "a.json", {"x": 1}),
            storage.write_table(tmp_path / "t.parquet", pa.table({"x": [1]})),
        ]
        plain = tmp_path / "plain"
        plain.write_text("x")
    finally:
        os.umask(old)
    assert [stat.S_IMODE(p.stat().st_mode) for p in paths] == [mode, mode]
    assert stat.S_IMODE(plain.stat().st_mode) == mode
