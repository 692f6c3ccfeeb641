"""Counting XLA compilations caused by a piece of code, per thread.

Serving compiles every shape it will ever use at start-up; a compilation on a live request is a
latency spike of seconds, so the engine counts them. JAX reports each backend compilation as a
monitoring event in the thread that triggered it; a process-wide listener (registered once)
credits it to every counter active in that thread. Counters therefore see their own work only,
even while another model warms up in a background thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import jax

# The event JAX records around every backend (XLA) compilation (jax/_src/dispatch.py).
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

_active = threading.local()  # .counters: list of CompilationCounter active in this thread
_listener_lock = threading.Lock()
_listener_registered = False


def _on_duration_event(event: str, duration: float, **kwargs: object) -> None:
    if event != BACKEND_COMPILE_EVENT:
        return
    for counter in getattr(_active, "counters", ()):
        counter._add()


def _ensure_listener() -> None:
    global _listener_registered
    with _listener_lock:
        if not _listener_registered:
            jax.monitoring.register_event_duration_secs_listener(_on_duration_event)
            _listener_registered = True


class CompilationCounter:
    """Number of XLA compilations triggered inside `counting()` blocks, from any thread."""

    def __init__(self) -> None:
        _ensure_listener()
        self._lock = threading.Lock()
        self._count = 0

    def _add(self) -> None:
        with self._lock:
            self._count += 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    @contextmanager
    def counting(self) -> Iterator[None]:
        """Credit compilations triggered by this thread inside the block to this counter."""
        counters = getattr(_active, "counters", None)
        if counters is None:
            counters = _active.counters = []
        counters.append(self)
        try:
            yield
        finally:
            counters.remove(self)
