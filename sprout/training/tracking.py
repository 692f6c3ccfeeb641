"""Experiment tracking: a W&B run (offline without an API key), or nothing.

wandb is imported lazily so the library stays light; secrets never reach the run's config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

_SECRET_WORDS = ("secret", "token", "password", "api_key", "client_id", "key")


class Tracker(Protocol):
    run_id: str | None

    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def summary(self, values: dict[str, Any]) -> None: ...

    def finish(self) -> None: ...


def without_secrets(config: dict[str, Any]) -> dict[str, Any]:
    """The config with any field whose name looks like a credential removed."""
    clean: dict[str, Any] = {}
    for key, value in config.items():
        if any(word in key.lower() for word in _SECRET_WORDS):
            continue
        clean[key] = without_secrets(value) if isinstance(value, dict) else value
    return clean


class NullTracker:
    """Tracks nothing (tests, or tracking switched off)."""

    run_id: str | None = None

    def log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def summary(self, values: dict[str, Any]) -> None:
        pass

    def finish(self) -> None:
        pass


class WandbTracker:
    """One W&B run; offline mode when no ``WANDB_API_KEY`` is set (files under ``folder``)."""

    def __init__(
        self, project: str, config: dict[str, Any], folder: Path, *, name: str | None = None,
        run_id: str | None = None, tags: list[str] | None = None,
    ) -> None:
        import wandb

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        self._run = wandb.init(
            project=project, config=without_secrets(config), dir=str(folder), name=name, id=run_id,
            resume="allow" if run_id else None, mode=mode, tags=tags, reinit="finish_previous",
            settings=wandb.Settings(silent=True, console="off"),
        )
        self.run_id = self._run.id
        self.run_dir = Path(self._run.dir).parent

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._run.log(metrics, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self._run.summary[key] = value

    def finish(self) -> None:
        self._run.finish()
