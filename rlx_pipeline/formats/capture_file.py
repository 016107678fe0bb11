"""The native capture format: one line per received message, kept byte for byte, in small zstd frames.

    {"capture_ns":<local receive ns>,"stream":"<stream name>","data":<the data object's bytes as received>}

- REST depth snapshots: stream ``<symbol>@depthSnapshot``, data = the REST body verbatim.
- Capture events (session_start, reconnect, gap, resync, rotate, session_end): stream ``rlx@event``.
- A file holds one venue (``rlx_pipeline.venues``): its index says which (``"venue": "binance_usdm"``), and the
  capture service starts the file name with it (``<venue>-<HH>-<session>.jsonl.zst``), so a file finalised from
  a killed run's ``.partial`` knows it too. A file with neither (written before venues existed) holds Binance spot.
- A file is a sequence of independent zstd frames (one per flush, at most ~1 s of data, each with zstd's content
  checksum), so a file cut by ``kill -9`` decodes up to its last complete frame, and a corrupt frame loses only
  itself: the reader skips to the next frame's magic number and reports the unreadable bytes (``FrameLoss``).
  ``<file>.index.json`` sits next to each finished file.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import zstandard

from rlx_pipeline import venues

EVENT_STREAM = "rlx@event"
ZSTD_MAGIC = (0xFD2FB528).to_bytes(4, "little")  # every zstd frame starts with it
SNAPSHOT_SUFFIX = "@depthSnapshot"
FLUSH_NS = 1_000_000_000


class CaptureFormatError(ValueError):
    """A capture line that is not ``{"capture_ns","stream","data"}``; names the file and line."""


@dataclass(frozen=True)
class FrameLoss:
    """Bytes of a capture file that could not be decoded: a corrupt region, or a last frame cut by ``kill -9``."""

    path: str
    offset: int  # where the unreadable bytes start
    lost_bytes: int
    truncated_tail: bool  # an incomplete last frame (a killed writer), not corruption

    def __str__(self) -> str:
        what = "incomplete last frame" if self.truncated_tail else "corrupt zstd data"
        return f"{self.path}: {what}: {self.lost_bytes} bytes at offset {self.offset} unreadable"


def encode_line(capture_ns: int, stream: str, data: bytes) -> bytes:
    """The line for one message; ``data`` is embedded verbatim (never re-serialised)."""
    return b'{"capture_ns":%d,"stream":"%s","data":%s}\n' % (capture_ns, stream.encode(), data)


def event_data(kind: str, **fields: object) -> bytes:
    return orjson.dumps({"type": kind, **fields})


@dataclass
class CaptureIndex:
    venue: str | None = None  # ``Venue.name`` of the streams held (None: not said, read as spot)
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
            self._event_bounds(event_ms, event_ms)

    def add_frame(self, frame: bytes, lines: list[bytes], streams: list[str], data_lens: list[int]) -> None:
        """The lines of one frame at once, as ``add`` per line would: ``frame`` is ``b"".join(lines)``, each line
        ``encode_line(capture_ns, streams[k], data)`` with ``len(data) == data_lens[k]``. Per line this costs a
        ``len``; the counts are C loops and the exchange times one numba pass over the frame."""
        if not lines:
            return
        self.lines += len(lines)
        known = len(self.streams)
        self.streams.update(streams)
        if len(self.streams) != known:
            self.symbols.update(s.split("@", 1)[0] for s in self.streams if s != EVENT_STREAM)
        if self.first_capture_ns is None:
            self.first_capture_ns = _capture_ns(lines[0])
        self.last_capture_ns = _capture_ns(lines[-1])
        data_end = np.cumsum(np.fromiter(map(len, lines), np.int64, len(lines))) - 2  # before "}\n"
        data_start = data_end - np.array(data_lens, np.int64)
        n, lo, hi, big = _event_bounds(np.frombuffer(frame, np.uint8), data_start, data_end)
        if big:  # an event time beyond int64: read in Python
            for start, end in zip(data_start.tolist(), data_end.tolist(), strict=True):
                event_ms = _event_ms(frame[start:end])
                if event_ms is not None:
                    self._event_bounds(event_ms, event_ms)
        elif n:
            self._event_bounds(lo, hi)

    def _event_bounds(self, lo: int, hi: int) -> None:
        if self.first_event_ms is None or lo < self.first_event_ms:
            self.first_event_ms = lo
        if self.last_event_ms is None or hi > self.last_event_ms:
            self.last_event_ms = hi

    def to_json(self) -> dict:
        return {
            "venue": self.venue,
            "symbols": sorted(self.symbols),
            "streams": dict(sorted(self.streams.items())),
            "lines": self.lines,
            "first_capture_ns": self.first_capture_ns,
            "last_capture_ns": self.last_capture_ns,
            "first_event_ms": self.first_event_ms,
            "last_event_ms": self.last_event_ms,
        }


_DIGITS = re.compile(rb"[0-9]+")


def _event_bounds(
    buf: np.ndarray, data_start: np.ndarray, data_end: np.ndarray
) -> tuple[int, int, int, bool]:
    # Imported here: numba's import (about 0.7 s) is paid by writers only, not by every reader of the format.
    from rlx_pipeline.formats.capture_index_scan import event_bounds

    return event_bounds(buf, data_start, data_end)


def load_index_kernel() -> None:
    """Load the index's numba kernel now (numba's import and the cached kernel: a second or more), not at a
    writer's first flush, where received messages would wait on it."""
    empty = np.empty(0, np.int64)
    _event_bounds(np.frombuffer(b"", np.uint8), empty, empty)


def _capture_ns(line: bytes) -> int:
    return int(line[14 : line.index(b",", 14)])  # encode_line's layout


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


def venue_in_name(name: str) -> venues.Venue | None:
    """The venue a capture file's name starts with (``binance_usdm-00-<session>.jsonl.zst``), else None."""
    head = name.split("-", 1)[0]
    return venues.VENUES.get(head)


def capture_venue(path: str | os.PathLike[str], index: dict | None = None) -> venues.Venue:
    """The venue a capture file holds: its index's ``venue``, else its name's, else Binance spot (files written
    before capture files named their venue were all spot captures)."""
    name = (index or {}).get("venue")
    if name is not None:
        return venues.by_name(name)
    return venue_in_name(Path(path).name) or venues.LEGACY_CAPTURE_VENUE


def index_path(path: str | os.PathLike[str]) -> Path:
    return Path(f"{path}.index.json")


class CaptureWriter:
    """Appends lines to ``<path>.partial`` in zstd frames; ``close()`` renames to ``path`` and writes the index.

    The writer holds an exclusive ``flock`` on its ``.partial`` until it is renamed: ``finalize_partial`` never
    touches a file a live writer owns, only those of a killed one (the kernel drops the lock with the process).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        venue: str | None = None,
        level: int = 3,
        fsync: bool = True,
    ) -> None:
        self.path = Path(path)
        self.partial = Path(f"{self.path}.partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.partial, "ab")  # noqa: SIM115 - owned by the writer
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise RuntimeError(f"{self.partial} is being written by another process") from None
        self._cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self._buf: list[bytes] = []
        self._streams: list[str] = []  # per buffered line, for the index (built per frame at flush)
        self._data_lens: list[int] = []
        self._buf_first_ns: int | None = None
        self._fsync = fsync
        self.index = CaptureIndex(venue=venue)

    def write(self, capture_ns: int, stream: str, data: bytes) -> None:
        self._buf.append(encode_line(capture_ns, stream, data))
        self._streams.append(stream)
        self._data_lens.append(len(data))
        if self._buf_first_ns is None:
            self._buf_first_ns = capture_ns
        elif capture_ns - self._buf_first_ns >= FLUSH_NS:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        frame = b"".join(self._buf)
        self._file.write(self._cctx.compress(frame))
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())
        self.index.add_frame(frame, self._buf, self._streams, self._data_lens)
        self._buf.clear()
        self._streams.clear()
        self._data_lens.clear()
        self._buf_first_ns = None

    def close(self) -> Path:
        self.flush()
        _publish(self.partial, self.path, self.index.to_json())
        self._file.close()  # the lock goes with it, after the rename
        return self.path

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _publish(partial: Path, path: Path, index: dict) -> None:
    tmp_index = Path(f"{index_path(path)}.tmp")
    tmp_index.write_text(json.dumps(index, indent=1))
    os.replace(partial, path)
    os.replace(tmp_index, index_path(path))


def finalize_partial(partial: str | os.PathLike[str]) -> tuple[Path, dict] | None:
    """Finish the ``.partial`` of a killed writer as its ``close()`` would have: cut an incomplete last frame,
    write the index (from the lines that decode, with what was lost under ``recovered``), rename into place.

    Returns the finished file and the index written, or ``None`` when a live writer holds the file (or it is
    gone). A name already taken gets a ``-recovered`` suffix.
    """
    partial = Path(partial)
    try:
        f = open(partial, "rb+")  # noqa: SIM115 - closed below, after the rename
    except FileNotFoundError:
        return None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # a live writer
        if not partial.exists() or os.stat(partial).st_ino != os.fstat(f.fileno()).st_ino:
            return None  # renamed by its writer meanwhile
        found = venue_in_name(partial.name)
        index, losses, bad_lines = CaptureIndex(venue=found.name if found else None), [], [0]
        for _, capture_ns, stream, data in iter_capture_lines(
            partial,
            on_loss=losses.append,
            on_bad_line=lambda _exc: bad_lines.__setitem__(0, bad_lines[0] + 1),
        ):
            index.add(capture_ns, stream, data)
        tail = next((loss for loss in losses if loss.truncated_tail), None)
        if tail is not None:
            f.truncate(tail.offset)
            f.flush()
            os.fsync(f.fileno())
        path = Path(str(partial).removesuffix(".partial"))
        n = 0
        while path.exists():
            n += 1
            path = partial.with_name(
                partial.name.removesuffix(".jsonl.zst.partial") + f"-recovered{n}.jsonl.zst"
            )
        out = index.to_json() | {
            "recovered": {
                "from": partial.name,
                "tail_bytes_cut": tail.lost_bytes if tail else 0,
                "unreadable_regions": [
                    {"offset": x.offset, "bytes": x.lost_bytes} for x in losses if not x.truncated_tail
                ],
                "malformed_lines": bad_lines[0],
            }
        }
        _publish(partial, path, out)
    return path, out


def iter_frames(
    path: str | os.PathLike[str],
    chunk: int = 1 << 22,
    on_loss: Callable[[FrameLoss], None] | None = None,
) -> Iterator[bytes]:
    """Decompressed zstd frames of a capture file, streamed.

    Frames are independent: after undecodable bytes the reader resumes at the next frame magic. Each unreadable
    region is passed to ``on_loss``; without it a corrupt region raises ``CaptureFormatError`` (after the frames
    before it) and an incomplete last frame (``kill -9``) is dropped silently.

    The file is read ``chunk`` bytes at a time and each frame decoded in place (a view of the chunk, fed in
    pieces about twice the previous frame's size): a decoder handed the whole rest of the chunk copies what it
    did not use (``unused_data``) for every frame, quadratic in frames per chunk (20 s for a 3 h BTCUSDT file).
    """
    dctx = zstandard.ZstdDecompressor()
    buf, pos, base, eof = b"", 0, 0, False  # buf[pos:] is unread; base is the file offset of buf[0]
    step = 1 << 16
    with open(path, "rb") as f:

        def read() -> int:
            """Append the next chunk, dropping what was consumed; returns by how much positions in buf moved."""
            nonlocal buf, pos, base, eof
            more = f.read(chunk)
            eof = not more
            shift = pos
            buf, base, pos = buf[pos:] + more, base + pos, 0
            return shift

        def lose(n: int, tail: bool) -> None:
            nonlocal pos
            loss = FrameLoss(str(path), base + pos, n, tail)
            pos += n
            if on_loss is not None:
                on_loss(loss)
            elif not tail:
                raise CaptureFormatError(str(loss))

        while True:
            if not eof and len(buf) - pos < chunk:
                read()
            if pos == len(buf):
                return
            obj = dctx.decompressobj()
            parts = []
            end = pos  # buf[pos:end] went into the decoder
            try:
                while not obj.eof:
                    if end == len(buf):
                        if eof:
                            break
                        end -= read()
                    piece = memoryview(buf)[end : end + step]
                    parts.append(obj.decompress(piece))
                    end += len(piece)
            except zstandard.ZstdError:
                # skip to the next frame: search past this one's magic, reading on until one is found or EOF
                start = pos + 1
                while (nxt := buf.find(ZSTD_MAGIC, start)) < 0 and not eof:
                    start = max(pos + 1, len(buf) - len(ZSTD_MAGIC) + 1)
                    start -= read()
                lose((nxt if nxt >= 0 else len(buf)) - pos, False)
                continue
            if not obj.eof:
                # at EOF: a later frame's magic means this one was corrupt (its header promised more); else a cut tail
                nxt = buf.find(ZSTD_MAGIC, pos + 1)
                lose((nxt if nxt > 0 else len(buf)) - pos, nxt < 0)
                continue
            end -= len(obj.unused_data)
            step = max(1 << 12, 2 * (end - pos))
            pos = end
            yield parts[0] if len(parts) == 1 else b"".join(parts)


def iter_capture_lines(
    path: str | os.PathLike[str],
    on_loss: Callable[[FrameLoss], None] | None = None,
    on_bad_line: Callable[[CaptureFormatError], None] | None = None,
) -> Iterator[tuple[int, int, str, bytes]]:
    """``(line_no, capture_ns, stream, data_bytes)`` per line; ``data_bytes`` is the raw data slice.
    ``on_loss``: see ``iter_frames`` (line numbers count the lines read, lost ones are unknown). A line that is not
    a capture line goes to ``on_bad_line`` and reading goes on; without it, ``CaptureFormatError`` is raised."""
    line_no = 0
    for frame in iter_frames(path, on_loss=on_loss):
        for line in frame.splitlines():
            line_no += 1
            if not line:
                continue
            try:
                parts = split_line(line, path, line_no)
            except CaptureFormatError as exc:
                if on_bad_line is None:
                    raise
                on_bad_line(exc)
                continue
            yield (line_no, *parts)


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


def write_capture(
    path: str | os.PathLike[str], lines: Iterable[tuple[int, str, bytes]], *, venue: str | None = None
) -> Path:
    """Write a finished capture file from ``(capture_ns, stream, data)`` tuples (atomic: .partial then rename)."""
    with CaptureWriter(path, venue=venue, fsync=False) as w:
        for capture_ns, stream, data in lines:
            w.write(capture_ns, stream, data)
    return Path(path)
