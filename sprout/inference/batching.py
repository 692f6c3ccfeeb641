"""Micro-batching of concurrent recommendation requests, without a background thread.

The first caller to find the batcher idle becomes the leader and runs its request at once, so a
lone request waits for nothing. Requests that arrive while a batch is computing queue up; when
the batch ends, the leader hands the lead to the oldest waiting caller, which runs everything
queued (up to ``max_batch``) as the next batch — its own request included — and so on. Each caller
gets its own response, or its own `InferenceError`.

The model is looked up when a batch starts, so `swap` (or a provider callable that returns the
current model) takes effect from the next batch while the running one finishes on the old model;
the batcher keeps no other reference to it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from .engine import Recommender
from .requests import RecommendRequest, RecommendResponse

DEFAULT_MAX_BATCH = 16


class _Ticket:
    """One waiting request: its outcome, or the news that its caller now leads."""

    def __init__(self, request: RecommendRequest):
        self.request = request
        self.wake = threading.Event()  # set when settled or when handed the lead
        self.leads = False
        self.settled = False
        self.outcome: RecommendResponse | BaseException | None = None

    def settle(self, outcome: RecommendResponse | BaseException) -> None:
        self.outcome, self.settled = outcome, True
        self.wake.set()


class RequestBatcher:
    """Group concurrent `submit` calls into batched forward passes of one `Recommender`.

    ``recommender`` is either a `Recommender` (replace it with `swap`) or a callable returning
    the current one (e.g. reading the attribute a service swaps).
    """

    def __init__(self, recommender: Recommender | Callable[[], Recommender], *, max_batch: int = DEFAULT_MAX_BATCH):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.max_batch = max_batch
        self._source = recommender
        self._lock = threading.Lock()
        self._queue: deque[_Ticket] = deque()
        self._running = False
        self.batches = 0  # batches run so far (how well requests were grouped)

    @property
    def recommender(self) -> Recommender:
        source = self._source
        return source if isinstance(source, Recommender) else source()

    @property
    def waiting(self) -> int:
        """Requests queued behind the running batch."""
        with self._lock:
            return len(self._queue)

    def swap(self, recommender: Recommender | Callable[[], Recommender]) -> None:
        """Serve from the next batch on with ``recommender``."""
        self._source = recommender

    def submit(self, request: RecommendRequest) -> RecommendResponse:
        """Answer one request (blocking), batched with whatever else is waiting."""
        ticket = _Ticket(request)
        with self._lock:
            self._queue.append(ticket)
            if not self._running:
                self._running = ticket.leads = True
        if not ticket.leads:
            ticket.wake.wait()
        if ticket.leads:  # idle on arrival, or handed the lead: our request is first in the queue
            self._run_next_batch()
        if isinstance(ticket.outcome, BaseException):
            raise ticket.outcome
        assert isinstance(ticket.outcome, RecommendResponse)
        return ticket.outcome

    def _run_next_batch(self) -> None:
        with self._lock:
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            self.batches += 1
        try:
            try:
                outcomes = self.recommender.recommend_many([t.request for t in batch])
            except Exception as error:  # noqa: BLE001  (a failure of the whole batch is every member's)
                outcomes = [error] * len(batch)
            for ticket, outcome in zip(batch, outcomes, strict=True):
                ticket.settle(outcome)
        finally:
            for ticket in batch:  # interrupted: nobody may wait forever
                if not ticket.settled:
                    ticket.settle(RuntimeError("the batch was interrupted"))
            self._hand_over()

    def _hand_over(self) -> None:
        """Let the oldest waiting caller lead the next batch, or go idle."""
        with self._lock:
            if self._queue:
                successor = self._queue[0]
                successor.leads = True
                successor.wake.set()
            else:
                self._running = False
