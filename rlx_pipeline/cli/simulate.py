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
    help="Write a perfect native capture file per symbol into this directory.",
)
@click.option(
    "--window-minutes",
    type=float,
    default=60.0,
    show_default=True,
    help="Simulated and written one window at a time: memory follows one window, not the run.",
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
    from rlx_pipeline.simulator import SimConfig, write_stream

    if lake_root is None and capture_dir is None:
        raise click.UsageError("give --lake and/or --capture")
    for i, sym in enumerate(s.strip().upper() for s in symbols.split(",") if s.strip()):
        config = SimConfig(symbol=sym, start=start, duration_s=minutes * 60, seed=seed + i)
        counts = {"depth": 0, "trades": 0, "tickers": 0}
        windows = max(1, math.ceil(minutes / window_minutes))
        with click.progressbar(length=windows, label=sym, file=sys.stderr) as bar:

            def advance(window: Market, counts: dict = counts, bar=bar) -> None:
                counts["depth"] += len(window.depth)
                counts["trades"] += len(window.trades)
                counts["tickers"] += len(window.tickers)
                bar.update(1)

            paths = write_stream(
                config,
                lake_root=lake_root,
                capture_path=None
                if capture_dir is None
                else Path(capture_dir) / f"sim-{sym}-{start[:10]}.jsonl.zst",
                chunk_s=window_minutes * 60,
                progress=advance,
            )
        click.echo(
            f"{sym}: {counts['depth']:,} depth messages, {counts['trades']:,} trades,"
            f" {counts['tickers']:,} bookTicker"
        )
        for what, path in paths.items():
            click.echo(f"  {what}: {path}")
