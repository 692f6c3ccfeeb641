"""`DatasetConfig`: every number that shapes a dataset snapshot, in one validated record.

The whole config is written into each snapshot's manifest and hashed into its id, so two
snapshots built with different settings can never be mistaken for one another.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DatasetConfig(BaseModel):
    """How a snapshot is cut from the store (docs/design.md §4)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    corpus_size: int = Field(6000, gt=0)  # most-listed shows kept; index 0 = most popular
    # Entries that count (everything but plan-to-watch) a user needs to be in the snapshot at all.
    # Short profiles still carry co-occurrence signal: the training recipe chooses, on validation
    # users, which training users it learns from (`TrainConfig.training_entry_thresholds`).
    min_counted_entries: int = Field(1, ge=0)
    # ... and to be a validation or test user, so that their fold-in / held-out split means something.
    min_evaluation_entries: int = Field(10, ge=0)
    # A user is active with an update in this many days before the snapshot date (5 years).
    # A field so data without real timestamps (anime-5k) can still build.
    activity_window_days: int = Field(1826, gt=0)
    n_validation_users: int = Field(500, ge=0)
    n_test_users: int = Field(500, ge=0)
    holdout_fraction: float = Field(0.2, gt=0.0, lt=1.0)  # of each held-out user's entries
    seed: int = 98765
    excluded_ratings: tuple[str, ...] = ("rx",)  # age ratings never in the corpus

    @classmethod
    def tiny(cls, **overrides: object) -> DatasetConfig:
        """A small variant for tests and smoke runs."""
        values: dict[str, object] = {
            "corpus_size": 200,
            "min_counted_entries": 5,
            "min_evaluation_entries": 5,
            "n_validation_users": 20,
            "n_test_users": 20,
        }
        values.update(overrides)
        return cls(**values)
