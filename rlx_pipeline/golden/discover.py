"""Which finished capture files hold a symbol's messages for a day (by their ``.index.json``), and which unfinished
ones (``.partial``: a capture still running, or killed and not yet finalised by a restart) are not read."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rlx_pipeline import instruments, venues
from rlx_pipeline.formats.capture_file import capture_venue, read_index
from rlx_pipeline.golden.parse import day_bounds_ms

# A day may be seeded from the end of the previous day's session (an import split at midnight): files that end
# within this window before the day are parsed for that, not written. Native captures fetch a snapshot at midnight.
LOOKBACK_MS = 3_600_000


def capture_files_for(capture_dir: str | Path, symbol: str, date: str) -> list[Path]:
    """Finished native capture files (``*.jsonl.zst``, never ``.partial``) for ``symbol`` around ``date``,
    in capture order. A file counts only if it holds the symbol's venue (``BTC-USDT`` spot and ``BTC-USDT-PERP``
    USD-M are both ``btcusdt`` streams). Files without an index are included when their venue matches (they are
    read and filtered line by line)."""
    venue = venues.for_symbol(symbol)
    sym = instruments.to_binance(symbol).lower()
    lo, hi = day_bounds_ms(date)
    found: list[tuple[int, str, Path]] = []
    for path in sorted(Path(capture_dir).rglob("*.jsonl.zst")):
        index = read_index(path)
        if capture_venue(path, index) != venue:
            continue
        if index is None:
            found.append((0, str(path), path))
            continue
        if sym not in index.get("symbols", []):
            continue
        first, last = index.get("first_event_ms"), index.get("last_event_ms")
        if first is None or last is None:
            first = (index.get("first_capture_ns") or 0) // 1_000_000
            last = (index.get("last_capture_ns") or 0) // 1_000_000
        if last >= lo - LOOKBACK_MS and first < hi:
            found.append((index.get("first_capture_ns") or 0, str(path), path))
    return [p for _, _, p in sorted(found)]


def partial_files_for(capture_dir: str | Path, date: str) -> list[Path]:
    """Unfinished capture files (``*.jsonl.zst.partial``) of ``date`` or the day before (the capture service
    writes under ``<out>/<UTC day>/``; imports under ``imported/``): never read, so reported."""
    day = dt.date.fromisoformat(date)
    days = {day.isoformat(), (day - dt.timedelta(days=1)).isoformat()}
    return sorted(
        p for p in Path(capture_dir).rglob("*.jsonl.zst.partial") if p.parent.name in days | {"imported"}
    )
