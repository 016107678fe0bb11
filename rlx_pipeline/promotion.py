"""A new build becomes the served version only after its blocking checks pass.

A build (a staged lake table, the unified stream's two files) is written to a candidate path beside the served
one (``<dir>/.candidate/<name>``: same file system, so promotion is an atomic rename), its checks are evaluated on
the candidate, then either

- ``promote``: each candidate replaces its served file (``os.replace``, directory fsynced), or
- ``set_aside``: the candidates move to ``<dir>/rejected/<label>/`` for inspection and the served files, the last
  good build, stay in place and readable.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from pathlib import Path

from rlx_pipeline.storage import fsync_dir

CANDIDATE_DIR = ".candidate"
REJECTED_DIR = "rejected"


def candidate_path(served: str | os.PathLike[str]) -> Path:
    served = Path(served)
    return served.parent / CANDIDATE_DIR / served.name


def rejected_dir(served: str | os.PathLike[str], label: str) -> Path:
    return Path(served).parent / REJECTED_DIR / label


def build_label(run_id: str = "") -> str:
    """A rejected build's folder name: UTC time, then the run that built it (sortable, unique per run)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{re.sub(r'[^A-Za-z0-9]', '', run_id)[:8]}" if run_id else stamp


def promote(served: list[Path]) -> None:
    """Replace each served file by its candidate (in the order given: readers of a file pair check its build)."""
    for dest in served:
        os.replace(candidate_path(dest), dest)
        fsync_dir(dest.parent)


def set_aside(served: list[Path], label: str) -> Path:
    """Move the candidates of ``served`` to ``rejected/<label>/`` beside the first; returns that folder."""
    folder = rejected_dir(served[0], label)
    folder.mkdir(parents=True, exist_ok=True)
    for dest in served:
        cand = candidate_path(dest)
        if cand.exists():
            shutil.move(cand, folder / dest.name)
    fsync_dir(folder)
    return folder


def discard(served: list[Path]) -> None:
    """Remove the candidates of ``served`` (a build that failed before its checks could judge it)."""
    for dest in served:
        candidate_path(dest).unlink(missing_ok=True)
