"""Switchable faults of the simulated API: 429 bursts, 5xx, slow and truncated responses.

Faults apply to ``/v2/...`` requests only (never to the admin routes or the website page).
Each request draws its fate from one seeded generator, so a sequence of requests meets the same
faults on every run with the same seed (given the same request order).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SERVER_ERRORS = (500, 502, 503)


class FaultConfig(BaseModel):
    """Fault probabilities per request; the defaults inject nothing."""

    model_config = ConfigDict(extra="forbid")

    rate_429: float = Field(0.0, ge=0, le=1, description="Chance a request starts a burst of 429 answers.")
    burst_429: int = Field(1, ge=1, description="Requests answered 429 in a row once a burst starts.")
    retry_after_s: float = Field(1.0, ge=0, description="Sent as Retry-After, rounded up to whole seconds.")
    rate_5xx: float = Field(0.0, ge=0, le=1, description="Chance of a 500, 502 or 503 answer.")
    rate_slow: float = Field(0.0, ge=0, le=1, description="Chance a response is held back slow_s seconds.")
    slow_s: float = Field(1.0, ge=0, description="Delay of a slow response.")
    rate_truncated: float = Field(0.0, ge=0, le=1, description="Chance of a 200 whose JSON body is cut short.")
    seed: int | None = Field(0, description="Seed of the fault draws; None draws from fresh entropy.")

    @property
    def retry_after_header(self) -> str:
        return str(max(0, math.ceil(self.retry_after_s)))


@dataclass(frozen=True)
class Fault:
    """What happens to one request: an error status instead of the answer, and/or a delay, and/or
    a truncated body."""

    status: int | None = None  # 429 or 5xx replaces the answer
    delay_s: float = 0.0
    truncate: bool = False


NO_FAULT = Fault()


class FaultInjector:
    """Draws each request's fault from the current config; thread-safe, reconfigurable live."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self.configure(config or FaultConfig())

    @property
    def config(self) -> FaultConfig:
        return self._config

    def configure(self, config: FaultConfig) -> None:
        """Switch to ``config``; restarts its random sequence and ends any burst in progress."""
        with self._lock:
            self._config = config
            self._rng = np.random.default_rng(config.seed)
            self._burst_left = 0

    def draw(self) -> Fault:
        config = self._config
        if not (config.rate_429 or config.rate_5xx or config.rate_slow or config.rate_truncated or self._burst_left):
            return NO_FAULT
        with self._lock:
            if self._burst_left > 0:
                self._burst_left -= 1
                return Fault(status=429)
            u = self._rng.random(4)
            if u[0] < config.rate_429:
                self._burst_left = config.burst_429 - 1
                return Fault(status=429)
            if u[1] < config.rate_5xx:
                return Fault(status=int(SERVER_ERRORS[self._rng.integers(len(SERVER_ERRORS))]))
            delay = config.slow_s if u[2] < config.rate_slow else 0.0
            return Fault(delay_s=delay, truncate=bool(u[3] < config.rate_truncated))
