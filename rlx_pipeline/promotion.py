"""A new build becomes the served version only after its blocking checks pass.

A build (a staged lake table, the unified stream's two files) is written to a candidate folder beside the served
files (``<dir>/.candidate/<label>/<name>``: same file system, so promotion is an atomic rename; one folder per
build, so two runs of the same partition never judge each other's files), its checks are evaluated on the
candidate, then either

- ``promote``: each candidate replaces its served file (``os.replace``, directory fsynced), or
- ``set_aside``: the candidates move to ``<dir>/rejected/<label>/`` for inspection and the served files, the last
  good build, stay in place and readable. The newest ``KEEP_REJECTED`` rejected builds are kept: a day that fails
  every daily retry for a week does not pile up a week of copies.
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
KEEP_REJECTED = 3


def build_label(run_id: str = "") -> str:
    """A build's folder name: UTC time, then the run that built it (sortable, unique per run)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{re.sub(r'[^A-Za-z0-9]', '', run_id)[:8]}" if run_id else stamp


def candidate_path(served: str | os.PathLike[str], label: str) -> Path:
    served = Path(served)
    return served.parent / CANDIDATE_DIR / label / served.name


def promote(served: list[Path], label: str) -> None:
    """Replace each served file by its candidate (in the order given: readers of a file pair check its build)."""
    for dest in served:
        os.replace(candidate_path(dest, label), dest)
        fsync_dir(dest.parent)
    discard(served, label)


def set_aside(served: list[Path], label: str) -> Path:
    """Move the candidates of ``served`` to ``rejected/<label>/`` beside the first; returns that folder."""
    folder = Path(served[0]).parent / REJECTED_DIR / label
    folder.mkdir(parents=True, exist_ok=True)
    for dest in served:
        cand = candidate_path(dest, label)
        if cand.exists():
            shutil.move(cand, folder / dest.name)
    fsync_dir(folder)
    discard(served, label)
    for old in sorted(p for p in folder.parent.iterdir() if p.is_dir())[
        :-KEEP_REJECTED
    ]:  # labels sort by time
        shutil.rmtree(old, ignore_errors=True)
    return folder


def discard(served: list[Path], label: str) -> None:
    """Remove what is left of a build's candidates (all of it when it failed before it could be judged)."""
    for dest in served:
        shutil.rmtree(candidate_path(dest, label).parent, ignore_errors=True)
