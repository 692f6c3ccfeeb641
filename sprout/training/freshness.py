"""Whether the store has moved on enough since the last training to be worth training again.

Retraining is triggered by every completed crawl; this is the check that makes a small crawl a
no-op. "The last training" is the newest model artifact under ``home/models`` (its
``created_at``); before the first model every change counts.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from sprout.store import Store
from sprout.model.artifact import METADATA_FILE
from sprout.workspace import Workspace


def last_trained_at(home: Path) -> datetime | None:
    workspace = Workspace(home)
    times = [
        datetime.fromisoformat(json.loads((workspace.model(version) / METADATA_FILE).read_text())["created_at"])
        for version in workspace.trained_versions()
    ]
    return max(times, default=None)


def profiles_changed_since_training(home: Path, db_path: Path) -> int:
    """Users whose lists changed in crawls that finished after the newest model was trained."""
    with Store.open(db_path, read_only=True, wait_s=30.0) as store:
        return store.profiles_changed_since(last_trained_at(home))
