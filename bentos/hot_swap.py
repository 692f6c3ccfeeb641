"""Follow the registry's champion: load and warm a new one off the request path, then swap.

Requests read `ChampionFollower.current` once and use that engine to the end, so a swap is one
attribute assignment and no request is dropped or sees half a model. The registry's champion
changes atomically (see `bentos.registry.ModelRegistry`); a poll that fails to read the store
(a disk hiccup) is logged and tried again at the next tick; a version that fails to load is not retried
until the champion changes again. The engine swapped out is kept until the next swap, so a
rollback to it takes effect at the next poll, without loading or compiling anything.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from bentos.registry import ModelRecord, ModelRegistry

Engine = TypeVar("Engine")
logger = logging.getLogger(__name__)


class NoChampion(RuntimeError):
    """The model store has no champion (and no version was named) to serve."""


class ChampionFollower(Generic[Engine]):
    """The engine being served, replaced by a background thread when the champion changes.

    ``pinned_version`` serves that version for the life of the process (no polling).
    """

    def __init__(
        self,
        registry: ModelRegistry,
        load: Callable[[ModelRecord], Engine],
        *,
        pinned_version: str | None = None,
        poll_s: float = 5.0,
    ) -> None:
        self.registry = registry
        self._load = load
        self.pinned_version = pinned_version
        self.poll_s = poll_s
        record = registry.get(pinned_version) if pinned_version else registry.champion()
        if record is None:
            raise NoChampion(f"{registry} has no champion: promote a model first or name a version")
        self.current: Engine = load(record)
        self.version = record.version
        self._failed_version: str | None = None
        self._previous: tuple[str, Engine] | None = None  # (version, engine) last swapped out
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start polling (a daemon thread); does nothing for a pinned version."""
        if self.pinned_version is None and self._thread is None:
            self._thread = threading.Thread(target=self._follow, name="champion-follower", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.check()
            except Exception:  # the server keeps the old engine whatever goes wrong here
                logger.exception("champion check failed; still serving %s", self.version)

    def check(self) -> bool:
        """One poll: swap in a new champion when there is one; True when a swap happened."""
        record = self.registry.champion()
        if record is None or record.version in (self.version, self._failed_version):
            return False
        if self._previous is not None and self._previous[0] == record.version:
            engine = self._previous[1]
            logger.info("champion changed back to %s, still in memory", record.version)
        else:
            logger.info("champion changed to %s; loading it beside %s", record.version, self.version)
            try:
                engine = self._load(record)
            except Exception:
                self._failed_version = record.version
                logger.exception("could not load champion %s; still serving %s", record.version, self.version)
                return False
        self._previous = (self.version, self.current)
        self.current, self.version = engine, record.version
        logger.info("now serving %s", record.version)
        return True
