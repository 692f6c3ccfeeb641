"""The backoff policy for transient faults: 429, 5xx, timeouts, broken connections, truncated bodies.

Waits are exponential with full jitter (``uniform(0, min(max_s, base_s * 2**(n-1)))``), but never
shorter than a ``Retry-After`` the server sent, itself capped at ``max_s``: a server that asks
for a wait of years (an HTTP date in 2099) must not park the crawl. Built on tenacity: its
``wait_random_exponential`` is exactly full jitter, and ``AsyncRetrying`` takes the sleep
function, so tests can make it fast.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.wait import wait_base

Sleep = Callable[[float], Awaitable[None]]


class TransientFault(Exception):
    """One attempt failed in a way that another attempt may fix.

    Raised inside the retry loop only; the client turns the last one into ``RetriesExhausted``.
    """

    def __init__(self, reason: str, *, status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after_s = retry_after_s


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date); None if absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


class wait_jitter_or_retry_after(wait_base):
    """Full-jitter exponential backoff, raised to the failed attempt's ``Retry-After`` when it has one
    (never past ``max_s``)."""

    def __init__(self, base_s: float, max_s: float) -> None:
        self._jitter = wait_random_exponential(multiplier=base_s, max=max_s)
        self._max_s = max_s

    def __call__(self, retry_state: RetryCallState) -> float:
        jitter = self._jitter(retry_state)
        outcome = retry_state.outcome
        fault = outcome.exception() if outcome is not None and outcome.failed else None
        retry_after = getattr(fault, "retry_after_s", None)
        return max(jitter, min(retry_after or 0.0, self._max_s))


@dataclass(frozen=True)
class BackoffPolicy:
    max_attempts: int = 6
    base_s: float = 1.0
    max_s: float = 120.0
    sleep: Sleep = field(default=asyncio.sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_s < 0 or self.max_s < 0:
            raise ValueError("backoff delays must be >= 0")

    def retrying(self, *, before_sleep: Callable[[RetryCallState], None] | None = None) -> AsyncRetrying:
        """A fresh tenacity loop: retries ``TransientFault`` only, re-raises the last one when attempts run out."""
        return AsyncRetrying(
            sleep=self.sleep,
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_jitter_or_retry_after(self.base_s, self.max_s),
            retry=retry_if_exception_type(TransientFault),
            before_sleep=before_sleep,
            reraise=True,
        )
