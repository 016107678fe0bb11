"""What a venue is: the protocol facts one market's capture, parsing and lake naming need (``docs/binance.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rlx_pipeline import fixed_point, instruments


@dataclass(frozen=True)
class DepthRules:
    """A diff-depth stream's synchronisation rules on update ids.

    A diff carries ``U`` (its first update id) and ``u`` (its final one); a USD-M diff also carries ``pu``, the
    previous diff's ``u``. After a REST snapshot with ``lastUpdateId``:

    - a diff the snapshot already holds is dropped: spot ``u <= lastUpdateId``, USD-M ``u < lastUpdateId`` (the
      futures diff ending exactly at it is the first one to apply);
    - the first diff applied must bridge the snapshot: spot ``U <= lastUpdateId + 1 <= u``, USD-M
      ``U <= lastUpdateId <= u``;
    - every later diff must continue the previous one: spot ``U == prev_u + 1``, USD-M ``pu == prev_u`` (the ``pu``
      chain, checked on every diff; a USD-M diff without ``pu`` breaks it).
    """

    pu_chain: bool  # USD-M: continuity by ``pu``, snapshot bridged at ``lastUpdateId`` itself

    def in_snapshot(self, u: int, last_update_id: int) -> bool:
        """The diff ending at ``u`` is already in the snapshot (drop it)."""
        return u < last_update_id if self.pu_chain else u <= last_update_id

    def bridges(self, first: int, u: int, last_update_id: int) -> bool:
        """The diff ``[first, u]`` is the one that starts the book from the snapshot."""
        if self.pu_chain:
            return first <= last_update_id <= u
        return first <= last_update_id + 1 <= u

    def continues(self, first: int, pu: int | None, prev_u: int) -> bool:
        """The diff follows the one ending at ``prev_u``."""
        if self.pu_chain:
            return pu is not None and int(pu) == prev_u
        return first == prev_u + 1

    def expected(self, prev_u: int) -> str:
        """What the next diff must carry, for a gap's reason."""
        return f"pu={prev_u}" if self.pu_chain else f"U={prev_u + 1}"


SPOT_RULES = DepthRules(pu_chain=False)
USDM_RULES = DepthRules(pu_chain=True)

# The stream kinds the golden tables are parsed from; a venue's ``frames`` says which of them it serves.
PARSED_KINDS = ("trade", "aggTrade", "bookTicker", "depth")


class FrameError(ValueError):
    """A frame that is not its venue's: a field the venue's frames always carry is missing (or null), one they
    never carry is there, or the venue has no such stream. Parsers add the file and line."""


@dataclass(frozen=True)
class FrameFields:
    """The fields one stream kind's frames carry on a venue (``docs/binance.md``)."""

    required: frozenset[str]  # always there, never null
    absent: frozenset[str] = frozenset()  # another venue's fields: a frame carrying one is not this venue's

    def check(self, msg: Mapping[str, Any], what: str) -> None:
        missing = sorted(f for f in self.required if msg.get(f) is None)
        foreign = sorted(f for f in self.absent if f in msg)
        if missing or foreign:
            why = [f"without {', '.join(missing)}"] if missing else []
            why += [f"with {', '.join(foreign)}"] if foreign else []
            raise FrameError(f"{what} frame {' and '.join(why)}: not this venue's frame (docs/binance.md)")


@dataclass(frozen=True)
class Venue:
    """One market of one exchange: its endpoints, streams, limits, depth rules, frame fields, instrument steps and
    Crypto Lake naming."""

    name: str  # stable id written into capture files: ``binance_spot``, ``binance_usdm``
    lake_exchange: str  # Crypto Lake's exchange: ``BINANCE``, ``BINANCE_FUTURES``
    lake_suffix: str  # Crypto Lake symbol form: ``BTC-USDT`` + suffix (``-PERP`` for USD-M perpetuals)
    ws_url: str  # WebSocket base; combined streams at ``<ws_url>/stream?streams=``
    rest_url: str
    depth_path: str  # REST depth snapshot path
    default_streams: tuple[str, ...]
    depth_streams: tuple[str, ...]  # the diff-depth stream names this venue serves
    trade_stream: str  # the public trade stream the golden trades come from
    depth_rules: DepthRules
    # per parsed kind (``PARSED_KINDS``) this venue serves: the fields its frames carry
    frames: Mapping[str, FrameFields] = field(hash=False)
    max_streams_per_connection: int
    max_connection_s: int  # the server drops a connection after this
    max_connects: int  # connection attempts per IP ...
    connect_window_s: float  # ... per this window
    snapshot_limit: int = 1000
    # Binance symbol -> (PRICE_FILTER tickSize, LOT_SIZE stepSize) as decimal strings (docs/binance.md)
    steps: Mapping[str, tuple[str, str]] = field(default_factory=dict, hash=False)

    def owns(self, lake_symbol: str) -> bool:
        """The Crypto Lake symbol names this venue's market."""
        parts = lake_symbol.upper().split("-")
        suffix = "-" + "-".join(parts[2:]) if len(parts) > 2 else ""
        return suffix == self.lake_suffix

    def lake_symbol(self, binance_symbol: str) -> str:
        """``BTCUSDT`` / ``btcusdt`` -> this venue's Crypto Lake symbol (``BTC-USDT``, ``BTC-USDT-PERP``)."""
        return instruments.to_lake(binance_symbol) + self.lake_suffix

    def depth_url(self, rest_url: str, symbol: str, limit: int | None = None) -> str:
        """The REST depth snapshot URL of ``symbol`` (any case) on ``rest_url`` (this venue's or a local peer's)."""
        limit = self.snapshot_limit if limit is None else limit
        return f"{rest_url.rstrip('/')}{self.depth_path}?symbol={symbol.upper()}&limit={limit}"

    def check_frame(self, kind: str, msg: Mapping[str, Any]) -> None:
        """Raise ``FrameError`` unless ``msg`` is a frame of this venue's ``kind`` stream (one of
        ``PARSED_KINDS``: ``depth`` for every diff-depth stream)."""
        fields = self.frames.get(kind)
        if fields is None:
            raise FrameError(f"{self.name} has no {kind} stream (its trade stream is {self.trade_stream})")
        fields.check(msg, f"{self.name} {kind}")

    def diff_ids(self, msg: Mapping[str, Any]) -> tuple[int, int, int | None]:
        """``(U, u, pu)`` of a diff-depth frame held to this venue's fields (``pu`` None on spot)."""
        self.check_frame("depth", msg)
        pu = msg.get("pu")
        return int(msg["U"]), int(msg["u"]), None if pu is None else int(pu)

    def instrument(self, lake_symbol: str) -> instruments.Instrument:
        """The instrument of one of this venue's Crypto Lake symbols, with this venue's tick and lot steps;
        a symbol without listed steps gets the finest (1e-8), which is always exact."""
        steps = self.steps.get(instruments.to_binance(lake_symbol))
        tick, lot = (fixed_point.parse(steps[0]), fixed_point.parse(steps[1])) if steps else (1, 1)
        return instruments.Instrument(lake_symbol.upper(), tick, lot)
