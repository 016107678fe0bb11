"""``rlx-pipeline status``: which days can be used, one line per day and symbol (``rlx_pipeline.catalog``)."""

from __future__ import annotations

from pathlib import Path

import click

from rlx_pipeline.cli.unified import _DATA_DIR, _settings


@click.command("status")
@_DATA_DIR
@click.option("--symbol", "symbols", multiple=True, help="Symbol (repeatable); default: RLX_SYMBOLS.")
@click.option("--start", default=None, help="First day YYYY-MM-DD (default: the first day with any output).")
@click.option(
    "--end", default=None, help="Last day YYYY-MM-DD, inclusive (default: the last day with any output)."
)
def status(data_dir: Path | None, symbols: tuple[str, ...], start: str | None, end: str | None) -> None:
    """One line per day and symbol: status (usable, failed, not reconstructed, not run), served build, failed
    checks, fidelity, share of the day inside invalid intervals, golden coverage. Exit code 0 when every listed
    day is usable, 1 otherwise (and when nothing is listed)."""
    from rlx_pipeline.catalog import catalog

    settings = _settings(data_dir)
    if start and not end:
        end = start
    try:
        rows = catalog(settings.data_dir, list(symbols) or list(settings.symbols), start, end)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    for s in rows:
        click.echo(s.line())
    usable = sum(s.usable for s in rows)
    click.echo(f"{usable} of {len(rows)} day(s) usable", err=True)
    raise SystemExit(0 if rows and usable == len(rows) else 1)
