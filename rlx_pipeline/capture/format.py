"""The native capture format: one line per received message, kept byte for byte, in small zstd frames.

    {"capture_ns":<local receive ns>,"stream":"<stream name>","data":<the data object's bytes as received>}

- REST depth snapshots: stream ``<symbol>@depthSnapshot``, data = the REST body verbatim.
- Capture events (session_start, reconnect, gap, resync, rotate, session_end): stream ``rlx@event``.
- A file is a sequence of independent zstd frames (one per flush, at most ~1 s of data), so a file cut by
  ``kill -9`` decodes up to its last complete frame. ``<file>.index.json`` sits next to each finished file.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import zstandard

EVENT_STREAM = "rlx@event"
SNAPSHOT_SUFFIX = "@depthSnapshot"
FLUSH_NS = 1_000_000_000


class CaptureFormatError(ValueError):
    """A capture line that is not ``{"capture_ns","stream","data"}``; names the file and line."""


def encode_line(capture_ns: int, stream: str, data: bytes) -> bytes:
    """The line for one message; ``data`` is embedded verbatim (never re-serialised)."""
    return b'{"capture_ns":%d,"stream":"%s","data":%s}\n' % (capture_ns, stream.encode(), data)


def event_data(kind: str, **fields: object) -> bytes:
    return orjson.dumps({"type": kind, **fields})


@dataclass
class CaptureIndex:
    symbols: set[str] = field(default_factory=set)
    streams: Counter = field(default_factory=Counter)
    lines: int = 0
    first_capture_ns: int | None = None
    last_capture_ns: int | None = None
    first_event_ms: int | None = None
    last_event_ms: int | None = None

    def add(self, capture_ns: int, stream: str, data: bytes) -> None:
        # Called for every message the capture writes: the symbol is derived once per new stream, not per line.
        self.lines += 1
        streams = self.streams
        seen = streams.get(stream, 0)
        streams[stream] = seen + 1
        if not seen and stream != EVENT_STREAM:
            self.symbols.add(stream.split("@", 1)[0])
        if self.first_capture_ns is None:
            self.first_capture_ns = capture_ns
        self.last_capture_ns = capture_ns
        event_ms = _event_ms(data)
        if event_ms is not None:
            if self.first_event_ms is None or event_ms < self.first_event_ms:
                self.first_event_ms = event_ms
            if self.last_event_ms is None or event_ms > self.last_event_ms:
                self.last_event_ms = event_ms

    def to_json(self) -> dict:
        return {
            "symbols": sorted(self.symbols),
            "streams": dict(sorted(self.streams.items())),
            "lines": self.lines,
            "first_capture_ns": self.first_capture_ns,
            "last_capture_ns": self.last_capture_ns,
            "first_event_ms": self.first_event_ms,
            "last_event_ms": self.last_event_ms,
        }


_DIGITS = re.compile(rb"[0-9]+")


def _event_ms(data: bytes) -> int | None:
    # Cheap: E (or T) sits near the start of Binance events; avoid a full parse per line. The key must lie in
    # the first 80 bytes; its digits are read wherever they end.
    for key in (b'"E":', b'"T":'):
        i = data.find(key, 0, 80)
        if i >= 0:
            m = _DIGITS.match(data, i + 4)
            if m is not None:
                return int(m.group())
    return None


def index_path(path: str | os.PathLike[str]) -> Path:
    return Path(f"{path}.index.json")


class CaptureWriter:
    """Appends lines to ``<path>.partial`` in zstd frames; ``close()`` renames to ``path`` and writes the index."""

    def __init__(self, path: str | os.PathLike[str], *, level: int = 3, fsync: bool = True) -> None:
        self.path = Path(path)
        self.partial = Path(f"{self.path}.partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.partial, "ab")  # noqa: SIM115 - owned by the writer
        self._cctx = zstandard.ZstdCompressor(level=level)
        self._buf: list[bytes] = []
        self._buf_first_ns: int | None = None
        self._fsync = fsync
        self.index = CaptureIndex()

    def write(self, capture_ns: int, stream: str, data: bytes) -> None:
        self._buf.append(encode_line(capture_ns, stream, data))
        self.index.add(capture_ns, stream, data)
        if self._buf_first_ns is None:
            self._buf_first_ns = capture_ns
        elif capture_ns - self._buf_first_ns >= FLUSH_NS:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        self._file.write(self._cctx.compress(b"".join(self._buf)))
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())
        self._buf.clear()
        self._buf_first_ns = None

    def close(self) -> Path:
        self.flush()
        self._file.close()
        tmp_index = Path(f"{index_path(self.path)}.tmp")
        tmp_index.write_text(json.dumps(self.index.to_json(), indent=1))
        os.replace(self.partial, self.path)
        os.replace(tmp_index, index_path(self.path))
        return self.path

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_frames(path: str | os.PathLike[str], chunk: int = 1 << 22) -> Iterator[bytes]:
    """Decompressed zstd frames of a capture file, streamed; a truncated last frame is dropped (kill -9)."""
    dctx = zstandard.ZstdDecompressor()
    pending = b""
    with open(path, "rb") as f:
        eof = False
        while not eof or pending:
            if not eof and len(pending) < chunk:
                more = f.read(chunk)
                eof = not more
                pending += more
            if not pending:
                return
            obj = dctx.decompressobj()
            try:
                out = obj.decompress(pending)
            except zstandard.ZstdError:
                return  # garbage after the last good frame
            if not obj.eof:
                if eof:
                    return  # truncated last frame
                more = f.read(chunk)
                eof = not more
                pending += more
                continue
            yield out
            pending = obj.unused_data


def iter_capture_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, int, str, bytes]]:
    """``(line_no, capture_ns, stream, data_bytes)`` per line; ``data_bytes`` is the raw data slice."""
    line_no = 0
    for frame in iter_frames(path):
        for line in frame.splitlines():
            line_no += 1
            if not line:
                continue
            yield (line_no, *split_line(line, path, line_no))


def split_line(line: bytes, path: object, line_no: int) -> tuple[int, str, bytes]:
    """Slice ``capture_ns``, ``stream`` and the verbatim ``data`` bytes out of one line."""
    try:
        if not line.startswith(b'{"capture_ns":'):
            raise ValueError("does not start with capture_ns")
        i = line.index(b",", 14)
        capture_ns = int(line[14:i])
        if not line.startswith(b'"stream":"', i + 1):
            raise ValueError("no stream after capture_ns")
        j = line.index(b'"', i + 11)
        stream = line[i + 11 : j].decode()
        if not line.startswith(b',"data":', j + 1) or not line.endswith(b"}"):
            raise ValueError("no data after stream")
        return capture_ns, stream, line[j + 9 : -1]
    except ValueError as exc:
        raise CaptureFormatError(
            f"{path}: line {line_no}: not a capture line ({exc}): {line[:120]!r}"
        ) from exc


def read_index(path: str | os.PathLike[str]) -> dict | None:
    p = index_path(path)
    return json.loads(p.read_text()) if p.is_file() else None


def write_capture(path: str | os.PathLike[str], lines: Iterable[tuple[int, str, bytes]]) -> Path:
    """Write a finished capture file from ``(capture_ns, stream, data)`` tuples (atomic: .partial then rename)."""
    with CaptureWriter(path, fsync=False) as w:
        for capture_ns, stream, data in lines:
            w.write(capture_ns, stream, data)
    return Path(path)
