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
@click.option("--port", type=int, default=9443, show_default=True)
@click.option("--session-limit-s", type=float, default=24 * 3600, show_default=True)
def serve(
    symbols: str,
    start: str,
    minutes: float,
    seed: int,
    speed: float,
    host: str,
    port: int,
    session_limit_s: float,
) -> None:
    """Serve /stream, /ws/<stream> and /api/v3/depth until the window is replayed (Ctrl-C to stop)."""
    from rlx_pipeline.exchange import ExchangeServer
    from rlx_pipeline.simulator import SimConfig, simulate

    truths = [
        simulate(SimConfig(symbol=s.strip().upper(), start=start, duration_s=minutes * 60, seed=seed + i))
        for i, s in enumerate(x for x in symbols.split(",") if x.strip())
    ]

    async def main() -> None:
        async with ExchangeServer(
            truths, speed=speed, host=host, port=port, session_limit_s=session_limit_s
        ) as srv:
            click.echo(
                f"streams: {srv.ws_url}/stream?streams=btcusdt@trade/...   REST: {srv.rest_url}/api/v3/depth"
            )
            click.echo("the replay starts when the first client connects")
            await srv.done.wait()
            click.echo(f"replayed {srv.frames_sent:,} frames")

    asyncio.run(main())
