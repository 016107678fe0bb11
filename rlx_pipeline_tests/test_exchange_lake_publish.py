"""`rlx-pipeline lake publish`: the simulator's Crypto Lake rendering into the local lake directory, and to a
moto S3 server from which the real `lakeapi.load_data` reads it back."""

from __future__ import annotations

import datetime as dt

import boto3
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rlx_pipeline.cli import main
from rlx_pipeline.lake.source import _clear_lakeapi_caches, import_lakeapi
from rlx_pipeline.layout import LAKE_PREFIX, DataLayout
from rlx_pipeline.simulator import SimConfig, simulate
from rlx_pipeline_tests.lake_fixtures import moto_credentials

DATE = "2024-08-09"
TABLES = ("trades", "book", "book_delta_v2")
ARGS = ["--symbols", "BTC-USDT", "--minutes", "0.5", "--seed", "3"]


@pytest.fixture(scope="module")
def truth_tables():
    return simulate(SimConfig(symbol="BTC-USDT", duration_s=30, seed=3)).lake_tables()


def test_publish_writes_the_simulated_tables_into_the_local_lake(tmp_path, truth_tables, monkeypatch):
    monkeypatch.delenv("RLX_LAKE_DIR", raising=False)
    res = CliRunner().invoke(main, ["lake", "publish", "--data-dir", str(tmp_path), *ARGS])
    assert res.exit_code == 0, res.output
    for table in TABLES:
        path = DataLayout(tmp_path).lake_file(table, "BINANCE", "BTC-USDT", DATE)
        assert path.is_file(), res.output
        assert pq.read_table(path).equals(truth_tables[table]), table
        assert truth_tables[table].num_rows > 0


@pytest.fixture
def s3_vars(monkeypatch):
    moto_credentials(
        monkeypatch
    )  # and no AWS_ENDPOINT_URL: the CLI's --s3-endpoint must be what points at moto


def test_publish_to_s3_is_read_back_unchanged_by_lakeapi(
    tmp_path, moto_server, s3_vars, monkeypatch, truth_tables
):
    res = CliRunner().invoke(
        main, ["lake", "publish", "--data-dir", str(tmp_path / "data"), *ARGS, "--s3-endpoint", moto_server]
    )
    assert res.exit_code == 0, res.output
    assert "created bucket qnt.data" in res.output  # the server started empty
    # lakeapi's real code path, pointed at the moto server as docs/crypto-lake.md says (AWS_ENDPOINT_URL).
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    lakeapi = import_lakeapi(tmp_path / "cache")
    _clear_lakeapi_caches(lakeapi)
    day = dt.datetime.fromisoformat(DATE)
    for table in TABLES:
        df = lakeapi.load_data(
            table,
            day,
            day + dt.timedelta(days=1),
            ["BTC-USDT"],
            ["BINANCE"],
            bucket=f"qnt.data/{LAKE_PREFIX}",
            boto3_session=boto3.Session(region_name="eu-west-1"),
            use_threads=False,
            drop_partition_cols=True,
            cached=False,
        )
        want = truth_tables[table]
        assert len(df) == want.num_rows > 0, table
        if table == "trades":
            assert df["trade_id"].tolist() == want["id"].to_pylist()
            assert df["quantity"].tolist() == want["amount"].to_pylist()
            assert df["side"].astype(str).tolist() == want["side"].to_pylist()
            assert df["origin_time"].astype("int64").tolist() == want["timestamp"].to_pylist()
        else:
            assert df["sequence_number"].tolist() == want["sequence_number"].to_pylist()
        if table == "book_delta_v2":
            assert df["price"].tolist() == want["price"].to_pylist()
            assert df["size"].tolist() == want["size"].to_pylist()


def test_publish_without_credentials_says_so(tmp_path, moto_server, monkeypatch):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    res = CliRunner().invoke(
        main, ["lake", "publish", "--data-dir", str(tmp_path), *ARGS, "--s3-endpoint", moto_server]
    )
    assert res.exit_code != 0 and "no AWS credentials" in res.output
