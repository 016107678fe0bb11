"""The update ids the golden samples vouch for: the coverage figures count the lake's losses inside them.

A capture's first depth messages can precede its first REST snapshot: those the snapshot already holds
(``u <= lastUpdateId``) are dropped by Binance's book procedure, so no golden book state exists for them and a lake
rendered from the capture (``golden.lake_render``) does not carry them either. The golden window for update ids
therefore starts after the day's earliest snapshot; every golden depth message from there on (start, middle, end
of the captured minutes) is one the lake must have. A day seeded by a snapshot carried from the previous day
starts with that snapshot's id, i.e. covers the whole captured day.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl


def first_snapshot_update_id(snapshots: str | Path | None) -> int | None:
    """The smallest ``last_update_id`` of the day's golden snapshots table, ``None`` without one."""
    if snapshots is None or not Path(snapshots).is_file():
        return None
    value = pl.scan_parquet(snapshots).select(pl.col("last_update_id").min()).collect().item()
    return None if value is None else int(value)
