"""``rlx-pipeline demo``: a demo day end to end on the embedded default, with no credentials.

1. simulate a few minutes of each symbol (the project's market simulator, deterministic for a seed);
2. golden samples: capture the simulated market live through the local Binance-protocol exchange server
   (``--capture live``, the default when the capture service is installed) or write the simulator's
   perfect capture (``--capture perfect``);
3. publish the Crypto Lake rendering into the local lake (``RLX_DATA_DIR/lake``);
4. materialize every asset of the demo partitions through Dagster, into a persistent Dagster instance that
   ``dagster dev`` then shows, and print a summary.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

DEMO_DATE = "2024-08-09"
DEMO_SYMBOLS = "BTC-USDT,ETH-USDT"
LIVE_SPEED = 20.0  # replay speed of the local exchange during the demo's live capture

# The repo's dagster.yaml (SQLite, the run queue) is the one instance: the demo installs it into
# <data-dir>/dagster with its storage there, and the README's dagster dev / daemon commands use that DAGSTER_HOME.
_REPO_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"


def dagster_home(data_dir: Path) -> Path:
    """``DAGSTER_HOME`` if set, else ``<data-dir>/dagster``, with the repo's ``dagster.yaml`` installed there
    (storage under that directory) when it has none; without the repo's file Dagster's defaults apply (SQLite
    under ``DAGSTER_HOME``)."""
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"])
    home = data_dir / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists() and _REPO_DAGSTER_YAML.is_file():
        text = _REPO_DAGSTER_YAML.read_text().replace("base_dir: data/dagster", f"base_dir: {home}")
        (home / "dagster.yaml").write_text(text)
    return home


def _prepare(data_dir: Path, date: str, symbols: list[str], minutes: float, seed: int, capture: str) -> None:
    from rlx_pipeline.layout import DataLayout
    from rlx_pipeline.simulator import SimConfig, simulate

    layout = DataLayout(data_dir)
    truths = []
    for i, symbol in enumerate(symbols):
        t0 = time.perf_counter()
        config = SimConfig(symbol=symbol, start=f"{date}T00:00:00Z", duration_s=minutes * 60, seed=seed + i)
        truth = simulate(config)
        truth.write_lake(layout.lake_root)
        truths.append(truth)
        click.echo(
            f"  {symbol}: simulated {minutes:g} min and published the lake rendering ({time.perf_counter() - t0:.1f} s)"
        )
    t0 = time.perf_counter()
    if capture == "live":
        from rlx_pipeline.capture.demo import capture_live

        click.echo(f"  capturing live through the local exchange server (x{LIVE_SPEED:g} speed) ...")
        paths = capture_live(truths, layout.capture_dir, speed=LIVE_SPEED)
    else:
        paths = []
        for truth in truths:
            path = layout.capture_dir / "imported" / f"demo-{date}-{truth.config.symbol}.jsonl.zst"
            paths.append(truth.write_capture(path))
    for path in paths:
        click.echo(f"  golden capture ({capture}) -> {path}")
    click.echo(f"  captured in {time.perf_counter() - t0:.1f} s")


def _live_capture_available() -> bool:
    try:
        from rlx_pipeline.capture.demo import capture_live  # noqa: F401
    except ImportError:
        return False
    return True


@click.command("demo")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="RLX_DATA_DIR",
    default=Path("data"),
    show_default=True,
    help="RLX_DATA_DIR for the demo (lake, captures, outputs, Dagster instance).",
)
@click.option("--date", default=DEMO_DATE, show_default=True, help="Demo day (UTC).")
@click.option(
    "--symbols", default=DEMO_SYMBOLS, show_default=True, help="Comma-separated Crypto Lake symbols."
)
@click.option("--minutes", type=float, default=5.0, show_default=True, help="Simulated minutes per symbol.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--capture",
    type=click.Choice(["auto", "live", "perfect"]),
    default="auto",
    show_default=True,
    help="live: through the local exchange server; perfect: the simulator's own capture file.",
)
@click.option("--prepare-only", is_flag=True, help="Only write the lake and captures; do not run Dagster.")
@click.option(
    "--verbose", is_flag=True, help="Show Dagster's own logs of the runs (hidden: the summary says it)."
)
def demo(
    data_dir: Path,
    date: str,
    symbols: str,
    minutes: float,
    seed: int,
    capture: str,
    prepare_only: bool,
    verbose: bool,
) -> None:
    """Simulate, capture, publish and run the whole pipeline on a demo day."""
    data_dir = data_dir.absolute()
    syms = [s.strip().upper() for s in symbols.split(",") if s.strip()]
    # Settings (and the partitions) are read from the environment when the definitions are imported.
    os.environ["RLX_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("RLX_SYMBOLS", ",".join(syms))
    # The demo day lasts minutes: it needs 1 UTC hour per lake table, not a published day's 23.
    os.environ.setdefault("RLX_LAKE_MIN_HOURS", "1")
    if capture == "auto":
        capture = "live" if _live_capture_available() else "perfect"
    click.echo(f"rlx-pipeline demo: {date} {', '.join(syms)} under {data_dir}")
    t_start = time.perf_counter()
    _prepare(data_dir, date, syms, minutes, seed, capture)
    home = dagster_home(data_dir)
    os.environ["DAGSTER_HOME"] = str(home)
    env = (
        f"export DAGSTER_HOME={home} RLX_DATA_DIR={data_dir} "
        f"RLX_LAKE_MIN_HOURS={os.environ['RLX_LAKE_MIN_HOURS']}"
    )
    if prepare_only:
        click.echo(
            "prepared. Run the pipeline with:\n"
            f"  {env}\n"
            f"  dagster asset materialize -m rlx_pipeline.definitions --select '*' --partition '{date}|{syms[0]}'"
        )
        return

    from rlx_pipeline.orchestration.summary import run_partitions

    ok = run_partitions([f"{date}|{s}" for s in syms], echo=click.echo, verbose=verbose)
    click.echo(f"\ndone in {time.perf_counter() - t_start:.0f} s. Reports: {data_dir / 'reports'}")
    click.echo(
        "Open the web UI (and the daemon: schedule, sensors, alerts) on this instance:\n"
        f"  {env}\n  dagster dev -m rlx_pipeline.definitions      # http://127.0.0.1:3000"
    )
    if not ok:
        sys.exit(1)
