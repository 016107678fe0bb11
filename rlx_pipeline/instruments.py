"""Symbols and instrument specs, in one place.

Crypto Lake names spot symbols ``BTC-USDT`` (``BTC-USDT-PERP`` for USD-M perpetuals); Binance names them
``BTCUSDT`` in REST and ``btcusdt`` in stream names. Tick and lot sizes are Binance's published filters.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlx_pipeline import fixed_point

# Quote assets tried longest first when splitting a Binance symbol (``RUNEEUR`` -> ``RUNE-EUR``).
QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "JPY")


@dataclass(frozen=True)
class Instrument:
    lake_symbol: str  # BTC-USDT
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


def _spec(sym: str, tick: str, lot: str) -> Instrument:
    return Instrument(sym, fixed_point.parse(tick), fixed_point.parse(lot))


# Binance spot PRICE_FILTER.tickSize / LOT_SIZE.stepSize (2024).
KNOWN: dict[str, Instrument] = {
    i.lake_symbol: i
    for i in (
        _spec("BTC-USDT", "0.01", "0.00001"),
        _spec("ETH-USDT", "0.01", "0.0001"),
        _spec("SOL-USDT", "0.01", "0.001"),
        _spec("BNB-USDT", "0.01", "0.001"),
        _spec("XRP-USDT", "0.0001", "1"),
        _spec("DOGE-USDT", "0.00001", "1"),
        _spec("NKN-USDT", "0.0001", "1"),
        _spec("BLZ-ETH", "0.00000001", "1"),
        _spec("LRC-BTC", "0.00000001", "1"),
        _spec("RUNE-EUR", "0.001", "0.01"),
    )
}


def instrument(lake_symbol: str) -> Instrument:
    """Spec for a symbol; unknown symbols get the finest steps (1e-8), which is always exact."""
    return KNOWN.get(lake_symbol.upper(), Instrument(lake_symbol.upper(), 1, 1))


def to_binance(lake_symbol: str) -> str:
    """``BTC-USDT`` -> ``BTCUSDT``; ``BTC-USDT-PERP`` -> ``BTCUSDT``."""
    parts = lake_symbol.upper().split("-")
    if len(parts) < 2:
        raise ValueError(f"not a Crypto Lake symbol (BASE-QUOTE[-PERP]): {lake_symbol!r}")
    return parts[0] + parts[1]


def to_lake(binance_symbol: str, futures: bool = False) -> str:
    """``BTCUSDT`` / ``btcusdt`` -> ``BTC-USDT`` (``BTC-USDT-PERP`` with ``futures``)."""
    s = binance_symbol.upper()
    for quote in QUOTE_ASSETS:
        if s.endswith(quote) and len(s) > len(quote):
            lake = f"{s[: -len(quote)]}-{quote}"
            return f"{lake}-PERP" if futures else lake
    raise ValueError(f"cannot split Binance symbol {binance_symbol!r} into base and quote")
