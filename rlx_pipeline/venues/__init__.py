"""Venues: one module per market (``binance_spot``, ``binance_usdm``) holding what is venue-specific.

A Crypto Lake symbol names its market (``BTC-USDT`` spot, ``BTC-USDT-PERP`` USD-M), so ``for_symbol`` gives a
partition's venue; a capture file names its venue by ``name`` (``formats.capture_file``). Adding a venue: a
module with its ``VENUE`` listed in ``VENUES`` (README, "Adding a venue").
"""

from __future__ import annotations

from rlx_pipeline.venues import binance_spot, binance_usdm
from rlx_pipeline.venues.base import (
    PARSED_KINDS,
    SPOT_RULES,
    USDM_RULES,
    DepthRules,
    FrameError,
    FrameFields,
    Venue,
)
from rlx_pipeline.venues.sync import DepthSync

VENUES: dict[str, Venue] = {v.name: v for v in (binance_spot.VENUE, binance_usdm.VENUE)}
SPOT = binance_spot.VENUE
USDM = binance_usdm.VENUE
# What a capture file without a venue holds: files written before venues existed were all spot captures.
LEGACY_CAPTURE_VENUE = SPOT


class UnknownVenueError(ValueError):
    """A venue name or symbol no venue module serves; the message lists the known ones."""


def by_name(name: str) -> Venue:
    try:
        return VENUES[name]
    except KeyError:
        raise UnknownVenueError(f"unknown venue {name!r}: expected one of {sorted(VENUES)}") from None


def for_symbol(lake_symbol: str) -> Venue:
    """The venue a Crypto Lake symbol names: ``BTC-USDT`` -> Binance spot, ``BTC-USDT-PERP`` -> Binance USD-M."""
    for v in VENUES.values():
        if v.owns(lake_symbol):
            return v
    raise UnknownVenueError(
        f"no venue serves Crypto Lake symbol {lake_symbol!r}: expected BASE-QUOTE (Binance spot) "
        "or BASE-QUOTE-PERP (Binance USD-M)"
    )


__all__ = [
    "LEGACY_CAPTURE_VENUE",
    "PARSED_KINDS",
    "SPOT",
    "SPOT_RULES",
    "USDM",
    "USDM_RULES",
    "VENUES",
    "DepthRules",
    "DepthSync",
    "FrameError",
    "FrameFields",
    "UnknownVenueError",
    "Venue",
    "by_name",
    "for_symbol",
]
