"""``rlx-pipeline simulate``: one simulated window per symbol, written as Crypto Lake tables and/or a capture."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rlx_pipeline.simulator.market import Market


@click.command("simulate")
@click.option("--symbols", default="BTC-USDT", show_default=True)
@click.option("--start", default="2024-08-09T00:00:00Z", show_default=True)
@click.option("--minutes", type=float, default=5.0, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--lake",
    "lake_root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the Crypto Lake rendering under this lake root.",
)
@click.option(
    "--capture",
    "capture_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write a perfect native capture file per symbol into this directory (the window is held in memory).",
)
@click.option(
    "--window-minutes",
    type=float,
    default=60.0,
    show_default=True,
    help="The lake rendering is simulated and written one window at a time: memory follows one window.",
)
def simulate(
    symbols: str,
    start: str,
    minutes: float,
    seed: int,
    lake_root: Path | None,
    capture_dir: Path | None,
    window_minutes: float,
) -> None:
    """Generate a simulated market and write its renderings (deterministic for a seed)."""
    from rlx_pipeline.simulator import SimConfig, render, write_lake_stream
    from rlx_pipeline.simulator import simulate as run

    if lake_root is None and capture_dir is None:
        raise click.UsageError("give --lake and/or --capture")
    for i, sym in enumerate(s.strip().upper() for s in symbols.split(",") if s.strip()):
        config = SimConfig(symbol=sym, start=start, duration_s=minutes * 60, seed=seed + i)
        if lake_root is not None:
            counts = {"depth": 0, "trades": 0}
            windows = max(1, math.ceil(minutes / window_minutes))
            with click.progressbar(length=windows, label=f"{sym} lake", file=sys.stderr) as bar:

                def advance(window: Market, counts: dict = counts, bar=bar) -> None:
                    counts["depth"] += len(window.depth)
                    counts["trades"] += len(window.trades)
                    bar.update(1)

                paths = write_lake_stream(config, lake_root, chunk_s=window_minutes * 60, progress=advance)
            click.echo(f"{sym}: {counts['depth']:,} depth messages, {counts['trades']:,} trades")
            for table, path in paths.items():
                click.echo(f"  lake {table}: {path}")
        if capture_dir is not None:
            m = run(config).market
            click.echo(
                f"{sym}: {len(m.depth):,} depth messages, {len(m.trades):,} trades, {len(m.tickers):,} bookTicker"
            )
            path = render.write_capture(m, Path(capture_dir) / f"sim-{sym}-{start[:10]}.jsonl.zst")
            click.echo(f"  capture: {path}")
