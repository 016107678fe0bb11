"""``rlx-pipeline export``: usable days of a symbol to hftbacktest (.npz) or Tardis CSV."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from rlx_pipeline.cli.unified import _DATA_DIR, _settings


def _range(f: Callable) -> Callable:
    f = click.option("--end", required=True, help="Last day YYYY-MM-DD (inclusive).")(f)
    f = click.option("--start", required=True, help="First day YYYY-MM-DD.")(f)
    f = click.option("--symbol", required=True, help="e.g. BTC-USDT")(f)
    return _DATA_DIR(f)


def _run(label: str, data_dir: Path | None, symbol: str, start: str, end: str, fn: Callable):
    """Run an export with a progress bar over the range's unified-stream events; domain errors -> exit 1."""
    import pyarrow.parquet as pq

    from rlx_pipeline.catalog import DayNotUsable
    from rlx_pipeline.export.hftbacktest_npz import usable_days

    root = _settings(data_dir).data_dir
    try:
        total = sum(pq.ParquetFile(e).metadata.num_rows for _, e, _ in usable_days(root, symbol, start, end))
        with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
            return fn(root, bar.update)
    except (DayNotUsable, FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from e


@click.group("export")
def export() -> None:
    """Export usable days (``rlx-pipeline status``) to the formats backtesters read. Days whose validation
    failed, or that were never reconstructed, are refused."""


@export.command("hftbacktest")
@_range
@click.option(
    "--us", "microseconds", is_flag=True, help="Floor timestamps to microseconds (Tardis's resolution)."
)
@click.option(
    "--base-latency", type=int, default=0, show_default=True, help="ns added where feed latency is corrected."
)
@click.option("--no-compress", is_flag=True, help="Store the .npz uncompressed (faster, larger).")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def hftbacktest_cmd(
    data_dir: Path | None, symbol: str, start: str, end: str, microseconds: bool, base_latency: int,
    no_compress: bool, out: Path,
) -> None:  # fmt: skip
    """Days START..END of SYMBOL as one hftbacktest .npz (array `data` of hftbacktest's event_dtype)."""
    from rlx_pipeline.export import export_hftbacktest

    res = _run(
        f"hftbacktest {symbol} {start}..{end}", data_dir, symbol, start, end,
        lambda root, progress: export_hftbacktest(
            root, symbol, start, end, out, timestamp_unit="us" if microseconds else "ns",
            base_latency=base_latency, compress=not no_compress, progress=progress,
        ),
    )  # fmt: skip
    f = res.feed
    click.echo(
        f"{res.rows:,} rows from {res.events_in:,} events ({f.trades:,} trades, {f.deltas:,} deltas, "
        f"{f.snapshots} snapshots, {f.correction_rows} correction rows) in {res.seconds:.1f} s "
        f"({res.events_per_s / 1e6:.2f} M events/s); local times shifted by {res.local_offset_ns} ns"
    )
    click.echo(str(res.path))


@export.command("tardis")
@_range
@click.option(
    "--exchange",
    default=None,
    help="Tardis exchange name source (default: the symbol's venue: BTC-USDT BINANCE, "
    "BTC-USDT-PERP BINANCE_FUTURES).",
)
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
def tardis_cmd(
    data_dir: Path | None, symbol: str, start: str, end: str, exchange: str | None, out_dir: Path
) -> None:
    """Days START..END of SYMBOL as Tardis CSV (incremental_book_L2 and trades, gzip, one file per day and type)."""
    from rlx_pipeline import venues
    from rlx_pipeline.export import export_tardis

    ex = exchange or venues.for_symbol(symbol).lake_exchange
    res = _run(
        f"tardis {symbol} {start}..{end}", data_dir, symbol, start, end,
        lambda root, progress: export_tardis(root, symbol, start, end, out_dir, exchange=ex, progress=progress),
    )  # fmt: skip
    click.echo(f"{res.book_rows:,} book rows, {res.trade_rows:,} trades in {res.seconds:.1f} s")
    for f in res.files:
        click.echo(str(f))
