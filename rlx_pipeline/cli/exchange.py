"""``rlx-pipeline exchange serve``: the local Binance-protocol exchange, replaying a simulated market."""

from __future__ import annotations

import asyncio

import click


@click.group("exchange")
def exchange() -> None:
    """The local Binance-protocol exchange server."""


@exchange.command("serve")
@click.option("--symbols", default="BTC-USDT,ETH-USDT", show_default=True)
@click.option("--start", default="2024-08-09T00:00:00Z", show_default=True)
@click.option("--minutes", type=float, default=10.0, show_default=True, help="Simulated window per symbol.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--speed", type=float, default=1.0, show_default=True, help="Replay speed (1 = real time).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=9443, show_default=True, help="0: any free port (printed).")
@click.option("--ping-interval", type=float, default=20.0, show_default=True, help="Seconds between pings.")
@click.option(
    "--ping-timeout", type=float, default=60.0, show_default=True, help="Drop a client without pong."
)
@click.option("--session-limit-s", type=float, default=24 * 3600, show_default=True)
@click.option(
    "--drop-at",
    "drop_at",
    type=float,
    multiple=True,
    help="Fault: disconnect every client at this market second of the window (repeatable).",
)
@click.option(
    "--drop-mode",
    type=click.Choice(["abort", "close"]),
    default="abort",
    show_default=True,
    help="abort: no close frame (network failure); close: close code 1001.",
)
def serve(
    symbols: str,
    start: str,
    minutes: float,
    seed: int,
    speed: float,
    host: str,
    port: int,
    ping_interval: float,
    ping_timeout: float,
    session_limit_s: float,
    drop_at: tuple[float, ...],
    drop_mode: str,
) -> None:
    """Serve /stream, /ws/<stream> and the REST depth until the window is replayed (Ctrl-C to stop).

    The symbols name the venue served: BTC-USDT,ETH-USDT Binance spot (/api/v3/depth), BTC-USDT-PERP Binance
    USD-M (/fapi/v1/depth, USD-M frames); one venue per server."""
    from rlx_pipeline.exchange import ExchangeServer
    from rlx_pipeline.simulator import SimConfig, simulate

    truths = [
        simulate(SimConfig(symbol=s.strip().upper(), start=start, duration_s=minutes * 60, seed=seed + i))
        for i, s in enumerate(x for x in symbols.split(",") if x.strip())
    ]

    async def main() -> None:
        try:
            server = ExchangeServer(
                truths,
                speed=speed,
                host=host,
                port=port,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                session_limit_s=session_limit_s,
                drop_at_s=drop_at,
                drop_mode=drop_mode,
            )
        except ValueError as exc:  # sources of two venues
            raise click.ClickException(str(exc)) from exc
        async with server as srv:
            streams = "/".join(sorted(srv.known_streams))
            symbol = next(iter(srv.books))
            click.echo(f"streams: {srv.ws_url}/stream?streams={streams}", nl=True)
            click.echo(f"REST: {srv.venue.depth_url(srv.rest_url, symbol)}")
            click.echo("the replay starts when the first client connects", nl=True)
            await srv.done.wait()
            click.echo(
                f"replayed {srv.frames_sent:,} frames; scheduled drops (market s, clients): {srv.drops}"
            )

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        click.echo("stopped")
