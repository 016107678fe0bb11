"""The local Binance-protocol exchange server (see ``server``): real WebSockets and REST on 127.0.0.1.

    from rlx_pipeline.exchange import ExchangeServer, ExchangeThread
    async with ExchangeServer([truth], speed=50, ping_interval=20, session_limit_s=24 * 3600) as srv:
        srv.ws_url        # ws://127.0.0.1:PORT  -> /stream?streams=btcusdt@trade/...  or  /ws/btcusdt@trade
        srv.rest_url      # http://127.0.0.1:PORT -> /api/v3/depth?symbol=BTCUSDT&limit=1000
        await srv.drop_clients()          # fault: cut every connection, no close frame
        await srv.close_clients(1001)     # fault: server-side close with a close frame
        await srv.server_shutdown()       # Binance's {"e":"serverShutdown"} event
        await srv.done.wait()             # the whole source replayed
    with ExchangeThread([truth], speed=50, drop_at_s=[10.0]) as srv:   # synchronous callers (own loop, thread)
        ...

A source is any ``FrameSource`` (``binance_frames()``, ``initial_snapshot()``, a symbol), such as
``rlx_pipeline.simulator.simulate(SimConfig(...))``.
"""

from rlx_pipeline.exchange.server import ExchangeServer, ExchangeThread, FrameSource, source_symbol

__all__ = ["ExchangeServer", "ExchangeThread", "FrameSource", "source_symbol"]
