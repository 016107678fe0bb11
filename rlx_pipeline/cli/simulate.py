"""``rlx-pipeline simulate``: one simulated window per symbol, written as Crypto Lake tables and/or a capture."""

from __future__ import annotations

from pathlib import Path

import click


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
def simulate(
    symbols: str, start: str, minutes: float, seed: int, lake_root: Path | None, capture_dir: Path | None
) -> None:
    """Generate a simulated market and write its renderings (deterministic for a seed)."""
    from rlx_pipeline.simulator import SimConfig
    from rlx_pipeline.simulator import simulate as run

    if lake_root is None and capture_dir is None:
        raise click.UsageError("give --lake and/or --capture")
    for i, sym in enumerate(s.strip().upper() for s in symbols.split(",") if s.strip()):
        truth = run(SimConfig(symbol=sym, start=start, duration_s=minutes * 60, seed=seed + i))
        m = truth.market
        click.echo(
            f"{sym}: {len(m.depth):,} depth messages, {len(m.trades):,} trades, {len(m.tickers):,} bookTicker"
        )
        if lake_root is not None:
            for table, path in truth.write_lake(lake_root).items():
                click.echo(f"  lake {table}: {path}")
        if capture_dir is not None:
            path = truth.write_capture(Path(capture_dir) / f"sim-{sym}-{start[:10]}.jsonl.zst")
            click.echo(f"  capture: {path}")
