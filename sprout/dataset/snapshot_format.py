"""The on-disk snapshot format: typed arrays, the manifest, content hashing, atomic writing and
verified loading.

A snapshot is a folder ``<snapshot_id>/`` holding ``arrays.npz`` (plain numeric arrays, loaded
with ``allow_pickle=False``), ``users.json`` (user names per split), ``corpus.json`` and
``manifest.json``. The id is a hash of the content (arrays, names, corpus, config, date), so a
folder is never rewritten: building the same data again finds it already there, after checking
its files against the manifest's hashes. A build writes a hidden staging folder, fsyncs it and
renames it into place, so a kill or a power loss never leaves a partial ``<snapshot_id>/``; a
folder that fails the check anyway (damaged on disk, or left by older code) is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from sprout.durable_files import file_sha256, fsync_folder, fsync_tree

from .config import DatasetConfig
from .corpus import Corpus
from .splits import SPLIT_NAMES

FORMAT_VERSION = 1
ID_HEX_DIGITS = 16
ARRAYS_FILE, USERS_FILE, CORPUS_FILE, MANIFEST_FILE = "arrays.npz", "users.json", "corpus.json", "manifest.json"
# A staging folder older than this belongs to a build that was killed (a live one is minutes old).
STALE_STAGING_S = 6 * 3600
# Per split, in this order; `heldout` only for validation and test.
ARRAY_DTYPES = {
    "indptr": np.int64,  # [U + 1]
    "items": np.int32,  # [n] corpus index
    "values": np.float32,  # [n] normalised rating (fills for unrated)
    "rated": np.bool_,  # [n] real score
    "scores": np.int8,  # [n] raw score, 0 = unrated
    "mu": np.float64,  # [U]
    "sigma": np.float64,  # [U]
    "heldout": np.bool_,  # [n] validation/test: not in the fold-in profile
}


class SnapshotError(ValueError):
    """A snapshot folder that is incomplete, altered or of an unknown format."""


@dataclass(frozen=True)
class SplitArrays:
    """One split's users and their entries in CSR form."""

    usernames: tuple[str, ...]  # [U] sorted
    indptr: np.ndarray  # [U + 1] int64
    items: np.ndarray  # [n] int32 corpus index
    values: np.ndarray  # [n] float32 normalised rating
    rated: np.ndarray  # [n] bool
    scores: np.ndarray  # [n] int8 raw score, 0 = unrated
    mu: np.ndarray  # [U] float64 (held-out users: over fold-in scores only)
    sigma: np.ndarray  # [U] float64
    heldout: np.ndarray | None = None  # [n] bool, validation and test only

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    @property
    def n_entries(self) -> int:
        return len(self.items)

    def first_users(self, count: int) -> SplitArrays:
        """The first ``count`` users (all of them when there are fewer) as a split of their own."""
        count = min(count, self.n_users)
        end = int(self.indptr[count])
        return SplitArrays(
            usernames=self.usernames[:count], indptr=self.indptr[: count + 1], items=self.items[:end],
            values=self.values[:end], rated=self.rated[:end], scores=self.scores[:end], mu=self.mu[:count],
            sigma=self.sigma[:count], heldout=None if self.heldout is None else self.heldout[:end],
        )

    def subset(self, users: np.ndarray) -> SplitArrays:
        """The users where ``users`` [U] bool is true, in order, as a split of their own."""
        users = np.asarray(users, bool)
        sizes = np.diff(self.indptr)
        entries = np.repeat(users, sizes)  # [n]
        indptr = np.concatenate([[0], np.cumsum(sizes[users])]).astype(np.int64)
        return SplitArrays(
            usernames=tuple(name for name, keep in zip(self.usernames, users, strict=True) if keep), indptr=indptr,
            items=self.items[entries], values=self.values[entries], rated=self.rated[entries],
            scores=self.scores[entries], mu=self.mu[users], sigma=self.sigma[users],
            heldout=None if self.heldout is None else self.heldout[entries],
        )

    def joined(self, other: SplitArrays) -> SplitArrays:
        """This split's users followed by ``other``'s, every entry of both (held-out ones included):
        the users a final refit learns from."""
        indptr = np.concatenate([self.indptr, self.indptr[-1] + np.asarray(other.indptr[1:], np.int64)])
        return SplitArrays(
            usernames=self.usernames + other.usernames, indptr=indptr,
            items=np.concatenate([self.items, other.items]), values=np.concatenate([self.values, other.values]),
            rated=np.concatenate([self.rated, other.rated]), scores=np.concatenate([self.scores, other.scores]),
            mu=np.concatenate([self.mu, other.mu]), sigma=np.concatenate([self.sigma, other.sigma]), heldout=None,
        )

    def arrays(self) -> dict[str, np.ndarray]:
        names = [n for n in ARRAY_DTYPES if n != "heldout" or self.heldout is not None]
        return {name: getattr(self, name) for name in names}


class SplitCounts(BaseModel):
    users: int
    entries: int
    rated_entries: int
    heldout_entries: int = 0


class SnapshotManifest(BaseModel):
    """What a snapshot holds and how it was made; ``files`` are sha256 of each file's bytes."""

    model_config = ConfigDict(frozen=True)

    format_version: int
    snapshot_id: str
    content_sha256: str
    snapshot_date: str  # ISO date: entries updated after that day were left out
    config: DatasetConfig
    corpus_size: int
    splits: dict[str, SplitCounts]
    source: dict[str, int]  # rows read, eligible users, entries ignored by reason
    files: dict[str, str]


@dataclass(frozen=True)
class Snapshot:
    path: Path
    manifest: SnapshotManifest
    corpus: Corpus
    splits: dict[str, SplitArrays]

    @property
    def snapshot_id(self) -> str:
        return self.manifest.snapshot_id

    def split(self, name: str) -> SplitArrays:
        if name not in self.splits:
            raise KeyError(f"no split {name!r}; splits are {SPLIT_NAMES}")
        return self.splits[name]


def _flat_arrays(splits: dict[str, SplitArrays]) -> dict[str, np.ndarray]:
    return {
        f"{split}.{name}": np.ascontiguousarray(array, dtype=ARRAY_DTYPES[name])
        for split in SPLIT_NAMES
        for name, array in splits[split].arrays().items()
    }


def _users_json(splits: dict[str, SplitArrays]) -> str:
    return json.dumps({s: list(splits[s].usernames) for s in SPLIT_NAMES}, ensure_ascii=False, separators=(",", ":"))


def content_sha256(
    arrays: dict[str, np.ndarray], users_json: str, corpus_json: str, config: DatasetConfig, snapshot_date: str
) -> str:
    """Hash of everything a snapshot means (not of file bytes, which zip timestamps would vary)."""
    digest = hashlib.sha256()
    header = {
        "format_version": FORMAT_VERSION,
        "snapshot_date": snapshot_date,
        "config": config.model_dump(mode="json"),
    }
    for text in (json.dumps(header, sort_keys=True), users_json, corpus_json):
        digest.update(text.encode())
        digest.update(b"\0")
    for name in sorted(arrays):
        array = arrays[name]
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return digest.hexdigest()



def write_snapshot(
    out_dir: Path,
    splits: dict[str, SplitArrays],
    corpus: Corpus,
    config: DatasetConfig,
    snapshot_date: str,
    source: dict[str, int],
) -> SnapshotManifest:
    """Write the folder atomically (staging folder, fsync, rename); reuse an intact one with the
    same id, and rebuild one that fails verification."""
    arrays, users_json, corpus_json = _flat_arrays(splits), _users_json(splits), corpus.to_json()
    content = content_sha256(arrays, users_json, corpus_json, config, snapshot_date)
    snapshot_id = content[:ID_HEX_DIGITS]
    final = out_dir / snapshot_id
    if final.exists():
        if _is_intact(final, content):
            return read_manifest(final)
        _discard(final)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(out_dir)
    temporary = Path(tempfile.mkdtemp(prefix=f".{snapshot_id}-", dir=out_dir))
    try:
        np.savez(temporary / ARRAYS_FILE, **arrays)
        (temporary / USERS_FILE).write_text(users_json, encoding="utf-8")
        (temporary / CORPUS_FILE).write_text(corpus_json, encoding="utf-8")
        manifest = SnapshotManifest(
            format_version=FORMAT_VERSION,
            snapshot_id=snapshot_id,
            content_sha256=content,
            snapshot_date=snapshot_date,
            config=config,
            corpus_size=len(corpus),
            splits={
                name: SplitCounts(
                    users=splits[name].n_users,
                    entries=splits[name].n_entries,
                    rated_entries=int(splits[name].rated.sum()),
                    heldout_entries=int(splits[name].heldout.sum()) if splits[name].heldout is not None else 0,
                )
                for name in SPLIT_NAMES
            },
            source=source,
            files={f: file_sha256(temporary / f) for f in (ARRAYS_FILE, USERS_FILE, CORPUS_FILE)},
        )
        (temporary / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        fsync_tree(temporary)
        try:
            os.rename(temporary, final)
        except OSError:
            if not _is_intact(final, content):  # not a concurrent build of the same id
                raise
        fsync_folder(out_dir)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return read_manifest(final)


def verify_files(path: Path, manifest: SnapshotManifest) -> None:
    """Raise `SnapshotError` unless every file the manifest lists is there with its hash."""
    for name, expected in manifest.files.items():
        if not (path / name).is_file() or file_sha256(path / name) != expected:
            raise SnapshotError(f"{path}: {name} is missing or differs from the manifest")


def _is_intact(path: Path, content: str) -> bool:
    """The folder passes every check `load_snapshot` makes, and holds exactly this content."""
    try:
        manifest, *_ = _read_verified(path)
    except SnapshotError:
        return False
    return manifest.content_sha256 == content


def _discard(path: Path) -> None:
    """Move a damaged snapshot folder out of the way (one rename, so no reader sees it half
    deleted), then delete it."""
    doomed = Path(tempfile.mkdtemp(prefix=f".{path.name}-damaged-", dir=path.parent))
    os.rename(path, doomed / path.name)
    shutil.rmtree(doomed, ignore_errors=True)


def _remove_stale_staging(out_dir: Path) -> None:
    cutoff = time.time() - STALE_STAGING_S
    for staging in out_dir.glob(".*-*"):
        try:
            if staging.is_dir() and staging.stat().st_mtime < cutoff:
                shutil.rmtree(staging, ignore_errors=True)
        except FileNotFoundError:  # removed by a concurrent build
            continue


def read_manifest(path: Path | str) -> SnapshotManifest:
    path = Path(path)
    try:
        manifest = SnapshotManifest.model_validate_json((path / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SnapshotError(f"{path}: no readable {MANIFEST_FILE}: {error}") from error
    if manifest.format_version != FORMAT_VERSION:
        raise SnapshotError(f"{path}: format version {manifest.format_version}, this code reads {FORMAT_VERSION}")
    return manifest


def _read_verified(path: Path) -> tuple[SnapshotManifest, dict[str, np.ndarray], str, str]:
    """Manifest, arrays, users JSON and corpus JSON of a folder that passes every check."""
    manifest = read_manifest(path)
    if set(manifest.files) != {ARRAYS_FILE, USERS_FILE, CORPUS_FILE}:
        raise SnapshotError(f"{path}: the manifest lists {sorted(manifest.files)}")
    verify_files(path, manifest)
    try:
        with np.load(path / ARRAYS_FILE, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        users_json = (path / USERS_FILE).read_text(encoding="utf-8")
        corpus_json = (path / CORPUS_FILE).read_text(encoding="utf-8")
    except Exception as error:  # a file that changed since it was hashed: BadZipFile, EOFError...
        raise SnapshotError(f"{path}: cannot read: {type(error).__name__}: {error}") from error
    content = content_sha256(arrays, users_json, corpus_json, manifest.config, manifest.snapshot_date)
    if content != manifest.content_sha256 or content[:ID_HEX_DIGITS] != manifest.snapshot_id:
        raise SnapshotError(f"{path}: content hash does not match the manifest")
    return manifest, arrays, users_json, corpus_json


def load_snapshot(path: Path | str) -> Snapshot:
    """Read a snapshot folder, checking every file and the content hash against the manifest."""
    path = Path(path)
    manifest, arrays, users_json, corpus_json = _read_verified(path)
    usernames = json.loads(users_json)
    splits = {
        split: SplitArrays(
            usernames=tuple(usernames[split]),
            **{name: arrays.get(f"{split}.{name}") for name in ARRAY_DTYPES},
        )
        for split in SPLIT_NAMES
    }
    return Snapshot(path=path, manifest=manifest, corpus=Corpus.from_json(corpus_json), splits=splits)
