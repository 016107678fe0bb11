"""``rlx-pipeline unified``: build a day's unified stream from staged tables, and look at one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

_DATA_DIR = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="RLX_DATA_DIR."
)


def _settings(data_dir: Path | None):
    from rlx_pipeline.settings import Settings

    env = dict(os.environ)
    if data_dir is not None:
        env["RLX_DATA_DIR"] = str(data_dir)
    return Settings.from_env(env)


@click.group("unified")
def unified() -> None:
    """Build a day's unified stream outside Dagster, or print its first events with their book."""


@unified.command("build")
@_DATA_DIR
@click.option("--date", required=True, help="YYYY-MM-DD")
@click.option("--symbol", required=True, help="e.g. BTC-USDT")
@click.option("--top-n", type=int, default=None, help="Book levels per side (default: RLX_TOP_N).")
@click.option("--book-every", type=click.Choice(["message", "row"]), default="message", show_default=True)
def build(data_dir: Path | None, date: str, symbol: str, top_n: int | None, book_every: str) -> None:
    """Replay the staged tables of DATE x SYMBOL (``dagster asset materialize`` stages them) into
    unified/dt=DATE/symbol=SYMBOL/{events,book}.parquet. No validation gate: the Dagster asset applies it."""
    from rlx_pipeline.book import build_unified

    settings = _settings(data_dir)
    layout = settings.layout
    paths = {t: layout.staged(t, date, symbol) for t in ("trades", "book", "book_delta")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise click.ClickException(f"staged tables missing for {symbol} {date}: {', '.join(missing)}")
    chunks = 97  # 15-minute chunks of the day and its tolerance window
    with click.progressbar(length=chunks, label=f"{symbol} {date}", file=sys.stderr) as bar:
        res = build_unified(
            paths,
            date,
            layout.unified(date, symbol),
            book_dest=layout.unified_book(date, symbol),
            top_n=top_n or settings.top_n,
            book_every=book_every,
            progress=lambda _msg: bar.update(1),
        )
    rate = res.input_rows / res.seconds if res.seconds else 0.0
    click.echo(
        f"{res.rows:,} events ({res.by_type}) and {res.book_rows:,} book states in {res.seconds:.1f} s"
        f" ({rate / 1e6:.2f} M rows/s); self-consistency {res.self_consistency}; engine {res.stats}"
    )
    click.echo(f"{res.path}\n{res.book_path}")


@unified.command("head")
@_DATA_DIR
@click.option("--date", required=True)
@click.option("--symbol", required=True)
@click.option("-n", "rows", type=int, default=20, show_default=True)
@click.option(
    "--unverified",
    type=click.Choice(["raise", "include"]),
    default="include",
    show_default=True,
    help="A day its checks do not vouch for (see README, The gate): refuse, or print it with a warning.",
)
def head(data_dir: Path | None, date: str, symbol: str, rows: int, unverified: str) -> None:
    """Print the first events of a day with the best bid/ask in force after each (decimal prices)."""
    import warnings

    import polars as pl

    from rlx_pipeline.book import UnverifiedDay, read_unified
    from rlx_pipeline.fixed_point import expr_to_decimal

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lf = read_unified(_settings(data_dir).data_dir, symbol, date, on_unverified=unverified)
    except (FileNotFoundError, ValueError, UnverifiedDay) as e:
        raise click.ClickException(str(e)) from e
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    df = (
        lf.head(rows)
        .select(
            "origin_time",
            "event_type",
            "sequence_number",
            expr_to_decimal("price"),
            expr_to_decimal("size"),
            "book_sequence_number",
            expr_to_decimal("bid_0_price"),
            expr_to_decimal("ask_0_price"),
        )
        .collect()
    )
    with pl.Config(tbl_rows=rows, tbl_cols=-1, tbl_width_chars=200):
        click.echo(df)
