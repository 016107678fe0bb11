"""Binance's diff-depth synchronisation rules (docs/binance.md) on update ids, in one place.

A diff carries ``U`` (its first update id) and ``u`` (its final one); a USD-M futures diff also carries ``pu``, the
previous diff's ``u``. After a REST snapshot with ``lastUpdateId``:

- a diff the snapshot already holds is dropped: spot ``u <= lastUpdateId``, USD-M ``u < lastUpdateId`` (the futures
  diff ending exactly at it is the first one to apply);
- the first diff applied must bridge the snapshot: spot ``U <= lastUpdateId + 1 <= u``, USD-M
  ``U <= lastUpdateId <= u``;
- every later diff must continue the previous one: spot ``U == prev_u + 1``, USD-M ``pu == prev_u``.
"""

from __future__ import annotations


def in_snapshot(u: int, last_update_id: int, futures: bool) -> bool:
    """The diff ending at ``u`` is already in the snapshot (drop it)."""
    return u < last_update_id if futures else u <= last_update_id


def bridges(first: int, u: int, last_update_id: int, futures: bool) -> bool:
    """The diff ``[first, u]`` is the one that starts the book from the snapshot."""
    return first <= last_update_id <= u if futures else first <= last_update_id + 1 <= u


def continues(first: int, pu: int | None, prev_u: int) -> bool:
    """The diff follows the one ending at ``prev_u``: by ``pu`` when the stream carries it (USD-M), else by ``U``."""
    return int(pu) == prev_u if pu is not None else first == prev_u + 1
