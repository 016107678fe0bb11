"""Import other collectors' Binance captures into the native capture format, losslessly.

- hftbacktest's collector: gzip text, ``<local_recv_ns> <combined-stream frame>`` or
  ``<local_recv_ns> <unwrapped REST depth snapshot>`` (written whenever it (re)synced).
- cryptofeed's playback files: ``*.ws.*`` (first line ``<url> <-> <connect_ts>``, then
  ``<recv_ts_seconds>: <combined-stream frame>``) and ``*.http.*`` (``<url> -> <ts>: <snapshot JSON>``);
  the ws and http files of one recording (same prefix) are merged by receive time into one native file.

The ``data`` bytes are sliced out of each frame, never re-serialised.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

from rlx_pipeline import venues
from rlx_pipeline.formats.capture_file import EVENT_STREAM, SNAPSHOT_SUFFIX, CaptureWriter, event_data

_STREAM_RE = re.compile(rb'^\{"stream":"([^"]+)","data":')
_SYMBOL_IN_URL = re.compile(r"symbol=([A-Za-z0-9]+)")


class ImportError_(ValueError):  # noqa: N801 - not the builtin
    """A line an importer cannot read; names the file and line."""


def _seconds_to_ns(text: str) -> int:
    whole, _, frac = text.strip().partition(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])


def split_frame(frame: bytes, where: str) -> tuple[str, bytes]:
    """``{"stream":..,"data":{..}}`` -> (stream, data bytes verbatim)."""
    frame = frame.rstrip()
    m = _STREAM_RE.match(frame)
    if not m or not frame.endswith(b"}"):
        raise ImportError_(f"{where}: not a combined-stream frame: {frame[:100]!r}")
    return m.group(1).decode(), frame[m.end() : -1]


def _symbol_from_name(path: Path) -> str | None:
    m = re.search(r"binance_(?:spot|futures|usdm)_([a-z0-9]+)_\d{8}", path.name.lower())
    return m.group(1) if m else None


def hftbacktest_venue(path: str | Path) -> venues.Venue:
    """hftbacktest names its files ``binance_<market>_<symbol>_<YYYYMMDD>``: ``futures``/``usdm`` is USD-M."""
    m = re.search(r"binance_(spot|futures|usdm)_", Path(path).name.lower())
    return venues.USDM if m and m.group(1) != "spot" else venues.SPOT


def cryptofeed_venue(ws_path: str | Path) -> venues.Venue:
    """The venue of a cryptofeed ws recording, by the URL on its first line (``<url> <-> <connect ts>``)."""
    with open(ws_path, "rb") as f:
        first = f.readline().decode("utf-8", "replace")
    url = first.partition(" <-> ")[0].strip()
    for v in venues.VENUES.values():
        if url.startswith(v.ws_url):
            return v
    raise ImportError_(f"{ws_path}: line 1: no known venue's WebSocket URL ({url[:80]!r})")


def read_hftbacktest(path: str | Path) -> Iterator[tuple[int, str, bytes]]:
    path = Path(path)
    symbol = _symbol_from_name(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for line_no, line in enumerate(f, 1):
            line = line.rstrip(b"\r\n")
            if not line:
                continue
            ts, _, body = line.partition(b" ")
            where = f"{path}: line {line_no}"
            try:
                capture_ns = int(ts)
            except ValueError as exc:
                raise ImportError_(f"{where}: no receive time: {line[:80]!r}") from exc
            if body.startswith(b'{"stream":'):
                stream, data = split_frame(body, where)
                symbol = stream.split("@", 1)[0]
                yield capture_ns, stream, data
            elif body.startswith(b'{"lastUpdateId":'):
                if symbol is None:
                    raise ImportError_(f"{where}: a REST snapshot before any frame names the symbol")
                yield capture_ns, f"{symbol}{SNAPSHOT_SUFFIX}", body
            else:
                raise ImportError_(f"{where}: neither a frame nor a REST snapshot: {body[:80]!r}")


def read_cryptofeed(
    ws_path: str | Path, http_path: str | Path | None = None
) -> Iterator[tuple[int, str, bytes]]:
    rows: list[tuple[int, int, str, bytes]] = []
    ws_path = Path(ws_path)
    with open(ws_path, "rb") as f:
        for line_no, line in enumerate(f, 1):
            line = line.rstrip(b"\r\n")
            if not line or (line_no == 1 and b" <-> " in line):
                continue
            ts, sep, frame = line.partition(b": ")
            if not sep:
                raise ImportError_(f"{ws_path}: line {line_no}: no '<ts>: ' prefix")
            stream, data = split_frame(frame, f"{ws_path}: line {line_no}")
            rows.append((_seconds_to_ns(ts.decode()), len(rows), stream, data))
    if http_path is not None:
        http_path = Path(http_path)
        with open(http_path, "rb") as f:
            for line_no, line in enumerate(f, 1):
                line = line.rstrip(b"\r\n")
                if not line:
                    continue
                head, sep, body = line.partition(b": ")
                url, _, ts = head.decode().partition(" -> ")
                m = _SYMBOL_IN_URL.search(url)
                if not sep or not m:
                    raise ImportError_(f"{http_path}: line {line_no}: not '<url> -> <ts>: <snapshot>'")
                rows.append((_seconds_to_ns(ts), len(rows), f"{m.group(1).lower()}{SNAPSHOT_SUFFIX}", body))
    rows.sort()
    for capture_ns, _, stream, data in rows:
        yield capture_ns, stream, data


def import_files(paths: list[str | Path], out_dir: str | Path) -> list[Path]:
    """Convert ``paths`` into native capture files under ``out_dir`` (``<capture_dir>/imported``)."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    cryptofeed: dict[tuple[Path, str], dict[str, Path]] = {}
    for p in map(Path, paths):
        m = re.match(r"^(.+)\.(ws|http)\.(\d+)\.(\d+)$", p.name)
        if m:
            cryptofeed.setdefault((p.parent, m.group(1)), {})[m.group(2)] = p
            continue
        written.append(
            _write(
                out_dir / f"{p.name.removesuffix('.gz')}.jsonl.zst",
                read_hftbacktest(p),
                str(p),
                hftbacktest_venue(p),
            )
        )
    for (_, prefix), parts in sorted(cryptofeed.items()):
        if "ws" not in parts:
            raise ImportError_(f"{parts['http']}: a cryptofeed http file without its ws file")
        lines = read_cryptofeed(parts["ws"], parts.get("http"))
        venue = cryptofeed_venue(parts["ws"])
        written.append(_write(out_dir / f"cryptofeed-{prefix}.jsonl.zst", lines, str(parts["ws"]), venue))
    return written


def _write(path: Path, lines: Iterator[tuple[int, str, bytes]], source: str, venue: venues.Venue) -> Path:
    with CaptureWriter(path, venue=venue.name, fsync=False) as w:
        first = True
        last_ns = 0
        for capture_ns, stream, data in lines:
            if first:
                w.write(capture_ns, EVENT_STREAM, event_data("import_start", imported_from=source))
                first = False
            w.write(capture_ns, stream, data)
            last_ns = capture_ns
        w.write(last_ns, EVENT_STREAM, event_data("import_end", imported_from=source))
    return path
