"""The lakeapi source against a moto S3 server (real lakeapi, boto3 and pyarrow S3 code paths, no mocks)."""

from __future__ import annotations

import os
import subprocess
import sys

import moto.settings
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlx_pipeline.lake.source import (
    LakeAccessDenied,
    LakeApiLake,
    LakeCorruptFile,
    LakeEmptyDay,
    LakeError,
    LakeMissingDay,
    LakeSchemaError,
    LakeUnreachable,
    LocalLake,
)
from rlx_pipeline.lake.staging import stage_day
from rlx_pipeline.lake.synthetic import RawDaySpec, write_raw_day
from rlx_pipeline_tests.conftest import DATE, SYMBOL
from rlx_pipeline_tests.lake_fixtures import (
    BUCKET,
    free_port,
    s3_env,
    small_day_tables,
    upload_lake_dir,
    write_lake_tables,
)

TABLES = ("trades", "book", "book_delta")
SYNTH_DATE = "2024-08-10"


@pytest.fixture
def s3(moto_server, monkeypatch, tmp_path):
    """Env pointing boto3/lakeapi/pyarrow at moto; a fresh bucket holding a hand-written and a synthetic day."""
    client = s3_env(moto_server, monkeypatch)
    root = tmp_path / "lake"
    write_lake_tables(root, small_day_tables(DATE), DATE)
    write_raw_day(
        root, RawDaySpec(date=SYNTH_DATE, delta_messages=3000, trades=2000, snapshot_every=25, seed=3)
    )
    upload_lake_dir(client, root)
    return client, root


def _lakeapi(tmp_path, **kw) -> LakeApiLake:
    return LakeApiLake(cache_dir=tmp_path / "cache" / "lakeapi", **kw)


@pytest.mark.parametrize("read_mode", ["stream", "load_data"])
def test_lakeapi_and_local_stage_identical_tables(s3, tmp_path, read_mode):
    _, root = s3
    remote = _lakeapi(tmp_path, read_mode=read_mode)
    for date in (DATE, SYNTH_DATE):
        for table in TABLES:
            a = stage_day(
                LocalLake(root), table, "BINANCE", SYMBOL, date, tmp_path / f"local-{table}.parquet"
            )
            b = stage_day(
                remote, table, "BINANCE", SYMBOL, date, tmp_path / f"s3-{table}.parquet", batch_rows=999
            )
            ta, tb = pq.read_table(a.path), pq.read_table(b.path)
            assert ta.equals(tb, check_metadata=True), (date, table)
            assert a.rows == b.rows == len(ta) > 0
            assert b.raw_bytes == a.raw_bytes and b.objects[0].startswith(
                f"s3://{BUCKET}/market-data/cryptofeed/"
            )
    assert b.source["source"] == "lakeapi" and b.source["endpoint"] == os.environ["AWS_ENDPOINT_URL"]


def test_lakeapi_cache_stays_in_its_own_directory(s3, tmp_path):
    """`import lakeapi` creates `.lake_cache` in the cwd: import_lakeapi must put it under the cache dir."""
    cwd, cache = tmp_path / "cwd", tmp_path / "cache"
    cwd.mkdir()
    code = (
        "import datetime as d, boto3;"
        "from rlx_pipeline.lake.source import import_lakeapi;"
        f"m = import_lakeapi({str(cache)!r});"
        f"print(len(m.list_data('trades', d.datetime(2024,8,9), d.datetime(2024,8,10), ['BTC-USDT'], ['BINANCE'],"
        " bucket='qnt.data/market-data/cryptofeed', boto3_session=boto3.Session())))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "1"
    assert not (cwd / ".lake_cache").exists()
    assert (cache / ".lake_cache").is_dir()


def test_new_day_is_seen_at_once(s3, tmp_path):
    """lakeapi's listing cache (8 h, endpoint-blind) must not hide a day uploaded after a first listing."""
    client, root = s3
    remote = _lakeapi(tmp_path)
    with pytest.raises(LakeMissingDay):
        stage_day(remote, "trades", "BINANCE", SYMBOL, "2024-08-11", tmp_path / "t.parquet")
    write_lake_tables(root, {"trades": small_day_tables("2024-08-11")["trades"]}, "2024-08-11")
    upload_lake_dir(client, root)
    assert stage_day(remote, "trades", "BINANCE", SYMBOL, "2024-08-11", tmp_path / "t.parquet").rows == 3


def _assert_named(exc: LakeError, table: str, date: str = DATE) -> None:
    for part in (table, "BINANCE", SYMBOL, date):
        assert part in str(exc), str(exc)


@pytest.fixture
def staged(s3, tmp_path):
    dest = tmp_path / "staged.parquet"
    stage_day(_lakeapi(tmp_path), "book_delta", "BINANCE", SYMBOL, DATE, dest)
    return dest, dest.read_bytes()


@pytest.mark.parametrize("read_mode", ["stream", "load_data"])
def test_missing_day(staged, tmp_path, read_mode):
    dest, before = staged
    with pytest.raises(LakeMissingDay) as ei:
        stage_day(
            _lakeapi(tmp_path, read_mode=read_mode), "book_delta", "BINANCE", SYMBOL, "2024-08-12", dest
        )
    _assert_named(ei.value, "book_delta_v2", "2024-08-12")
    assert "lakeapi found no file" in str(ei.value)
    assert dest.read_bytes() == before


def test_wrong_credentials(staged, tmp_path, monkeypatch):
    dest, before = staged
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # moto now checks access keys
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0")
    with pytest.raises(LakeAccessDenied) as ei:
        stage_day(_lakeapi(tmp_path), "book_delta", "BINANCE", SYMBOL, DATE, dest)
    _assert_named(ei.value, "book_delta_v2")
    assert "InvalidAccessKeyId" in str(ei.value)
    assert dest.read_bytes() == before


def test_no_credentials(staged, tmp_path, monkeypatch):
    dest, before = staged
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(LakeAccessDenied, match="no AWS credentials") as ei:
        stage_day(_lakeapi(tmp_path), "book_delta", "BINANCE", SYMBOL, DATE, dest)
    _assert_named(ei.value, "book_delta_v2")
    assert dest.read_bytes() == before


def test_unreachable_endpoint(staged, tmp_path, monkeypatch):
    dest, before = staged
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(LakeUnreachable) as ei:
        stage_day(_lakeapi(tmp_path), "book_delta", "BINANCE", SYMBOL, DATE, dest)
    _assert_named(ei.value, "book_delta_v2")
    assert "127.0.0.1" in str(ei.value)
    assert dest.read_bytes() == before


def _put(client, table: str, body: bytes, date: str = DATE) -> None:
    key = f"market-data/cryptofeed/{table}/exchange=BINANCE/symbol={SYMBOL}/dt={date}/1.snappy.parquet"
    client.put_object(Bucket=BUCKET, Key=key, Body=body)


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


@pytest.mark.parametrize("cut", ["truncated", "garbage"])
def test_corrupt_file_stream_mode(staged, s3, tmp_path, cut):
    client, _ = s3
    dest, before = staged
    good = _parquet_bytes(small_day_tables(DATE)["book_delta_v2"])
    _put(client, "book_delta_v2", good[: len(good) // 2] if cut == "truncated" else b"garbage" * 50)
    with pytest.raises(LakeCorruptFile) as ei:
        stage_day(_lakeapi(tmp_path), "book_delta", "BINANCE", SYMBOL, DATE, dest)
    _assert_named(ei.value, "book_delta_v2")
    assert dest.read_bytes() == before


@pytest.mark.parametrize("body", [b"", b"garbage" * 50])
def test_corrupt_file_load_data_mode_is_not_a_pass(staged, s3, tmp_path, body):
    """lakeapi.load_data skips an unreadable file with a warning: staging must still fail, naming the day."""
    client, _ = s3
    dest, before = staged
    _put(client, "book_delta_v2", body)  # lakeapi: "no data available" -> nothing, just a warning
    with pytest.raises((LakeEmptyDay, LakeCorruptFile)) as ei:
        stage_day(_lakeapi(tmp_path, read_mode="load_data"), "book_delta", "BINANCE", SYMBOL, DATE, dest)
    _assert_named(ei.value, "book_delta_v2")
    assert dest.read_bytes() == before


def test_wrong_schema(staged, s3, tmp_path):
    client, _ = s3
    dest, before = staged
    _put(
        client, "book_delta_v2", _parquet_bytes(small_day_tables(DATE)["trades"])
    )  # a trades file in its place
    with pytest.raises(LakeSchemaError, match="missing columns") as ei:
        stage_day(_lakeapi(tmp_path), "book_delta", "BINANCE", SYMBOL, DATE, dest)
    _assert_named(ei.value, "book_delta_v2")
    assert dest.read_bytes() == before
