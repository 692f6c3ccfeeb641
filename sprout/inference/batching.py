"""Micro-batching of concurrent recommendation requests, with explanations kept out of the batch
and a bound on how much work may wait.

One thread per batcher runs the batches (TF Serving's and Triton's one batch in flight per
device): it takes every plain request queued (up to ``max_batch``, all for the same model),
prepares and encodes each profile, runs the batched rest of the forward pass, then ranks each
row and builds each answer. A caller only queues its request and waits — a thread on an event,
or a coroutine on a future that the batch thread resolves through its event loop — so a
service answers plain requests from its event loop with no request threads at all. Python holds
one lock for its objects: sixteen request threads each doing their own part, or even only
handing the lead to one another, spent more time passing that lock around than computing
(docs/design.md §6). Requests arriving while a batch computes form the next one. Clients
answered together come back together, but their requests reach the queue one by one, so a new
batch may linger until as many are queued as the last batch held — never longer than the last
forward pass took (a straggler would wait that long for the next batch anyway) nor
``max_linger_s``. A lone client's batches hold one, so it never waits. A bad profile fails
alone; a very long one makes its batch wait for its encoding.

Admission: at most ``max_waiting`` plain requests may queue behind the running batch and at most
``max_waiting_explanations`` explanations behind the one being computed; past either bound a
request raises `Overloaded` at once (the service answers 503 with ``Retry-After``) instead of
joining a queue whose wait would outlast any client's patience.

Explanations (``explain: true`` on /recommend, `explain` and `predict`) take the explanation lane,
in their callers' threads: one at a time, and before each chunk of its leave-one-out pass an
explanation waits until no plain request is in flight and no batch is running, or until one
batch has finished since it began waiting (so that a steady stream of plain requests slows
explanations down but cannot starve them). A plain request therefore never waits for an
explanation, and shares the machine with at most one small chunk of one. An explained request's
own forward row still comes from the batch.

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

import asyncio
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
    encoded profile whose output rows are wanted. Its caller waits on an event (a thread) or on a
    future of its event loop (a coroutine)."""

    def __init__(
        self, recommender: Recommender, request: RecommendRequest | None, encoded: EncodedProfile | None,
        loop: asyncio.AbstractEventLoop | None = None,
    ):
        self.recommender = recommender
        self.request = request
        self.encoded = encoded
        self.plain = encoded is None and request is not None and not request.explain  # answered inside the batch
        self.queued_at = time.perf_counter()
        self.settled = False
        self.outcome: Rows | RecommendResponse | BaseException | None = None
        self._loop = loop
        self.future = loop.create_future() if loop is not None else None
        self._done = threading.Event() if loop is None else None

    def settle(self, outcome: Rows | RecommendResponse | BaseException) -> None:
        self.outcome, self.settled = outcome, True
        if self._done is not None:
            self._done.set()
            return
        try:
            self._loop.call_soon_threadsafe(self._resolve)
        except RuntimeError:  # the loop has closed: nobody waits for this answer any more
            pass

    def _resolve(self) -> None:  # on the caller's event loop
        if self.future.done():  # the caller went away (cancelled)
            return
        if isinstance(self.outcome, BaseException):
            self.future.set_exception(self.outcome)
        else:
            self.future.set_result(self.outcome)

    def wait(self):
        """The outcome, for a caller that is a thread (raises the request's own error)."""
        self._done.wait()
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


class RequestBatcher:
    """Group concurrent requests into batches of one `Recommender` on a batch thread of its own,
    run explanations on a lane of their own that gives way to those batches, and refuse work past
    the queue bounds.

    ``recommender`` is either a `Recommender` (replace it with `swap`) or a callable returning
    the current one (e.g. reading the attribute a service swaps). `close` stops the batch thread
    once the queue is empty.
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
        max_linger_s: float = 0.0,
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
        self.max_linger_s = max_linger_s
        self._last_size = 1  # members of the last batch: clients answered together come back together
        self._last_forward_s = 0.0  # the last batch's forward pass: how long a straggler would wait for the next
        self._source = recommender
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # notified when a ticket is queued or on close
        self._quieter = threading.Condition(self._lock)  # notified when a batch ends or the last plain request does
        self._queue: deque[_Ticket] = deque()
        self._running = False  # a batch is computing
        self._closed = False
        self._finished = 0  # batches finished so far
        self._plain_in_flight = 0  # plain requests between arrival and answer
        self._explaining = threading.Lock()  # the explanation lane: one explanation at a time
        self._explanations = 0  # explanations computing or waiting for the lane
        self.batches = 0  # batches run so far (how well requests were grouped)
        self.shed = 0  # requests refused because a queue was full
        self._thread = threading.Thread(target=self._serve, name="sprout-batches", daemon=True)
        self._thread.start()

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

    def close(self, timeout_s: float | None = 30.0) -> None:
        """Stop the batch thread once every queued request is answered."""
        with self._lock:
            self._closed = True
            self._arrived.notify_all()
        self._thread.join(timeout_s)

    def submit(self, request: RecommendRequest) -> RecommendResponse:
        """Answer one request, blocking the calling thread; plain ones are answered inside a batch.

        Raises `InferenceError` for a profile that cannot be served (its own, nobody else's) and
        `Overloaded` when its queue is full."""
        recommender = self.recommender
        if not request.explain or self.explain_in_batch:
            return self._enqueue(_Ticket(recommender, request, None)).wait()
        with self._lane():
            encoded = recommender.encode(request)
            log_presence, features = self._enqueue(_Ticket(recommender, None, encoded)).wait()
            return recommender.respond(request, encoded, log_presence, features, pace=self.give_way)

    async def submit_async(self, request: RecommendRequest) -> RecommendResponse:
        """`submit` for a coroutine: a plain request is answered by the batch thread while the
        event loop goes on; an explained one runs `submit` in a worker thread (its leave-one-out
        pass is long and paced)."""
        if request.explain and not self.explain_in_batch:
            return await asyncio.to_thread(self.submit, request)
        ticket = self._enqueue(_Ticket(self.recommender, request, None, asyncio.get_running_loop()))
        return await ticket.future

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

    def _enqueue(self, ticket: _Ticket) -> _Ticket:
        """Queue ``ticket`` for the batch thread; refused when the plain queue is full (an admitted
        explanation's one row is never refused)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            if ticket.encoded is None and self._running and len(self._queue) >= self.max_waiting:
                raise self._refuse("plain", self.max_waiting)
            if ticket.plain:
                self._plain_in_flight += 1
            self._queue.append(ticket)
            self._arrived.notify()
        return ticket

    def _serve(self) -> None:
        """The batch thread: run whatever is queued, one batch at a time, until closed."""
        while True:
            with self._lock:
                self._arrived.wait_for(lambda: self._queue or self._closed)
                if not self._queue:
                    return  # closed, and every request answered
                wanted, linger_s = min(self._last_size, self.max_batch), min(self.max_linger_s, self._last_forward_s)
                if linger_s > 0 and len(self._queue) < wanted:
                    self._arrived.wait_for(lambda: len(self._queue) >= wanted or self._closed, linger_s)
                model = self._queue[0].recommender
                batch: list[_Ticket] = []
                while self._queue and len(batch) < self.max_batch and self._queue[0].recommender is model:
                    batch.append(self._queue.popleft())
                self._running = True
                self._last_size = len(batch)
                self.batches += 1
            try:
                self._last_forward_s = self._run(model, batch)
            except BaseException as error:  # noqa: BLE001  (a fault of the batch itself: every member's)
                for ticket in batch:
                    if not ticket.settled:
                        ticket.settle(error)
            finally:
                for ticket in batch:  # interrupted: nobody may wait forever
                    if not ticket.settled:
                        ticket.settle(RuntimeError("the batch was interrupted"))
                with self._lock:
                    self._running = False
                    self._finished += 1
                    self._plain_in_flight -= sum(ticket.plain for ticket in batch)
                    self._quieter.notify_all()

    def _run(self, model: Recommender, batch: list[_Ticket]) -> float:
        """Encode, forward and answer one batch, settling every ticket; returns the forward pass's seconds."""
        started = time.perf_counter()
        prepared = []
        for ticket in batch:  # each profile's own rules: a bad one fails alone
            if ticket.encoded is None:
                try:
                    prepared.append((ticket, model.prepare(ticket.request)))
                except Exception as error:  # noqa: BLE001
                    ticket.settle(error)
        if prepared:
            try:
                encodings = model.encode_prepared([profile for _, profile in prepared])
            except Exception as error:  # noqa: BLE001  (a failure of the shared product is every member's)
                for ticket, _ in prepared:
                    ticket.settle(error)
            else:
                for (ticket, _), encoded in zip(prepared, encodings, strict=True):
                    ticket.encoded = encoded
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
                if ticket.request is None or (ticket.request.explain and not self.explain_in_batch):
                    ticket.settle(rows)
                    continue
                try:
                    ticket.settle(model.respond(ticket.request, ticket.encoded, *rows))
                except Exception as error:  # noqa: BLE001  (its own failure only)
                    ticket.settle(error)
        if self.observer is not None:
            self.observer.batch(len(batch), forward_s, [started - t.queued_at for t in batch])
        return forward_s


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
