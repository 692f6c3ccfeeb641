"""Request budgets: the client awaits ``acquire()`` once before every HTTP request it sends.

The budget is injectable so that several workers can share one (for example a Prefect global
rate limit wrapped in an object with this method); retries spend it like first attempts.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from aiolimiter import AsyncLimiter


@runtime_checkable
class RequestLimiter(Protocol):
    async def acquire(self) -> None:
        """Return when one more request may be sent."""
        ...


class RateLimiter:
    """At most ``requests_per_second`` on average, with bursts of up to ``burst`` requests."""

    def __init__(self, requests_per_second: float, burst: int = 1) -> None:
        if requests_per_second <= 0:
            raise ValueError(f"requests_per_second must be > 0, got {requests_per_second}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.requests_per_second = requests_per_second
        self.burst = burst
        # A leaky bucket of `burst` drained at the target rate.
        self._bucket = AsyncLimiter(max_rate=burst, time_period=burst / requests_per_second)

    async def acquire(self) -> None:
        await self._bucket.acquire()

    def __repr__(self) -> str:
        return f"RateLimiter(requests_per_second={self.requests_per_second}, burst={self.burst})"


class Unlimited:
    """No budget at all (tests, or a local simulator)."""

    async def acquire(self) -> None:
        return None

    def __repr__(self) -> str:
        return "Unlimited()"
