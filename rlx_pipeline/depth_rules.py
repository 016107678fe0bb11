"""The depth sync rules by a ``futures`` flag, for callers that have not taken a venue yet
(``fidelity.golden_book``): the rules themselves live in ``rlx_pipeline.venues`` (``DepthRules``), this only
picks spot's or USD-M's."""

from __future__ import annotations

from rlx_pipeline.venues import SPOT_RULES, USDM_RULES


def in_snapshot(u: int, last_update_id: int, futures: bool) -> bool:
    """The diff ending at ``u`` is already in the snapshot (drop it)."""
    return (USDM_RULES if futures else SPOT_RULES).in_snapshot(u, last_update_id)


def bridges(first: int, u: int, last_update_id: int, futures: bool) -> bool:
    """The diff ``[first, u]`` is the one that starts the book from the snapshot."""
    return (USDM_RULES if futures else SPOT_RULES).bridges(first, u, last_update_id)


def continues(first: int, pu: int | None, prev_u: int) -> bool:
    """The diff follows the one ending at ``prev_u``: by ``pu`` when the stream carries it (USD-M), else by ``U``."""
    return (USDM_RULES if pu is not None else SPOT_RULES).continues(first, pu, prev_u)
