"""``rlx-pipeline faults``: corrupt a local Crypto Lake day (or the day's captures) with one of the named faults of
``rlx_pipeline.simulator.faults``, to see a check fail and what it says.

    rlx-pipeline faults list
    rlx-pipeline faults inject --kind drop_trades --date 2024-08-09 --symbol BTC-USDT [--n 3] [--seed 0]

Lake faults rewrite the day's raw files under ``RLX_LAKE_DIR`` (atomically); capture faults rewrite the day's
finished capture files under ``RLX_DATA_DIR/capture``. Run the partition again afterwards to see the checks.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import click

from rlx_pipeline.simulator import faults

LAKE_TABLES = ("trades", "book", "book_delta_v2")
# kind -> what it corrupts: the day's lake tables, the day's capture lines, or files
TABLE_FAULTS = (
    "drop_delta_messages",
    "alter_delta_size",
    "shift_trade_sizes",
    "drop_trades",
    "shift_trade_times",
    "corrupt_rows",
    "zero_origin_times",
    "reorder_delta_messages",
)
CAPTURE_FAULTS = ("drop_depth_frames", "duplicate_frames", "reorder_frames")
FILE_FAULTS = ("remove_day", "truncate_file")
KINDS = TABLE_FAULTS + CAPTURE_FAULTS + FILE_FAULTS


def _summary(kind: str) -> str:
    """The fault's line in ``rlx_pipeline.simulator.faults``'s table."""
    for line in (faults.__doc__ or "").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] == kind:
            return cells[1].replace("``", "")
    return ""


def _call(kind: str, data: object, params: dict[str, object]) -> tuple[object, object]:
    """Call the fault with the parameters it takes; returns (new data, what changed or None)."""
    fn = getattr(faults, kind)
    accepted = inspect.signature(fn).parameters
    result = fn(data, **{k: v for k, v in params.items() if k in accepted and v is not None})
    return result if isinstance(result, tuple) else (result, None)


def inject(
    kind: str,
    date: str,
    symbol: str,
    *,
    lake_root: Path,
    capture_dir: Path,
    table: str = "trades",
    **params: object,
) -> tuple[list[Path], object]:
    """Apply fault ``kind`` to the day ``date`` of ``symbol``; returns the files changed and what changed."""
    from rlx_pipeline.layout import symbol_lake_key

    def lake_file(t: str) -> Path:
        path = lake_root / symbol_lake_key(t, symbol, date)
        if not path.is_file():
            raise click.ClickException(
                f"no lake file {path}: publish the day first (rlx-pipeline simulate --lake)"
            )
        return path

    if kind == "remove_day":
        gone = faults.remove_day(lake_root, symbol, date)
        if not gone:
            raise click.ClickException(f"no lake file of {symbol} on {date} under {lake_root}")
        return gone, None
    if kind == "truncate_file":
        return [faults.truncate_file(lake_file(table), keep=float(params.get("keep") or 0.5))], None
    if kind in TABLE_FAULTS:
        import pyarrow.parquet as pq

        from rlx_pipeline.storage import write_table

        paths = {t: lake_file(t) for t in LAKE_TABLES}
        tables = {t: pq.read_table(p) for t, p in paths.items()}
        new, changed = _call(kind, tables, params)
        touched = [paths[t] for t in LAKE_TABLES if new[t] is not tables[t]]
        for t in LAKE_TABLES:
            if new[t] is not tables[t]:
                write_table(paths[t], new[t])
        return touched, changed
    if kind in CAPTURE_FAULTS:
        from rlx_pipeline.formats.capture_file import (
            capture_venue,
            iter_capture_lines,
            read_index,
            write_capture,
        )
        from rlx_pipeline.golden import capture_files_for

        files = capture_files_for(capture_dir, symbol, date)
        if not files:
            raise click.ClickException(f"no capture file of {symbol} on {date} under {capture_dir}")
        changes = {}
        for path in files:
            lines = [(ns, stream, data) for _, ns, stream, data in iter_capture_lines(path)]
            new, changed = _call(kind, lines, params)
            write_capture(path, new, venue=capture_venue(path, read_index(path)).name)
            changes[str(path)] = changed
        return files, changes
    raise click.ClickException(f"unknown fault kind {kind!r}: one of {', '.join(KINDS)}")


@click.group("faults")
def faults_cli() -> None:
    """Corrupt a local lake day or capture with a named fault (to see a check fail)."""


@faults_cli.command("list")
def list_kinds() -> None:
    """The fault kinds and what each does."""
    for kind in KINDS:
        click.echo(f"{kind:24} {_summary(kind)}")


@faults_cli.command("inject")
@click.option(
    "--kind", required=True, type=click.Choice(KINDS), help="The fault (see `rlx-pipeline faults list`)."
)
@click.option("--date", required=True, help="UTC day, YYYY-MM-DD.")
@click.option("--symbol", required=True, help="Crypto Lake symbol, e.g. BTC-USDT.")
@click.option(
    "--n", type=int, default=1, show_default=True, help="How many rows/messages/frames the fault hits."
)
@click.option("--factor", type=float, default=None, help="Multiplier (shift_trade_sizes, alter_delta_size).")
@click.option("--seconds", type=float, default=30.0, show_default=True, help="Shift (shift_trade_times).")
@click.option(
    "--keep", type=float, default=0.5, show_default=True, help="Share of bytes kept (truncate_file)."
)
@click.option(
    "--table", type=click.Choice(LAKE_TABLES), default="trades", show_default=True, help="truncate_file."
)
@click.option("--seed", type=int, default=0, show_default=True)
def inject_cmd(
    kind: str,
    date: str,
    symbol: str,
    n: int,
    factor: float | None,
    seconds: float,
    keep: float,
    table: str,
    seed: int,
) -> None:
    """Apply one fault to a day of the local lake (RLX_LAKE_DIR) or its captures (RLX_DATA_DIR/capture)."""
    from rlx_pipeline.settings import Settings

    settings = Settings.from_env()
    files, changed = inject(
        kind,
        date,
        symbol.upper(),
        lake_root=Path(settings.lake_root),
        capture_dir=settings.layout.capture_dir,
        table=table,
        n=n,
        factor=factor,
        seconds=seconds,
        keep=keep,
        seed=seed,
    )
    click.echo(f"{kind}: {_summary(kind)}")
    for path in files:
        click.echo(f"  changed {path}")
    if changed is not None:
        click.echo(f"  affected: {changed}")
    click.echo(
        "See the checks fail:\n"
        f"  dagster asset materialize -m rlx_pipeline.definitions --select '*' --partition '{date}|{symbol.upper()}'"
    )
