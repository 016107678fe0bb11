"""``rlx-pipeline capture``: run the live capture service; inspect a capture file."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from rlx_pipeline import venues


@click.group()
def capture() -> None:
    """Capture Binance streams as golden samples (native .jsonl.zst files)."""


@capture.command("run")
@click.option(
    "--venue",
    type=click.Choice(sorted(venues.VENUES)),
    default="binance_spot",
    show_default=True,
    help="The market captured (rlx_pipeline.venues): endpoints, default streams, depth rules, file naming.",
)
@click.option(
    "--symbols", default="btcusdt,ethusdt", show_default=True, help="Binance symbols, comma separated."
)
@click.option(
    "--streams",
    default=None,
    help="Streams per symbol, comma separated (default: the venue's: spot trade,aggTrade,depth@100ms,bookTicker; "
    "USD-M aggTrade,depth@100ms,bookTicker, depth@0ms as an option).",
)
@click.option(
    "--ws-url", default=None, help="WebSocket base URL (default RLX_CAPTURE_WS_URL, else the venue's)."
)
@click.option(
    "--rest-url", default=None, help="REST base URL (default RLX_CAPTURE_REST_URL, else the venue's)."
)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Default: RLX_DATA_DIR/capture.")
@click.option("--duration", type=float, default=None, help="Seconds to capture (default: until SIGTERM).")
@click.option("--rotate-s", type=int, default=3600, show_default=True, help="File rotation period.")
@click.option("--status-every", type=float, default=10.0, show_default=True, help="Status line period (s).")
@click.option(
    "--max-streams-per-connection",
    type=click.IntRange(min=1),
    default=None,
    help="Streams per combined-stream connection (default: the venue's limit, 1024 on Binance); more streams open "
    "more connections.",
)
def run(
    venue: str,
    symbols: str,
    streams: str | None,
    ws_url: str | None,
    rest_url: str | None,
    out: Path | None,
    duration: float | None,
    rotate_s: int,
    status_every: float,
    max_streams_per_connection: int | None,
) -> None:
    """Capture until --duration elapses or SIGTERM; every frame kept verbatim."""
    from rlx_pipeline.capture.service import CaptureConfig, run_capture
    from rlx_pipeline.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = Settings.from_env()
    try:
        cfg = CaptureConfig(
            venue=venues.by_name(venue),
            symbols=[s.strip() for s in symbols.split(",") if s.strip()],
            streams=tuple(s.strip() for s in streams.split(",") if s.strip()) if streams else None,
            ws_url=ws_url or settings.capture_ws_url,
            rest_url=rest_url or settings.capture_rest_url,
            out_dir=out or settings.layout.capture_dir,
            duration_s=duration,
            rotate_s=rotate_s,
            status_every_s=status_every,
            max_streams_per_connection=max_streams_per_connection,
        )
    except ValueError as exc:  # a stream the venue does not serve
        raise click.ClickException(str(exc)) from exc
    stats = run_capture(cfg)
    click.echo(
        f"captured {sum(stats.messages.values())} lines, gaps={stats.gaps}, reconnects={stats.reconnects}, "
        f"snapshots={stats.snapshots}"
    )
    for f in stats.files:
        click.echo(f"  {f}")


@capture.command("inspect")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def inspect(path: Path) -> None:
    """Lines per stream and events of a capture file (finished or .partial)."""
    from collections import Counter

    from rlx_pipeline.formats.capture_file import EVENT_STREAM, iter_capture_lines

    counts: Counter = Counter()
    n = 0
    for _line_no, _ns, stream, data in iter_capture_lines(path):
        n += 1
        counts[stream] += 1
        if stream == EVENT_STREAM:
            click.echo(data.decode())
    click.echo(f"{path}: {n} lines")
    for stream, c in sorted(counts.items()):
        click.echo(f"  {stream}: {c}")


@capture.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Default: RLX_DATA_DIR/capture/imported."
)
def import_(paths: tuple[Path, ...], out: Path | None) -> None:
    """Convert hftbacktest (.gz) and cryptofeed (.ws./.http.) captures into native capture files."""
    from rlx_pipeline.capture.importers import import_files
    from rlx_pipeline.settings import Settings

    out_dir = out or Settings.from_env().layout.capture_dir / "imported"
    for path in import_files(list(paths), out_dir):
        click.echo(str(path))
