"""Micro-batching of concurrent recommendation requests, with explanations kept out of the batch.

Only the forward pass is shared. Each caller encodes its own profile in its own thread (the
profile rules and the first layer: a long profile's cost stays its own), joins the queue for the
batched rest of the forward pass, then ranks its row — all in its own thread again.

The batch has no background thread: the first caller to find the batcher idle becomes the leader
and runs its forward pass at once, so a lone request waits for nothing. Requests that arrive
while a batch is computing queue up; when the batch ends, the leader hands the lead to the oldest
waiting caller, which runs everything queued (up to ``max_batch``) as the next batch — its own
request included — and so on.

Explanations (``explain: true`` on /recommend, and `explain`) take the explanation lane: one at a
time, and before each chunk of its leave-one-out pass an explanation waits until no plain request
is in flight and no batch is running, or until one batch has finished since it began waiting (so
that a steady stream of plain requests slows explanations down but cannot starve them). A plain
request therefore never waits for an explanation, and shares the machine with at most one small
chunk of one.

``explain_in_batch=True`` restores the earlier behaviour, where an explained request's
leave-one-out pass ran inside the shared batch and every queued request waited for it; it is kept
so that `benchmarks/serving_isolation.py` can measure what the lane buys.

The model is looked up when a request arrives, so `swap` (or a provider callable that returns the
current model) takes effect for requests arriving from then on while those already in flight
finish on the model that encoded them; a batch never mixes models. The batcher keeps no other
reference to a model.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

import numpy as np

from .engine import EncodedProfile, Recommender
from .requests import (
    ExplainRequest,
    ExplainResponse,
    PredictRequest,
    PredictResponse,
    RecommendRequest,
    RecommendResponse,
)

DEFAULT_MAX_BATCH = 16


Finish = Callable[[np.ndarray, np.ndarray], RecommendResponse]  # log presence [C], rating features [D] -> answer


class _Ticket:
    """One profile waiting for the shared forward pass: its output rows (or its answer, when the
    batch is to ``finish`` it), or the news that its caller now leads."""

    def __init__(self, recommender: Recommender, encoded: EncodedProfile, finish: Finish | None = None):
        self.recommender = recommender
        self.encoded = encoded
        self.finish = finish
        self.wake = threading.Event()  # set when settled or when handed the lead
        self.leads = False
        self.settled = False
        self.outcome: tuple[np.ndarray, np.ndarray] | RecommendResponse | BaseException | None = None

    def settle(self, outcome: tuple[np.ndarray, np.ndarray] | RecommendResponse | BaseException) -> None:
        self.outcome, self.settled = outcome, True
        self.wake.set()


class RequestBatcher:
    """Group concurrent `submit` calls into batched forward passes of one `Recommender`, and run
    explanations on a lane of their own that gives way to those batches.

    ``recommender`` is either a `Recommender` (replace it with `swap`) or a callable returning
    the current one (e.g. reading the attribute a service swaps).
    """

    def __init__(
        self,
        recommender: Recommender | Callable[[], Recommender],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        explain_in_batch: bool = False,
    ):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.max_batch = max_batch
        self.explain_in_batch = explain_in_batch
        self._source = recommender
        self._lock = threading.Lock()
        self._quieter = threading.Condition(self._lock)  # notified when a batch ends or the last plain request does
        self._queue: deque[_Ticket] = deque()
        self._running = False  # a batch is computing (queued tickets always have one ahead of them)
        self._finished = 0  # batches finished so far
        self._plain_in_flight = 0  # plain requests between arrival and answer
        self._explaining = threading.Lock()  # the explanation lane: one explanation at a time
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
        """Serve requests arriving from now on with ``recommender``."""
        self._source = recommender

    def submit(self, request: RecommendRequest) -> RecommendResponse:
        """Answer one request (blocking); its forward pass is batched with whatever else is waiting.

        Raises `InferenceError` for a profile that cannot be served (its own, nobody else's)."""
        recommender = self.recommender
        if not request.explain:
            with self._lock:
                self._plain_in_flight += 1
            try:
                encoded = recommender.encode(request)
                log_presence, features = self._forward(recommender, encoded)  # [C], [D]
                return recommender.respond(request, encoded, log_presence, features)
            finally:
                with self._lock:
                    self._plain_in_flight -= 1
                    if not self._plain_in_flight:
                        self._quieter.notify_all()
        if self.explain_in_batch:
            encoded = recommender.encode(request)
            return self._forward(recommender, encoded, lambda p, r: recommender.respond(request, encoded, p, r))
        with self._explaining:
            self.give_way()
            encoded = recommender.encode(request)
            log_presence, features = self._forward(recommender, encoded)
            return recommender.respond(request, encoded, log_presence, features, pace=self.give_way)

    def explain(self, request: ExplainRequest) -> ExplainResponse:
        """`Recommender.explain` on the explanation lane (its one-row forward pass is its own)."""
        recommender = self.recommender
        with self._explaining:
            self.give_way()
            return recommender.explain(request, pace=self.give_way)

    def predict(self, request: PredictRequest) -> PredictResponse:
        """`Recommender.predict` on the explanation lane: its hold-outs are an explanation's kind of work."""
        recommender = self.recommender
        with self._explaining:
            self.give_way()
            return recommender.predict(request)

    def give_way(self) -> None:
        """Block while plain requests are in flight or a batch is running, but for no longer than
        until one batch has finished."""
        with self._quieter:
            finished = self._finished
            self._quieter.wait_for(
                lambda: (not self._running and not self._plain_in_flight) or self._finished > finished
            )

    # --- the shared forward pass -------------------------------------------------------------

    def _forward(self, recommender: Recommender, encoded: EncodedProfile, finish: Finish | None = None):
        """This profile's row of a batched `Recommender.outputs` (log presence [C], rating features [D]), or
        with ``finish``, what it makes of that row inside the batch."""
        ticket = _Ticket(recommender, encoded, finish)
        with self._lock:
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
            batch = []
            while self._queue and len(batch) < self.max_batch and self._queue[0].recommender is model:
                batch.append(self._queue.popleft())
            self.batches += 1
        try:
            try:
                log_presence, features = model.outputs([t.encoded for t in batch])  # [B, C], [B, D]
                rows: list = [(log_presence[row], features[row]) for row in range(len(batch))]
            except Exception as error:  # noqa: BLE001  (a failure of the whole batch is every member's)
                rows = [error] * len(batch)
            for ticket, row in zip(batch, rows, strict=True):
                if ticket.finish is not None and not isinstance(row, BaseException):
                    try:
                        row = ticket.finish(*row)
                    except Exception as error:  # noqa: BLE001  (its own failure only)
                        row = error
                ticket.settle(row)
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
