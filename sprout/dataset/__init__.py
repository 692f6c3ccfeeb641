"""Dataset snapshots: the corpus, entry rules and normalisation, user splits, and the immutable,
content-addressed folder training reads instead of the live database."""

from .config import DatasetConfig
from .corpus import Corpus, build_corpus
from .features import (
    IGNORED_DUPLICATE,
    IGNORED_NOT_IN_CORPUS,
    IGNORED_RULE_DROPPED,
    ProfileBatch,
    denormalise,
    entry_keep_mask,
    normalise,
    profile_features,
    user_stats,
)
from .snapshot import Snapshot, SnapshotManifest, SplitArrays, build_snapshot, load_snapshot
from .splits import UserSplit, holdout_mask, split_users

__all__ = [
    "IGNORED_DUPLICATE",
    "IGNORED_NOT_IN_CORPUS",
    "IGNORED_RULE_DROPPED",
    "Corpus",
    "DatasetConfig",
    "ProfileBatch",
    "Snapshot",
    "SnapshotManifest",
    "SplitArrays",
    "UserSplit",
    "build_corpus",
    "build_snapshot",
    "denormalise",
    "entry_keep_mask",
    "holdout_mask",
    "load_snapshot",
    "normalise",
    "profile_features",
    "split_users",
    "user_stats",
]
