"""Captured data is never lost silently: a corrupt zstd frame in the middle of a finished capture loses only
itself (later frames are read, the loss is counted and fails golden_integrity), and an unfinished ``.partial`` is
reported by the golden asset."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import zstandard

from rlx_pipeline.formats.capture_file import CaptureFormatError, encode_line, iter_capture_lines, iter_frames
from rlx_pipeline.orchestration.assets import golden
from rlx_pipeline.orchestration.resources import build_resources
from rlx_pipeline.simulator import SimConfig, simulate
from rlx_pipeline_tests.conftest import DATE, PARTITION_KEY, SYMBOL


def _write_frames(path: Path, chunks: list[list[tuple[int, str, bytes]]]) -> list[tuple[int, int]]:
    """One zstd frame (with checksum, as CaptureWriter writes) per chunk; returns each frame's (offset, size)."""
    cctx = zstandard.ZstdCompressor(level=3, write_checksum=True)
    spans, out = [], b""
    for chunk in chunks:
        frame = cctx.compress(b"".join(encode_line(*line) for line in chunk))
        spans.append((len(out), len(frame)))
        out += frame
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out)
    return spans


def _corrupt(path: Path, offset: int, size: int) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset + size // 3, offset + size // 3 + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _lines(n: int, start: int) -> list[tuple[int, str, bytes]]:
    return [(start + i, "btcusdt@trade", b'{"e":"trade","t":%d}' % (start + i)) for i in range(n)]


def test_a_corrupt_middle_frame_is_skipped_counted_and_later_frames_read(tmp_path):
    path = tmp_path / "c.jsonl.zst"
    chunks = [_lines(200, 0), _lines(200, 1000), _lines(200, 2000)]
    spans = _write_frames(path, chunks)
    _corrupt(path, *spans[1])
    losses = []
    got = [ns for _, ns, _, _ in iter_capture_lines(path, on_loss=losses.append)]
    assert got == [ns for ns, _, _ in chunks[0] + chunks[2]]
    assert [(x.offset, x.lost_bytes, x.truncated_tail) for x in losses] == [(spans[1][0], spans[1][1], False)]
    assert "corrupt zstd data" in str(losses[0]) and str(path) in str(losses[0])
    # without a handler the reader does not drop the rest silently: it raises after the good frames
    frames = iter_frames(path)
    assert next(frames).count(b"\n") == 200
    with pytest.raises(
        CaptureFormatError, match=rf"corrupt zstd data: {spans[1][1]} bytes at offset {spans[1][0]}"
    ):
        next(frames)


def test_garbage_between_frames_and_a_cut_last_frame(tmp_path):
    path = tmp_path / "c.jsonl.zst"
    spans = _write_frames(path, [_lines(50, 0), _lines(50, 100)])
    data = path.read_bytes()
    junk = b"\x00garbage\xff" * 3
    full = data[: spans[1][0]] + junk + data[spans[1][0] :]
    path.write_bytes(full + data[: spans[0][1] // 2])  # a frame cut by kill -9 at the end
    losses = []
    got = [ns for _, ns, _, _ in iter_capture_lines(path, on_loss=losses.append)]
    assert got == list(range(50)) + list(range(100, 150))
    assert [(x.offset, x.lost_bytes, x.truncated_tail) for x in losses] == [
        (spans[1][0], len(junk), False),
        (len(full), spans[0][1] // 2, True),
    ]
    # without a handler the cut last frame is dropped silently (a .partial being written), the junk raises
    with pytest.raises(CaptureFormatError, match="corrupt zstd data"):
        list(iter_capture_lines(path))


@pytest.mark.parametrize("chunk", [1, 7, 5000, 1 << 22])
def test_frames_and_losses_do_not_depend_on_how_the_file_is_read(tmp_path, chunk):
    """Frames spanning read chunks, a frame larger than the decoder's pieces (incompressible lines), a corrupt
    frame, junk between frames and a cut tail: the same frames and losses whatever the chunk size."""
    path = tmp_path / "c.jsonl.zst"
    noise = [(i, "btcusdt@trade", b'{"x":"%s"}' % os.urandom(600).hex().encode()) for i in range(400)]
    chunks = [_lines(30, 0), noise, _lines(3, 500), _lines(200, 1000), [], _lines(40, 2000)]
    spans = _write_frames(path, chunks)
    assert spans[1][1] > 1 << 16  # larger than the first pieces fed to the decoder
    _corrupt(path, *spans[3])
    data = path.read_bytes()
    junk = b"\x28\xb5\x2f\xfd junk"  # a false magic, then garbage
    full = data[: spans[5][0]] + junk + data[spans[5][0] :]
    path.write_bytes(full + data[: spans[2][0] + spans[2][1] // 2][spans[2][0] :])
    losses = []
    frames = list(iter_frames(path, chunk=chunk, on_loss=losses.append))
    assert frames == [
        b"".join(encode_line(*x) for x in c) for c in (chunks[0], noise, chunks[2], [], chunks[5])
    ]
    assert [(x.offset, x.lost_bytes, x.truncated_tail) for x in losses] == [
        (spans[3][0], spans[3][1], False),
        (spans[5][0], len(junk), False),
        (len(full), spans[2][1] // 2, True),
    ]


def test_a_line_that_is_not_a_capture_line_does_not_end_the_file(tmp_path):
    path = tmp_path / "c.jsonl.zst"
    cctx = zstandard.ZstdCompressor()
    path.write_bytes(
        cctx.compress(encode_line(1, "a@trade", b"{}"))
        + cctx.compress(b"not a capture line\n" + encode_line(2, "a@trade", b"{}"))
        + cctx.compress(encode_line(3, "a@trade", b"{}"))
    )
    bad = []
    assert [ns for _, ns, _, _ in iter_capture_lines(path, on_bad_line=bad.append)] == [1, 2, 3]
    assert len(bad) == 1 and "line 2" in str(bad[0])


@pytest.fixture(scope="module")
def capture_lines():
    truth = simulate(SimConfig(symbol=SYMBOL, start=f"{DATE}T00:00:00Z", duration_s=60, seed=4))
    return list(truth.capture_lines())


def test_golden_reads_past_a_corrupt_frame_and_integrity_fails_with_the_count(
    settings, layout, capture_lines
):
    third = len(capture_lines) // 3
    chunks = [capture_lines[:third], capture_lines[third : 2 * third], capture_lines[2 * third :]]
    path = layout.capture_dir / "imported" / "sim.jsonl.zst"
    spans = _write_frames(path, chunks)
    _corrupt(path, *spans[1])
    partial = layout.capture_dir / DATE / "05-killed.jsonl.zst.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"")
    result = dg.materialize(
        golden.assets + golden.checks,
        partition_key=PARTITION_KEY,
        resources=build_resources(settings),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    integrity = checks["golden_integrity"]
    assert not integrity.passed and integrity.severity == dg.AssetCheckSeverity.ERROR
    assert integrity.metadata["unreadable_bytes"].value == spans[1][1]
    assert integrity.metadata["malformed_lines"].value == 1
    assert f"unreadable_bytes={spans[1][1]}" in integrity.description
    # the trades of the third frame were read
    trades = pl.read_parquet(layout.golden("trades", DATE, SYMBOL))
    expected = sum(1 for _, s, _ in chunks[0] + chunks[2] if s == "btcusdt@trade")
    assert len(trades) == expected > 0
    # the unfinished capture file is reported, as a warning
    coverage = checks["golden_coverage"]
    assert not coverage.passed and coverage.severity == dg.AssetCheckSeverity.WARN
    assert "1 unfinished capture file(s) (.partial) not read" in coverage.description
    assert coverage.metadata["partial_files"].value == [str(partial)]
