"""Switchable faults of the simulated API: 429 bursts, 5xx, slow and truncated responses, and
list pages that lie (well-formed 200s whose content is wrong).

Faults apply to ``/v2/...`` requests only (never to the admin routes or the website page); the
lies apply to user-list pages only. Each request draws its fate from one seeded generator, so a
sequence of requests meets the same faults on every run with the same seed (given the same
request order).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SERVER_ERRORS = (500, 502, 503)
# Ways a user-list page can lie, each switched by FaultConfig's rate of the same name.
LIST_LIES = (
    "missing_list_status",  # items without the list_status that was asked for
    "empty_list",  # data: [] and no next link, whatever the user's list holds
    "oversized_numbers",  # the first item's anime id and episode count beyond 32 bits
    "bad_next_link",  # paging.next that is not a URL
    "endless_paging",  # a fresh next link on every page, past the end of the list
    "false_gzip",  # Content-Encoding: gzip on a body that is plain JSON
)
OVERSIZED_NUMBER = 2**40
BAD_NEXT_LINK = "http://[::1/v2/users/next"  # an unclosed IPv6 host: no client can parse it


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
    retry_after_date: str | None = Field(
        None, description="Sent as Retry-After instead of retry_after_s when set (an HTTP date, or any text)."
    )
    rate_missing_list_status: float = Field(0.0, ge=0, le=1, description="Chance a list page's items lack list_status.")
    rate_empty_list: float = Field(0.0, ge=0, le=1, description="Chance a list page is data: [] with no next link.")
    rate_oversized_numbers: float = Field(
        0.0, ge=0, le=1, description="Chance a list page's first item has an anime id and episode count beyond 32 bits."
    )
    rate_bad_next_link: float = Field(0.0, ge=0, le=1, description="Chance a list page's paging.next is not a URL.")
    rate_endless_paging: float = Field(
        0.0, ge=0, le=1, description="Chance a list page links a next page even past the end of the list."
    )
    rate_false_gzip: float = Field(0.0, ge=0, le=1, description="Chance a list page claims gzip encoding it lacks.")
    seed: int | None = Field(0, description="Seed of the fault draws; None draws from fresh entropy.")

    @property
    def retry_after_header(self) -> str:
        if self.retry_after_date is not None:
            return self.retry_after_date
        return str(max(0, math.ceil(self.retry_after_s)))

    def list_lie_rates(self) -> tuple[float, ...]:
        return tuple(getattr(self, f"rate_{lie}") for lie in LIST_LIES)


@dataclass(frozen=True)
class Fault:
    """What happens to one request: an error status instead of the answer, and/or a delay, and/or
    a truncated body."""

    status: int | None = None  # 429 or 5xx replaces the answer
    delay_s: float = 0.0
    truncate: bool = False
    lies: frozenset[str] = frozenset()  # LIST_LIES told on a user-list page (ignored elsewhere)


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
        if not (
            config.rate_429 or config.rate_5xx or config.rate_slow or config.rate_truncated or self._burst_left
            or any(config.list_lie_rates())
        ):
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
            lies = frozenset()
            rates = config.list_lie_rates()
            if any(rates):  # drawn only when switched on: the other faults' sequence stays as it was
                draws = self._rng.random(len(rates))
                lies = frozenset(lie for lie, rate, v in zip(LIST_LIES, rates, draws) if v < rate)
            return Fault(delay_s=delay, truncate=bool(u[3] < config.rate_truncated), lies=lies)


def tell_list_lies(body: dict[str, Any], lies: frozenset[str], next_page_url: str) -> dict[str, Any]:
    """A user-list page body with ``lies`` told; ``next_page_url`` is the page after this one."""
    body = {**body, "data": [dict(item) for item in body.get("data", [])], "paging": dict(body.get("paging", {}))}
    if "missing_list_status" in lies:
        for item in body["data"]:
            item.pop("list_status", None)
    if "oversized_numbers" in lies and body["data"]:
        first = body["data"][0]
        first["node"] = {**first["node"], "id": OVERSIZED_NUMBER}
        if "list_status" in first:
            first["list_status"] = {**first["list_status"], "num_episodes_watched": OVERSIZED_NUMBER}
    if "endless_paging" in lies:
        body["paging"]["next"] = next_page_url
    if "bad_next_link" in lies:
        body["paging"]["next"] = BAD_NEXT_LINK
    if "empty_list" in lies:
        body = {"data": [], "paging": {}}
    return body
