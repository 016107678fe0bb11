"""``rlx-pipeline lake``: the local Crypto Lake (publish a simulated day, render captures, upload to S3)."""

from __future__ import annotations

import os
from pathlib import Path

import click


def _lake_root(data_dir: Path | None) -> Path:
    from rlx_pipeline.settings import Settings

    env = dict(os.environ)
    if data_dir is not None:
        env["RLX_DATA_DIR"] = str(data_dir)
    return Settings.from_env(env).lake_root


@click.group("lake")
def lake() -> None:
    """The local Crypto Lake: publish simulated days, render captures, upload to an S3 server."""


@lake.command("publish")
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="RLX_DATA_DIR."
)
@click.option("--symbols", default="BTC-USDT,ETH-USDT", show_default=True)
@click.option("--start", default="2024-08-09T00:00:00Z", show_default=True, help="Window start (UTC).")
@click.option("--minutes", type=float, default=5.0, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--s3-endpoint", default=None, help="Also upload to this S3 endpoint (e.g. a moto server).")
@click.option("--bucket", default="qnt.data", show_default=True)
def publish(
    data_dir: Path | None,
    symbols: str,
    start: str,
    minutes: float,
    seed: int,
    s3_endpoint: str | None,
    bucket: str,
) -> None:
    """Simulate a window per symbol and write its Crypto Lake rendering into the local lake (and S3)."""
    from rlx_pipeline.simulator import SimConfig, simulate

    root = _lake_root(data_dir)
    written: list[Path] = []
    for i, sym in enumerate(s.strip().upper() for s in symbols.split(",") if s.strip()):
        truth = simulate(SimConfig(symbol=sym, start=start, duration_s=minutes * 60, seed=seed + i))
        paths = truth.write_lake(root)
        written += paths.values()
        click.echo(f"{sym}: {', '.join(str(p.relative_to(root)) for p in paths.values())}")
    if s3_endpoint:
        _upload(written, root, s3_endpoint, bucket)


def _upload(paths: list[Path], root: Path, endpoint: str, bucket: str) -> None:
    """Upload under the Crypto Lake key layout; credentials and region from the standard AWS variables."""
    import boto3
    import botocore.exceptions as bce

    s3 = boto3.session.Session().client(  # a fresh session: the environment as it is now
        "s3", endpoint_url=endpoint, region_name=os.environ.get("AWS_DEFAULT_REGION", "eu-west-1")
    )
    try:
        s3.head_bucket(Bucket=bucket)
    except bce.NoCredentialsError as exc:
        raise click.ClickException(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (a moto server takes any, "
            "e.g. 'testing')"
        ) from exc
    except bce.EndpointConnectionError as exc:
        raise click.ClickException(f"S3 endpoint {endpoint} unreachable: {exc}") from exc
    except bce.ClientError:
        region = s3.meta.region_name
        # us-east-1 is the one region S3 refuses as an explicit LocationConstraint.
        config = (
            {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        )
        s3.create_bucket(Bucket=bucket, **config)
        click.echo(f"created bucket {bucket} ({region}) at {endpoint}")
    for p in paths:
        key = str(p.relative_to(root))
        s3.upload_file(str(p), bucket, key)
        click.echo(f"uploaded s3://{bucket}/{key}")


@lake.command("from-capture")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="RLX_DATA_DIR."
)
@click.option(
    "--book-every-s", type=float, default=10.0, show_default=True, help="20-level `book` row period."
)
def from_capture(files: tuple[Path, ...], data_dir: Path | None, book_every_s: float) -> None:
    """Render native capture files (see `capture import` for other formats) as Crypto Lake tables, each under
    the exchange and symbol of the venue the file holds (spot: BINANCE/BTC-USDT, USD-M:
    BINANCE_FUTURES/BTC-USDT-PERP)."""
    from rlx_pipeline.formats.capture_file import read_index
    from rlx_pipeline.golden.lake_render import render_lake_from_capture

    ordered = sorted(files, key=lambda f: ((read_index(f) or {}).get("first_capture_ns") or 0, str(f)))
    out = render_lake_from_capture(ordered, _lake_root(data_dir), book_every_s=book_every_s)
    for (sym, date), paths in out.items():
        click.echo(f"{sym} {date}: {', '.join(sorted(paths))}")
    if not out:
        raise click.ClickException("no trade or depth message found in the given files")
