"""Files that survive a kill or a power loss at any instant, and the hash that tells a torn one.

Fsync before rename, rename into place: a rename is atomic, but without fsync the data it points
at may still be in the page cache when the power goes, and the rename itself lives in the
folder's entry until the folder is synced. Every artifact the platform writes (snapshots, model
folders, checkpoints) records its files' `file_sha256` and checks it when read.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def file_sha256(path: Path | str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def fsync_file(path: Path | str) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_folder(path: Path | str) -> None:
    """Make renames and new names inside ``path`` durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_tree(path: Path | str) -> None:
    """Every file below ``path``, then every folder, deepest first."""
    for folder, _, files in os.walk(path, topdown=False):
        for name in files:
            fsync_file(Path(folder) / name)
        fsync_folder(folder)


def write_text_atomically(path: Path | str, text: str) -> None:
    """Replace ``path`` with ``text``: a reader sees the old content or the new, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
