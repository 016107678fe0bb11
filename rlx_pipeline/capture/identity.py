"""The identity of finished capture files: what a golden-samples build was made from.

A finished capture file is written once (``.partial``, then renamed with its ``.index.json``), so its path, size
and index say what it holds; the identity of a day's inputs is a hash over the identities of its files. The
pipeline records it as the data version of ``golden_samples``; the ``new_captures`` sensor compares it to decide
whether a day must be rebuilt, and names its runs by it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from rlx_pipeline.formats.capture_file import index_path


def capture_identity(path: str | Path, root: str | Path) -> str:
    """``relative path:size:index digest`` (``mtime_ns`` in place of the digest for a file without index)."""
    path = Path(path)
    index = index_path(path)
    digest = (
        hashlib.sha256(index.read_bytes()).hexdigest()[:16] if index.is_file() else path.stat().st_mtime_ns
    )
    return f"{path.relative_to(root)}:{path.stat().st_size}:{digest}"


def inputs_version(files: Iterable[str | Path], root: str | Path) -> str:
    """One short hash over the identities of ``files`` (order-free); ``no-capture`` when there is none."""
    ids = sorted(capture_identity(f, root) for f in files)
    if not ids:
        return "no-capture"
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
