"""Symbols and instrument specs, in one place.

Crypto Lake names spot symbols ``BTC-USDT`` (``BTC-USDT-PERP`` for USD-M perpetuals); Binance names them
``BTCUSDT`` in REST and ``btcusdt`` in stream names. Tick and lot steps differ per market (spot and USD-M
``BTCUSDT`` are different instruments): a venue gives them (``venues.for_symbol(sym).instrument(sym)``).
"""

from __future__ import annotations

from dataclasses import dataclass

from rlx_pipeline import fixed_point

# Quote assets tried longest first when splitting a Binance symbol (``RUNEEUR`` -> ``RUNE-EUR``).
QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "JPY")


@dataclass(frozen=True)
class Instrument:
    lake_symbol: str  # BTC-USDT, BTC-USDT-PERP
    tick_size: int  # fixed point (1e-8 units)
    lot_size: int  # fixed point

    @property
    def binance_symbol(self) -> str:
        return to_binance(self.lake_symbol)

    @property
    def stream_symbol(self) -> str:
        return self.binance_symbol.lower()

    @property
    def price_places(self) -> int:
        return _places(self.tick_size)

    @property
    def qty_places(self) -> int:
        return _places(self.lot_size)


def _places(step: int) -> int:
    places = fixed_point.SCALE
    while places > 0 and step % 10 ** (fixed_point.SCALE - places + 1) == 0:
        places -= 1
    return places


def to_binance(lake_symbol: str) -> str:
    """``BTC-USDT`` -> ``BTCUSDT``; ``BTC-USDT-PERP`` -> ``BTCUSDT``."""
    parts = lake_symbol.upper().split("-")
    if len(parts) < 2:
        raise ValueError(f"not a Crypto Lake symbol (BASE-QUOTE[-PERP]): {lake_symbol!r}")
    return parts[0] + parts[1]


def to_lake(binance_symbol: str) -> str:
    """``BTCUSDT`` / ``btcusdt`` -> ``BTC-USDT`` (a venue adds its suffix: ``Venue.lake_symbol``)."""
    s = binance_symbol.upper()
    for quote in QUOTE_ASSETS:
        if s.endswith(quote) and len(s) > len(quote):
            return f"{s[: -len(quote)]}-{quote}"
    raise ValueError(f"cannot split Binance symbol {binance_symbol!r} into base and quote")
