"""What a venue is: the protocol facts one market's capture, parsing and lake naming need (``docs/binance.md``)."""

from __future__ import annotations

from dataclasses import dataclass

from rlx_pipeline import instruments


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


def rules_of_diff(pu: int | None) -> DepthRules:
    """The rules of a diff known only by its fields (a file of unknown venue): one carrying ``pu`` is USD-M's."""
    return USDM_RULES if pu is not None else SPOT_RULES


@dataclass(frozen=True)
class Venue:
    """One market of one exchange: its endpoints, streams, limits, depth rules and Crypto Lake naming."""

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
    max_streams_per_connection: int
    max_connection_s: int  # the server drops a connection after this
    max_connects: int  # connection attempts per IP ...
    connect_window_s: float  # ... per this window
    snapshot_limit: int = 1000

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
