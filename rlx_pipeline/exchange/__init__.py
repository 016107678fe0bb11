"""The local Binance-protocol exchange server (see ``server``): real WebSockets and REST on 127.0.0.1.

from rlx_pipeline.exchange import ExchangeServer, ExchangeThread
with ExchangeThread([truth], speed=50) as srv:      # synchronous callers
    srv.ws_url, srv.rest_url
"""

from rlx_pipeline.exchange.server import ExchangeServer, ExchangeThread

__all__ = ["ExchangeServer", "ExchangeThread"]
