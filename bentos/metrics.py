"""The service's own Prometheus metrics, served in ``/metrics`` beside BentoML's request counters.

BentoML runs prometheus_client in multiprocess mode (each worker writes its samples to a shared
folder and ``/metrics`` sums them), so this module must be imported in a worker, after BentoML has
set that folder up: `ServiceMetrics` imports it when the service starts.

- ``sprout_batch_size``: requests sharing one batch (histogram);
- ``sprout_queue_wait_seconds``: how long a request waited for its batch to start;
- ``sprout_forward_seconds``: a batch's forward pass;
- ``sprout_requests_shed_total{lane}``: requests answered 503 because a bound was reached
  (``gate``: the worker's POST bound, ``plain`` / ``explanation``: the batcher's queues);
- ``sprout_explanations_in_flight``: explanations being computed or waiting for the lane;
- ``sprout_username_cache_total{result}``: username lookups answered from the cache (``hit``) or not;
- ``sprout_model_info{version, dataset}``: 1 for the model answering, 0 for one swapped out.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BATCH_SIZES = (1, 2, 4, 8, 16, 32)
WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
FORWARD_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class ServiceMetrics:
    """The metrics, fed by the batcher (as its `BatchObserver`), the admission gate (``shed("gate")``),
    the username cache and model loads."""

    def __init__(self) -> None:
        self.batch_size = Histogram("sprout_batch_size", "Requests sharing one batch.", buckets=BATCH_SIZES)
        self.queue_wait = Histogram(
            "sprout_queue_wait_seconds", "Time a request waited for its batch to start.", buckets=WAIT_BUCKETS
        )
        self.forward = Histogram("sprout_forward_seconds", "Time of a batch's forward pass.", buckets=FORWARD_BUCKETS)
        self.shed_requests = Counter(
            "sprout_requests_shed", "Requests answered 503 because a queue bound was reached.", ["lane"]
        )
        self.explanations_in_flight = Gauge(
            "sprout_explanations_in_flight", "Explanations being computed or waiting for the lane.",
            multiprocess_mode="livesum",
        )
        self.username_cache = Counter(
            "sprout_username_cache", "Username lookups answered from the cache (hit) or not (miss).", ["result"]
        )
        self.model_info = Gauge(
            "sprout_model_info", "1 for the model answering requests, 0 for one swapped out.", ["version", "dataset"],
            multiprocess_mode="liveall",
        )
        self._model: tuple[str, str] | None = None

    # --- BatchObserver -------------------------------------------------------------------------

    def batch(self, size: int, forward_s: float, waits_s: list[float]) -> None:
        self.batch_size.observe(size)
        self.forward.observe(forward_s)
        for wait in waits_s:
            self.queue_wait.observe(wait)

    def shed(self, lane: str) -> None:
        self.shed_requests.labels(lane=lane).inc()

    def explanations(self, count: int) -> None:
        self.explanations_in_flight.set(count)

    # --- the rest ------------------------------------------------------------------------------

    def username_lookup(self, hit: bool) -> None:
        self.username_cache.labels(result="hit" if hit else "miss").inc()

    def serving(self, version: str, dataset: str) -> None:
        """The model answering from now on."""
        if self._model is not None and self._model != (version, dataset):
            self.model_info.labels(*self._model).set(0)
        self._model = (version, dataset)
        self.model_info.labels(version, dataset).set(1)
