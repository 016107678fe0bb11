"""``rlx-pipeline capture import`` and ``inspect`` through click, on the real hftbacktest sample."""

from __future__ import annotations

import gzip
from pathlib import Path

from click.testing import CliRunner

from rlx_pipeline.cli import main
from rlx_pipeline.formats.capture_file import EVENT_STREAM, iter_capture_lines


def test_import_and_inspect_real_hftbacktest(tmp_path: Path, real_samples: Path) -> None:
    src = real_samples / "hftbacktest" / "binance_spot_ethusdt_20240809.gz"
    with gzip.open(src, "rb") as f:
        n_src = sum(1 for line in f if line.strip())
    res = CliRunner().invoke(main, ["capture", "import", str(src), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    (out,) = list(tmp_path.glob("*.jsonl.zst"))
    lines = list(iter_capture_lines(out))
    assert sum(1 for _, _, s, _ in lines if s != EVENT_STREAM) == n_src
    res = CliRunner().invoke(main, ["capture", "inspect", str(out)])
    assert res.exit_code == 0, res.output
    assert f"{len(lines)} lines" in res.output and "ethusdt@depth@100ms" in res.output
