"""The depth sync state machine on update ids, one symbol, by a venue's ``DepthRules``.

Diffs before a snapshot are buffered; the snapshot replays them; every later diff must continue the chain (spot
``U``, USD-M ``pu``). The book itself is not kept: callers that need it apply the levels of the diffs accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rlx_pipeline.venues.base import SPOT_RULES, DepthRules


@dataclass
class DepthSync:
    rules: DepthRules = SPOT_RULES
    last_update_id: int | None = None  # of the snapshot in effect; None: waiting for a snapshot
    prev_u: int | None = None  # last applied diff; None: first diff after the snapshot not seen yet
    buffered: list[tuple[int, int, int | None]] = field(default_factory=list)  # (U, u, pu) while waiting

    def reset(self) -> None:
        self.last_update_id = None
        self.prev_u = None
        self.buffered.clear()

    def on_diff(self, first: int, last: int, pu: int | None) -> str | None:
        """Returns None when in sync or waiting, else the reason of a gap (the caller resyncs)."""
        if self.last_update_id is None:
            self.buffered.append((first, last, pu))
            return None
        lid = self.last_update_id
        if self.prev_u is None:
            if self.rules.in_snapshot(last, lid):
                return None  # already in the snapshot
            if not self.rules.bridges(first, last, lid):
                return f"snapshot {lid} does not bridge diff U={first} u={last}"
            self.prev_u = last
            return None
        if last <= self.prev_u:
            return None  # already seen (overlapping connections at a hand-over)
        if not self.rules.continues(first, pu, self.prev_u):
            got = f"pu={pu}" if self.rules.pu_chain else f"U={first}"
            return f"expected {self.rules.expected(self.prev_u)}, got {got} (u={last})"
        self.prev_u = last
        return None

    def on_snapshot(self, last_update_id: int) -> str | None:
        self.last_update_id = last_update_id
        self.prev_u = None
        pending, self.buffered = self.buffered, []
        for first, last, pu in pending:
            if (reason := self.on_diff(first, last, pu)) is not None:
                return reason
        return None
