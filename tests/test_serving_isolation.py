"""One slow request does not stall the others: an explained request's leave-one-out pass runs on
the explanation lane, outside the shared batch, and gives way to batches. Real (tiny) models; the
slow explanation is injected by holding its leave-one-out pass until the test releases it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np
import pytest
from inference_helpers import FIRST_ID, N_SHOWS, build_artifacts, same_answers

from sprout.inference.batching import RequestBatcher
from sprout.inference.engine import Recommender
from sprout.inference.requests import ExplainRequest, ProfileEntry, RecommendRequest

WAIT_S = 30  # generous: only reached when something is stuck


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Recommender:
    (folder,) = build_artifacts(tmp_path_factory.mktemp("isolation"))
    return Recommender.load(folder, warmup=False)


class SlowExplanations(Recommender):
    """The real engine, whose leave-one-out passes wait until the test lets them finish."""

    def __init__(self, model: Recommender):
        self.__dict__.update(model.__dict__)
        self.explaining = threading.Event()
        self.may_finish = threading.Event()

    def _explained(self, *args, **kwargs):
        self.explaining.set()
        if not self.may_finish.wait(timeout=WAIT_S):
            raise TimeoutError("the test never released the explanation")
        return super()._explained(*args, **kwargs)


class HeldBatches(Recommender):
    """The real engine, whose batched forward passes wait until the test lets them run."""

    def __init__(self, model: Recommender):
        self.__dict__.update(model.__dict__)
        self.batch_running = threading.Event()
        self.batches_may_run = threading.Event()
        self.explanation_started = threading.Event()

    def explain(self, request, pace=None):
        self.explanation_started.set()
        return super().explain(request, pace)

    def outputs(self, encoded):
        self.batch_running.set()
        self.batches_may_run.wait(timeout=WAIT_S)
        return super().outputs(encoded)


def long_profile() -> list[ProfileEntry]:
    """Most of the tiny corpus (a few shows stay unlisted, to be recommended)."""
    return [ProfileEntry(anime_id=i, score=1 + i % 10) for i in range(FIRST_ID, FIRST_ID + 30)]


def plain_request(k: int) -> RecommendRequest:
    profile = [ProfileEntry(anime_id=FIRST_ID + (3 * k + i) % N_SHOWS, score=7) for i in range(5)]
    return RecommendRequest(profile=profile)


def test_a_plain_request_completes_while_an_explained_one_is_in_flight(model):
    slow = SlowExplanations(model)
    batcher = RequestBatcher(slow)
    explained = RecommendRequest(profile=long_profile(), top_k=5, explain=True)
    plains = [plain_request(k) for k in range(3)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        explanation = pool.submit(batcher.submit, explained)
        assert slow.explaining.wait(timeout=WAIT_S)  # its leave-one-out pass has started
        answers = [pool.submit(batcher.submit, r) for r in plains]
        try:
            plain_answers = [a.result(timeout=WAIT_S) for a in answers]
        finally:
            slow.may_finish.set()
        finished_first = not explanation.done()
        explained_answer = explanation.result(timeout=WAIT_S)
    assert finished_first  # every plain answer came while the explanation was still running
    assert same_answers(plain_answers, [model.recommend(r) for r in plains])
    assert explained_answer == model.recommend(explained)  # the same answer, contributors included
    assert all(r.contributors is not None for r in explained_answer.recommendations)


def test_in_batch_explanations_stall_the_plain_requests(model):
    """The earlier behaviour, kept switchable for the benchmark, fails the same check."""
    slow = SlowExplanations(model)
    batcher = RequestBatcher(slow, explain_in_batch=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        explanation = pool.submit(batcher.submit, RecommendRequest(profile=long_profile(), explain=True))
        assert slow.explaining.wait(timeout=WAIT_S)
        plain = pool.submit(batcher.submit, plain_request(0))
        with pytest.raises(FutureTimeout):
            plain.result(timeout=0.5)  # queued behind the explanation's batch
        slow.may_finish.set()
        assert same_answers([plain.result(timeout=WAIT_S)], [model.recommend(plain_request(0))])
        assert explanation.result(timeout=WAIT_S).recommendations[0].contributors is not None


def test_explanations_wait_for_a_running_batch_then_proceed(model):
    held = HeldBatches(model)
    batcher = RequestBatcher(held)
    request = ExplainRequest(profile=long_profile(), top_k=5)
    with ThreadPoolExecutor(max_workers=2) as pool:
        plain = pool.submit(batcher.submit, plain_request(1))
        assert held.batch_running.wait(timeout=WAIT_S)
        explanation = pool.submit(batcher.explain, request)
        time.sleep(0.3)  # time enough to start, were it allowed to
        assert not held.explanation_started.is_set() and not explanation.done()
        held.batches_may_run.set()
        assert same_answers([plain.result(timeout=WAIT_S)], [model.recommend(plain_request(1))])
        assert explanation.result(timeout=WAIT_S) == model.explain(request)


def test_explanations_are_not_starved_by_a_stream_of_batches(model):
    """Each wait for the batches ends when one batch has finished, even if more keep coming."""
    batcher = RequestBatcher(model, max_batch=1)
    stop = threading.Event()

    def stream() -> int:
        answered = 0
        while not stop.is_set():
            batcher.submit(plain_request(answered))
            answered += 1
        return answered

    request = ExplainRequest(profile=long_profile(), top_k=5)
    with ThreadPoolExecutor(max_workers=4) as pool:
        streams = [pool.submit(stream) for _ in range(3)]  # three callers: a batch is nearly always running
        try:
            explained = pool.submit(batcher.explain, request).result(timeout=WAIT_S)
        finally:
            stop.set()
        answered = sum(s.result(timeout=WAIT_S) for s in streams)
    assert explained == model.explain(request)
    assert answered > 0


def test_a_paced_hold_out_runs_in_small_pieces_with_the_same_results(model, monkeypatch):
    network = model.network
    monkeypatch.setattr(network, "row_chunks", (32, 64, 128, 256))  # the default size's (compiled on first use)
    n = 300
    items = (np.arange(n) * 7 % len(model.corpus)).astype(np.int32)  # [n]
    values = np.linspace(-1.0, 1.0, n, dtype=np.float32)  # [n]
    pre, linear = network.encode(items[:20], values[:20])  # [H], [C]
    columns = np.arange(10)  # [K]
    paces = []
    log_presence = network.outputs(pre[None], linear[None])[0][0]  # [C]
    whole = network.held_out(pre, linear, log_presence, items, values, columns)
    paced = network.held_out(pre, linear, log_presence, items, values, columns, pace=lambda: paces.append(1))
    assert len(paces) == 5  # 256 + 44 rows: four 64-row pieces and the 64-row tail
    for a, b in zip(whole, paced, strict=True):  # other executables: equal up to rounding
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
