"""Micro-batching of concurrent recommendation requests, with explanations kept out of the batch
and a bound on how much work may wait.

A plain request is answered entirely inside a batch: the batch's thread prepares and encodes
each profile, runs the batched rest of the forward pass, then ranks each row and builds each
answer, while the callers sleep. One thread per batch doing all of it measured faster than each
caller encoding and ranking in its own thread: Python holds one lock for its objects, and sixteen
threads taking turns with it spent more time handing it over than computing (on 2 cores, 16
concurrent callers: 157 requests/s that way, CPU per request up from 5.8 to 8.2 ms against a lone
caller). A bad profile fails alone; a very long one makes its batch wait for its encoding.

The batch has no background thread: the first caller to find the batcher idle becomes the leader
and runs its batch at once, so a lone request waits for nothing. Requests that arrive while a
batch is computing queue up; when the batch ends, the leader hands the lead to the oldest waiting
caller, which runs everything queued (up to ``max_batch``) as the next batch — its own request
included — and so on.

Admission: at most ``max_waiting`` plain requests may queue behind the running batch and at most
``max_waiting_explanations`` explanations behind the one being computed; past either bound a
request raises `Overloaded` at once (the service answers 503 with ``Retry-After``) instead of
joining a queue whose wait would outlast any client's patience.

Explanations (``explain: true`` on /recommend, `explain` and `predict`) take the explanation lane:
one at a time, and before each chunk of its leave-one-out pass an explanation waits until no plain
request is in flight and no batch is running, or until one batch has finished since it began
waiting (so that a steady stream of plain requests slows explanations down but cannot starve
them). A plain request therefore never waits for an explanation, and shares the machine with at
most one small chunk of one.

``explain_in_batch=True`` restores the earlier behaviour, where an explained request's
leave-one-out pass ran inside the shared batch and every queued request waited for it; it is kept
so that `benchmarks/serving_isolation.py` can measure what the lane buys.

The model is looked up when a request arrives, so `swap` (or a provider callable that returns the
current model) takes effect for requests arriving from then on while those already in flight
finish on the model that took them; a batch never mixes models. The batcher keeps no other
reference to a model. An ``observer`` (`BatchObserver`) hears of every batch: its size, the
time each member queued, and the forward pass's time.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

import numpy as np

from .engine import EncodedProfile, Recommender
from .errors import Overloaded
from .requests import (
    ExplainRequest,
    ExplainResponse,
    PredictRequest,
    PredictResponse,
    RecommendRequest,
    RecommendResponse,
)

DEFAULT_MAX_BATCH = 16
DEFAULT_MAX_WAITING = 64
DEFAULT_MAX_WAITING_EXPLANATIONS = 4
RETRY_AFTER_S = 1  # what a shed request is told to wait: a few batches' time, rounded up to HTTP's unit


class BatchObserver(Protocol):
    """Hears of each batch (the service turns these into metrics)."""

    def batch(self, size: int, forward_s: float, waits_s: list[float]) -> None:
        """``size`` requests shared one forward pass of ``forward_s``; each had queued ``waits_s``."""

    def shed(self, lane: str) -> None:
        """A request was refused because its lane (``plain`` or ``explanation``) was full."""

    def explanations(self, count: int) -> None:
        """Explanations computing or waiting for the lane, now."""


Rows = tuple[np.ndarray, np.ndarray]  # log presence [C], rating features [D]


class _Ticket:
    """One request waiting for a batch: either a plain request, answered inside the batch, or an
    encoded profile whose output rows are wanted; or the news that its caller now leads."""

    def __init__(self, recommender: Recommender, request: RecommendRequest | None, encoded: EncodedProfile | None):
        self.recommender = recommender
        self.request = request
        self.encoded = encoded
        self.queued_at = time.perf_counter()
        self.wake = threading.Event()  # set when settled or when handed the lead
        self.leads = False
        self.settled = False
        self.outcome: Rows | RecommendResponse | BaseException | None = None

    def settle(self, outcome: Rows | RecommendResponse | BaseException) -> None:
        self.outcome, self.settled = outcome, True
        self.wake.set()


class RequestBatcher:
    """Group concurrent `submit` calls into batches of one `Recommender`, run explanations on a
    lane of their own that gives way to those batches, and refuse work past the queue bounds.

    ``recommender`` is either a `Recommender` (replace it with `swap`) or a callable returning
    the current one (e.g. reading the attribute a service swaps).
    """

    def __init__(
        self,
        recommender: Recommender | Callable[[], Recommender],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_waiting: int = DEFAULT_MAX_WAITING,
        max_waiting_explanations: int = DEFAULT_MAX_WAITING_EXPLANATIONS,
        explain_in_batch: bool = False,
        observer: BatchObserver | None = None,
    ):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_waiting < 0 or max_waiting_explanations < 0:
            raise ValueError("queue bounds cannot be negative")
        self.max_batch = max_batch
        self.max_waiting = max_waiting
        self.max_waiting_explanations = max_waiting_explanations
        self.explain_in_batch = explain_in_batch
        self.observer = observer
        self._source = recommender
        self._lock = threading.Lock()
        self._quieter = threading.Condition(self._lock)  # notified when a batch ends or the last plain request does
        self._queue: deque[_Ticket] = deque()
        self._running = False  # a batch is computing (queued tickets always have one ahead of them)
        self._finished = 0  # batches finished so far
        self._plain_in_flight = 0  # plain requests between arrival and answer
        self._explaining = threading.Lock()  # the explanation lane: one explanation at a time
        self._explanations = 0  # explanations computing or waiting for the lane
        self.batches = 0  # batches run so far (how well requests were grouped)
        self.shed = 0  # requests refused because a queue was full

    @property
    def recommender(self) -> Recommender:
        source = self._source
        return source if isinstance(source, Recommender) else source()

    @property
    def waiting(self) -> int:
        """Requests queued behind the running batch."""
        with self._lock:
            return len(self._queue)

    @property
    def explanations(self) -> int:
        """Explanations being computed or waiting for the lane."""
        with self._lock:
            return self._explanations

    def swap(self, recommender: Recommender | Callable[[], Recommender]) -> None:
        """Serve requests arriving from now on with ``recommender``."""
        self._source = recommender

    def submit(self, request: RecommendRequest) -> RecommendResponse:
        """Answer one request (blocking); plain ones are answered inside a batch.

        Raises `InferenceError` for a profile that cannot be served (its own, nobody else's) and
        `Overloaded` when its queue is full."""
        recommender = self.recommender
        if not request.explain:
            with self._lock:
                self._plain_in_flight += 1
            try:
                return self._batched(_Ticket(recommender, request, None))
            finally:
                with self._lock:
                    self._plain_in_flight -= 1
                    if not self._plain_in_flight:
                        self._quieter.notify_all()
        if self.explain_in_batch:
            return self._batched(_Ticket(recommender, request, None))
        with self._lane():
            encoded = recommender.encode(request)
            log_presence, features = self._batched(_Ticket(recommender, None, encoded))
            return recommender.respond(request, encoded, log_presence, features, pace=self.give_way)

    def explain(self, request: ExplainRequest) -> ExplainResponse:
        """`Recommender.explain` on the explanation lane (its one-row forward pass is its own)."""
        recommender = self.recommender
        with self._lane():
            return recommender.explain(request, pace=self.give_way)

    def predict(self, request: PredictRequest) -> PredictResponse:
        """`Recommender.predict` on the explanation lane: its hold-outs are an explanation's kind of work."""
        recommender = self.recommender
        with self._lane():
            return recommender.predict(request)

    def give_way(self) -> None:
        """Block while plain requests are in flight or a batch is running, but for no longer than
        until one batch has finished."""
        with self._quieter:
            finished = self._finished
            self._quieter.wait_for(
                lambda: (not self._running and not self._plain_in_flight) or self._finished > finished
            )

    def _refuse(self, lane: str, bound: int) -> Overloaded:
        self.shed += 1
        if self.observer is not None:
            self.observer.shed(lane)
        return Overloaded(f"the service is busy ({bound} {lane} requests already wait); retry shortly", RETRY_AFTER_S)

    def _lane(self) -> _LaneSlot:
        return _LaneSlot(self)

    # --- the shared batch --------------------------------------------------------------------

    def _batched(self, ticket: _Ticket):
        """The ticket's outcome from a batch: a plain request's answer, or an encoded profile's rows."""
        with self._lock:
            if ticket.encoded is None and self._running and len(self._queue) >= self.max_waiting:
                raise self._refuse("plain", self.max_waiting)  # an admitted explanation's one row is never refused
            self._queue.append(ticket)
            if not self._running:
                self._running = ticket.leads = True
        if not ticket.leads:
            ticket.wake.wait()
        if ticket.leads:  # idle on arrival, or handed the lead: our ticket is first in the queue
            self._run_next_batch()
        if isinstance(ticket.outcome, BaseException):
            raise ticket.outcome
        assert ticket.outcome is not None
        return ticket.outcome

    def _run_next_batch(self) -> None:
        with self._lock:
            model = self._queue[0].recommender
            batch: list[_Ticket] = []
            while self._queue and len(batch) < self.max_batch and self._queue[0].recommender is model:
                batch.append(self._queue.popleft())
            self.batches += 1
        started = time.perf_counter()
        try:
            for ticket in batch:  # each profile's own part: a bad one fails alone
                if ticket.encoded is None:
                    try:
                        ticket.encoded = model.encode(ticket.request)
                    except Exception as error:  # noqa: BLE001
                        ticket.settle(error)
            live = [ticket for ticket in batch if not ticket.settled]
            forward_s = 0.0
            if live:
                forward_started = time.perf_counter()
                try:
                    log_presence, features = model.outputs([t.encoded for t in live])  # [B, C], [B, D]
                except Exception as error:  # noqa: BLE001  (a failure of the whole pass is every member's)
                    for ticket in live:
                        ticket.settle(error)
                    live = []
                forward_s = time.perf_counter() - forward_started
                for row, ticket in enumerate(live):
                    rows = (log_presence[row], features[row])
                    if ticket.request is None:
                        ticket.settle(rows)
                        continue
                    try:
                        ticket.settle(model.respond(ticket.request, ticket.encoded, *rows))
                    except Exception as error:  # noqa: BLE001  (its own failure only)
                        ticket.settle(error)
            if self.observer is not None:
                self.observer.batch(len(batch), forward_s, [started - t.queued_at for t in batch])
        finally:
            for ticket in batch:  # interrupted: nobody may wait forever
                if not ticket.settled:
                    ticket.settle(RuntimeError("the batch was interrupted"))
            self._hand_over()

    def _hand_over(self) -> None:
        """Let the oldest waiting caller lead the next batch, or go idle; wake explanations waiting for either."""
        with self._lock:
            self._finished += 1
            if self._queue:
                successor = self._queue[0]
                successor.leads = True
                successor.wake.set()
            else:
                self._running = False
            self._quieter.notify_all()


class _LaneSlot:
    """The explanation lane as a context manager: refused when full, then one at a time, giving way first."""

    def __init__(self, batcher: RequestBatcher):
        self.batcher = batcher

    def __enter__(self) -> None:
        batcher = self.batcher
        with batcher._lock:
            if batcher._explanations > batcher.max_waiting_explanations:  # one computing, the rest waiting
                raise batcher._refuse("explanation", batcher.max_waiting_explanations)
            batcher._explanations += 1
            count = batcher._explanations
        if batcher.observer is not None:
            batcher.observer.explanations(count)
        try:
            batcher._explaining.acquire()
        except BaseException:
            self._leave()
            raise
        batcher.give_way()

    def __exit__(self, *exc_info: object) -> None:
        self.batcher._explaining.release()
        self._leave()

    def _leave(self) -> None:
        batcher = self.batcher
        with batcher._lock:
            batcher._explanations -= 1
            count = batcher._explanations
        if batcher.observer is not None:
            batcher.observer.explanations(count)
