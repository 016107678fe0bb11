"""Raw Crypto Lake test days and a moto S3 server (the checked recipe of docs/crypto-lake.md)."""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto.server import ThreadedMotoServer

from rlx_pipeline.formats.lake_tables import RAW_BOOK, RAW_BOOK_DELTA, RAW_TRADES
from rlx_pipeline.layout import LAKE_PREFIX, lake_key

BUCKET = "qnt.data"
NS = 1_000_000_000


def day_ns(date: str) -> int:
    return int(dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC).timestamp()) * NS


def small_day_tables(date: str) -> dict[str, pa.Table]:
    """A hand-written day: 3 trades, 3 book rows (one level missing), 3 delta messages after the first book row."""
    t0 = day_ns(date)
    trades = pa.table(
        {
            "side": ["buy", "sell", "buy"],
            "amount": [0.001, 0.5, 1.23456789],
            "price": [60000.01, 59999.99, 60000.0],
            "id": pa.array([100, 101, 102], pa.int64()),
            "timestamp": pa.array([t0 + 1 * NS, t0 + 3600 * NS, t0 + 7200 * NS], pa.int64()),
            "receipt_timestamp": pa.array(
                [t0 + 1 * NS + 5, t0 + 3600 * NS + 5, t0 + 7200 * NS + 5], pa.int64()
            ),
        },
        schema=RAW_TRADES,
    )
    book_cols: dict[str, list] = {
        "timestamp": [t0 + 2 * NS, t0 + 10 * NS, t0 + 20 * NS],
        "receipt_timestamp": [t0 + 2 * NS + 7, t0 + 10 * NS + 7, t0 + 20 * NS + 7],
        "sequence_number": [1000, 1010, 1020],
    }
    for side, sign in (("bid", -1), ("ask", 1)):
        for i in range(20):
            price = round(60000.0 + sign * (i + 1) * 0.01, 2)
            book_cols[f"{side}_{i}_price"] = [price, price, price]
            book_cols[f"{side}_{i}_size"] = [0.1 * (i + 1), 0.2, 0.3]
    book_cols["ask_19_price"] = [float("nan"), 60000.2, 60000.2]  # a thin side: level absent
    book_cols["ask_19_size"] = [float("nan"), 0.2, 0.3]
    book = pa.table(book_cols, schema=RAW_BOOK)
    deltas = pa.table(
        {
            "timestamp": pa.array(
                [t0 + 3 * NS, t0 + 3 * NS, t0 + 5 * NS, t0 + 15 * NS, t0 + 15 * NS], pa.int64()
            ),
            "receipt_timestamp": pa.array(
                [t0 + 3 * NS + 9, t0 + 3 * NS + 9, t0 + 5 * NS + 9, t0 + 15 * NS + 9, t0 + 15 * NS + 9],
                pa.int64(),
            ),
            "sequence_number": pa.array([1001, 1001, 1005, 1015, 1015], pa.int64()),
            "side_is_bid": [True, False, True, False, True],
            "price": [59999.98, 60000.02, 59999.99, 60000.01, 59999.5],
            "size": [1.5, 0.0, 2.25, 0.00000001, 3.0],
        },
        schema=RAW_BOOK_DELTA,
    )
    return {"trades": trades, "book": book, "book_delta_v2": deltas}


def write_lake_tables(
    root: Path, tables: dict[str, pa.Table], date: str, symbol="BTC-USDT", exchange="BINANCE"
):
    paths = {}
    for table, t in tables.items():
        p = Path(root) / lake_key(table, exchange, symbol, date)
        p.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(t, p, compression="snappy")
        paths[table] = p
    return paths


def upload_lake_dir(client, root: Path) -> list[str]:
    """Upload every file under ``root/market-data`` to the bucket under the same keys."""
    keys = []
    for p in sorted((Path(root) / LAKE_PREFIX).rglob("*.parquet")):
        key = str(p.relative_to(root))
        client.put_object(Bucket=BUCKET, Key=key, Body=p.read_bytes())
        keys.append(key)
    return keys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def random_book_delta_rows(n: int, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "timestamp": np.full(n, 1, np.int64),
            "receipt_timestamp": np.full(n, 1, np.int64),
            "sequence_number": np.arange(n, dtype=np.int64),
            "side_is_bid": rng.random(n) < 0.5,
            "price": rng.random(n) + 1,
            "size": rng.random(n),
        },
        schema=RAW_BOOK_DELTA,
    )


@pytest.fixture(scope="module")
def moto_server():
    """A moto S3 server on 127.0.0.1, an ephemeral port, for the module."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def moto_credentials(monkeypatch) -> None:
    """moto's test keys and region, and none of the caller's own AWS profile, session or endpoint."""
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_MAX_ATTEMPTS": "1",
    }.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(k, raising=False)


def s3_env(endpoint: str, monkeypatch) -> object:
    """Point boto3, lakeapi and pyarrow at ``endpoint`` with moto's test keys; an empty ``qnt.data`` bucket."""
    moto_credentials(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    client = boto3.client("s3")
    if any(b["Name"] == BUCKET for b in client.list_buckets().get("Buckets", [])):
        for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    else:
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return client
