"""Where Crypto Lake day files come from: one interface, two sources.

``LocalLake`` reads a directory in S3's exact key layout with pyarrow. ``LakeApiLake`` goes through the real
service: ``lakeapi.list_data`` finds the day's objects (and raises ``NoFilesFound`` for a missing day), and
the bytes are streamed by row group with ``pyarrow.fs.S3FileSystem`` so a 100 M-row day never sits in memory
(``read_mode="load_data"`` uses ``lakeapi.load_data`` instead, one pandas frame per day: small days only).
Both yield raw record batches (Crypto Lake's own column names); ``staging`` normalizes them, so the rest of
the pipeline cannot tell which source served a day.

Every failure is a ``LakeError`` subclass whose message names table, exchange, symbol and day.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from rlx_pipeline.layout import LAKE_PREFIX, lake_key

DEFAULT_BATCH_ROWS = 1_000_000


# --- errors ------------------------------------------------------------------------------------------
class LakeError(Exception):
    """A Crypto Lake day that cannot be read; the message names table, exchange, symbol and day."""

    def __init__(self, message: str, *, table: str, exchange: str, symbol: str, date: str) -> None:
        self.table, self.exchange, self.symbol, self.date = table, exchange, symbol, date
        self.detail = message
        super().__init__(f"Crypto Lake {table} exchange={exchange} symbol={symbol} day={date}: {message}")


class LakeMissingDay(LakeError):
    """The day's object does not exist (lakeapi ``NoFilesFound``, a missing local file)."""


class LakeAccessDenied(LakeError):
    """Wrong or missing credentials."""


class LakeUnreachable(LakeError):
    """The endpoint cannot be reached."""


class LakeCorruptFile(LakeError):
    """Truncated or corrupt parquet."""


class LakeSchemaError(LakeError):
    """The file's columns or types are not Crypto Lake's."""


class LakeEmptyDay(LakeError):
    """The day has no rows (lakeapi skips corrupt files with only a warning: never a pass)."""


@dataclass(frozen=True)
class DayRef:
    """One (table, exchange, symbol, date) request; ``table`` is the S3 table name (``book_delta_v2``)."""

    table: str
    exchange: str
    symbol: str
    date: str

    def error(self, cls: type[LakeError], message: str) -> LakeError:
        return cls(message, table=self.table, exchange=self.exchange, symbol=self.symbol, date=self.date)

    @property
    def key(self) -> str:
        return lake_key(self.table, self.exchange, self.symbol, self.date)

    @property
    def day_bounds(self) -> tuple[dt.datetime, dt.datetime]:
        start = dt.datetime.fromisoformat(self.date)
        return start, start + dt.timedelta(days=1)


@dataclass(frozen=True)
class LakeObject:
    uri: str
    size_bytes: int


class LakeSource(Protocol):
    """What staging needs from a Crypto Lake source."""

    name: str

    def describe(self) -> dict[str, str]:
        """Where the source reads from, for metadata (never credentials)."""
        ...

    def stat(self, ref: DayRef) -> list[LakeObject]:
        """The day's objects (usually one); raises ``LakeMissingDay`` and friends."""
        ...

    def iter_batches(self, ref: DayRef, *, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        """The day's raw rows in file order, in batches of at most ``batch_rows``."""
        ...


def _classify_os_error(exc: BaseException) -> type[LakeError]:
    text = str(exc)
    if any(
        s in text for s in ("ACCESS_DENIED", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied")
    ):
        return LakeAccessDenied
    if any(s in text for s in ("NETWORK_CONNECTION", "Couldn't connect", "curlCode", "Connection refused")):
        return LakeUnreachable
    if any(s in text for s in ("NoSuchKey", "RESOURCE_NOT_FOUND", "Path does not exist", "No such file")):
        return LakeMissingDay
    return LakeCorruptFile


def _iter_parquet(ref: DayRef, uri: str, open_file: Any, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Stream one parquet file by row groups, turning reader failures into ``LakeError``s naming ``ref``."""
    try:
        with open_file() as f:
            pf = pq.ParquetFile(f)
            # One reader per row group: a single iter_batches over the whole file keeps ~15 MB per
            # million rows alive until the end (measured, pyarrow 26), which grows with the day.
            for i in range(pf.num_row_groups):
                yield from pf.iter_batches(batch_size=batch_rows, row_groups=[i], use_threads=True)
    except LakeError:
        raise
    except FileNotFoundError as exc:
        raise ref.error(LakeMissingDay, f"{uri} not found") from exc
    except (pa.ArrowInvalid, OSError, pa.ArrowException) as exc:
        cls = _classify_os_error(exc)
        what = "truncated or corrupt parquet" if cls is LakeCorruptFile else cls.__doc__ or cls.__name__
        raise ref.error(cls, f"{uri}: {what} ({exc})") from exc


# --- local directory ---------------------------------------------------------------------------------
class LocalLake:
    """A directory holding ``market-data/cryptofeed/...`` exactly as on S3."""

    name = "local"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()

    def describe(self) -> dict[str, str]:
        return {"source": self.name, "root": str(self.root)}

    def _path(self, ref: DayRef) -> Path:
        return self.root / ref.key

    def stat(self, ref: DayRef) -> list[LakeObject]:
        path = self._path(ref)
        if not path.is_file():
            raise ref.error(LakeMissingDay, f"no file at {path}")
        return [LakeObject(str(path), path.stat().st_size)]

    def iter_batches(self, ref: DayRef, *, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        (obj,) = self.stat(ref)
        yield from _iter_parquet(ref, obj.uri, lambda: open(obj.uri, "rb"), batch_rows)  # noqa: SIM115 - closed by the reader


# --- lakeapi (the real service, or any S3 endpoint in AWS_ENDPOINT_URL) -------------------------------
_IMPORT_LOCK = threading.Lock()


def import_lakeapi(cache_dir: str | os.PathLike[str]) -> Any:
    """Import lakeapi with its caches under ``cache_dir`` rather than ``./.lake_cache``.

    lakeapi builds its caches at import time from the relative path ``.lake_cache`` (FSLRUCache resolves it
    to an absolute path then; joblib keeps it relative), so the import runs inside ``cache_dir`` and the
    joblib store is then rebuilt on an absolute path.
    """
    import sys

    if "lakeapi" in sys.modules:
        return sys.modules["lakeapi"]
    cache_dir = Path(cache_dir).absolute()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _IMPORT_LOCK:
        cwd = os.getcwd()
        os.chdir(cache_dir)
        try:
            import joblib
            import lakeapi
            import lakeapi._cache

            lakeapi._cache._store = joblib.Memory(str(cache_dir / ".lake_cache"), compress=False, verbose=0)
        finally:
            os.chdir(cwd)
    return lakeapi


def _clear_lakeapi_caches(lakeapi: Any) -> None:
    # The listing and login caches are keyed without the endpoint and live up to 8 h: a new or rewritten
    # day would stay invisible. Every call starts from the server's state.
    import lakeapi.main as main

    main.cache.clear()
    main.contents_cache.clear()
    with contextlib.suppress(AttributeError):
        main._login.cache.clear()


class LakeApiLake:
    """Crypto Lake through ``lakeapi`` with a boto3 session from the standard AWS variables or a profile."""

    name = "lakeapi"

    def __init__(
        self,
        *,
        cache_dir: str | os.PathLike[str],
        bucket: str = "qnt.data",
        prefix: str = LAKE_PREFIX,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        aws_profile: str | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        read_mode: str = "stream",
    ) -> None:
        if read_mode not in ("stream", "load_data"):
            raise ValueError(f"read_mode={read_mode!r}: expected 'stream' or 'load_data'")
        self.cache_dir = Path(cache_dir).absolute()
        self.bucket, self.prefix = bucket, prefix
        self._creds = (aws_access_key_id, aws_secret_access_key, aws_session_token)
        self.profile = aws_profile
        self.region = (
            region or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "eu-west-1"
        )
        # boto3 reads AWS_ENDPOINT_URL itself (lakeapi's clients follow); pyarrow gets it explicitly.
        self.endpoint_url = (
            endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        )
        self.read_mode = read_mode

    def describe(self) -> dict[str, str]:
        return {
            "source": self.name,
            "bucket": f"s3://{self.bucket}/{self.prefix}",
            "endpoint": self.endpoint_url or "AWS default",
            "read_mode": self.read_mode,
        }

    # -- sessions --------------------------------------------------------------------------------------
    def _session(self):
        import boto3

        key, secret, token = self._creds
        kwargs: dict[str, Any] = {"region_name": self.region}
        if self.profile:
            kwargs["profile_name"] = self.profile
        if key and secret:
            kwargs.update(aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token)
        return boto3.Session(**kwargs)

    def _filesystem(self, ref: DayRef, session: Any):
        from pyarrow import fs as pafs

        creds = session.get_credentials()
        if creds is None:
            raise ref.error(LakeAccessDenied, "no AWS credentials found (AWS_ACCESS_KEY_ID / profile)")
        frozen = creds.get_frozen_credentials()
        kwargs: dict[str, Any] = dict(
            access_key=frozen.access_key,
            secret_key=frozen.secret_key,
            session_token=frozen.token,
            region=self.region,
            connect_timeout=10,
            request_timeout=60,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=3),
        )
        if self.endpoint_url:
            kwargs["endpoint_override"] = self.endpoint_url
        return pafs.S3FileSystem(**kwargs)

    def _lakeapi_call(self, ref: DayRef, fn_name: str, **kwargs: Any) -> Any:
        lakeapi = import_lakeapi(self.cache_dir)
        import botocore.exceptions as bce
        from lakeapi.exceptions import NoFilesFound

        _clear_lakeapi_caches(lakeapi)
        start, end = ref.day_bounds
        try:
            return getattr(lakeapi, fn_name)(
                ref.table,
                start,
                end,
                [ref.symbol],
                [ref.exchange],
                bucket=f"{self.bucket}/{self.prefix}",
                **kwargs,
            )
        except NoFilesFound as exc:
            raise ref.error(
                LakeMissingDay, f"lakeapi found no file under s3://{self.bucket}/{ref.key}"
            ) from exc
        except bce.NoCredentialsError as exc:
            raise ref.error(
                LakeAccessDenied, "no AWS credentials found (AWS_ACCESS_KEY_ID / profile)"
            ) from exc
        except (bce.EndpointConnectionError, bce.ConnectTimeoutError, bce.ReadTimeoutError) as exc:
            raise ref.error(
                LakeUnreachable, f"endpoint {self.endpoint_url or 'AWS'} unreachable ({exc})"
            ) from exc
        except bce.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "ExpiredToken"):
                raise ref.error(LakeAccessDenied, f"credentials rejected: {code} ({exc})") from exc
            raise ref.error(LakeError, f"S3 error {code}: {exc}") from exc
        except (pa.ArrowInvalid, OSError) as exc:
            raise ref.error(_classify_os_error(exc), f"s3://{self.bucket}/{ref.key}: {exc}") from exc

    # -- LakeSource ------------------------------------------------------------------------------------
    def stat(self, ref: DayRef) -> list[LakeObject]:
        session = self._session()
        entries = self._lakeapi_call(ref, "list_data", boto3_session=session)
        fs = self._filesystem(ref, session)
        objects = []
        for e in sorted(entries, key=lambda e: e["filename"]):
            path = f"{self.bucket}/{self.prefix}/{ref.table}/exchange={e['exchange']}/symbol={e['symbol']}/dt={e['dt']}/{e['filename']}"
            try:
                info = fs.get_file_info(path)
            except OSError as exc:
                raise ref.error(_classify_os_error(exc), f"s3://{path}: {exc}") from exc
            objects.append(LakeObject(f"s3://{path}", int(info.size or 0)))
        return objects

    def iter_batches(self, ref: DayRef, *, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        if self.read_mode == "load_data":
            yield from self._load_data_batches(ref, batch_rows)
            return
        objects = self.stat(ref)
        fs = self._filesystem(ref, self._session())
        for obj in objects:
            path = obj.uri.removeprefix("s3://")
            yield from _iter_parquet(ref, obj.uri, lambda p=path: fs.open_input_file(p), batch_rows)

    def _load_data_batches(self, ref: DayRef, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """``lakeapi.load_data(cached=False)`` back in raw column names (one pandas frame: small days)."""
        objects = self.stat(ref)
        try:
            df = self._lakeapi_call(
                ref,
                "load_data",
                boto3_session=self._session(),
                use_threads=False,
                drop_partition_cols=True,
                cached=False,
            )
        except LakeMissingDay as exc:
            # listed a moment ago, yet load_data finds nothing: lakeapi dropped an empty or unreadable file
            raise ref.error(
                LakeCorruptFile, f"{objects[0].uri} is listed but lakeapi read no data from it"
            ) from exc
        except KeyError as exc:  # lakeapi indexes columns of a frame it could not read
            raise ref.error(
                LakeCorruptFile, f"{objects[0].uri}: lakeapi returned no columns ({exc})"
            ) from exc
        if len(df) == 0:
            raise ref.error(LakeEmptyDay, f"lakeapi.load_data returned no rows for {objects[0].uri}")
        yield from raw_from_lakeapi_frame(df).to_batches(max_chunksize=batch_rows)


def raw_from_lakeapi_frame(df: Any) -> pa.Table:
    """Undo ``load_data``'s renames and conversions so the frame matches the raw file's columns."""
    import pandas as pd

    back = {
        "origin_time": "timestamp",
        "received_time": "receipt_timestamp",
        "quantity": "amount",
        "trade_id": "id",
    }
    df = df.rename(columns={k: v for k, v in back.items() if k in df.columns})
    df = df.drop(columns=[c for c in ("symbol", "exchange", "dt") if c in df.columns])
    for c in ("timestamp", "receipt_timestamp"):
        if c in df.columns and pd.api.types.is_datetime64_any_dtype(df[c]):
            df[c] = df[c].astype("int64")
    if "side" in df.columns and isinstance(df["side"].dtype, pd.CategoricalDtype):
        df["side"] = df["side"].astype(object)
    return pa.Table.from_pandas(df, preserve_index=False)


def make_source(
    source: str,
    *,
    lake_dir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    **lakeapi_kwargs: Any,
) -> LakeSource:
    """``source`` is ``local`` or ``lakeapi`` (RLX_LAKE_SOURCE)."""
    if source == "local":
        return LocalLake(lake_dir)
    if source == "lakeapi":
        return LakeApiLake(cache_dir=cache_dir, **lakeapi_kwargs)
    raise ValueError(f"unknown lake source {source!r}; expected 'local' or 'lakeapi'")
