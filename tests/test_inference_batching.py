"""The micro-batcher under concurrent callers: grouping, per-request answers and errors, hot swap."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from inference_helpers import build_artifacts, same_answers

from sprout.inference.batching import RequestBatcher
from sprout.inference.engine import Recommender
from sprout.inference.errors import InvalidProfile, Overloaded
from sprout.inference.requests import ExplainRequest, PredictRequest, ProfileEntry, RecommendRequest


@pytest.fixture(scope="module")
def recommenders(tmp_path_factory) -> tuple[Recommender, Recommender]:
    first, second = build_artifacts(tmp_path_factory.mktemp("batching"), seeds=(0, 1))
    return Recommender.load(first, warmup=False), Recommender.load(second, warmup=False)


def request(k: int) -> RecommendRequest:
    profile = [ProfileEntry(anime_id=101 + (k * 5 + i) % 39, score=(k + i) % 11) for i in range(3 + k % 9)]
    return RecommendRequest(profile=profile, top_k=5 + k % 4, niche_boost=(k % 3) / 4, explain=k % 7 == 0)


def test_a_lone_request_runs_at_once(recommenders):
    model, _ = recommenders
    batcher = RequestBatcher(model)
    assert batcher.submit(request(1)) == model.recommend(request(1))
    assert batcher.batches == 1


def test_concurrent_callers_get_their_own_answers(recommenders):
    model, _ = recommenders
    batcher = RequestBatcher(model, max_batch=4)
    requests = [request(k) for k in range(24)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(batcher.submit, requests))
    assert same_answers(answers, [model.recommend(r) for r in requests])
    assert batcher.batches >= len(requests) / 4


class HeldFirstBatch(Recommender):
    """The real engine, whose first batched forward pass waits until the test lets it run."""

    def __init__(self, model: Recommender):
        self.__dict__.update(model.__dict__)
        self.first_batch_started = threading.Event()
        self.first_batch_may_run = threading.Event()

    def outputs(self, encoded):
        if not self.first_batch_started.is_set():
            self.first_batch_started.set()
            self.first_batch_may_run.wait(timeout=30)
        return super().outputs(encoded)


def test_requests_arriving_during_a_batch_form_the_next_one(recommenders):
    model, _ = recommenders
    held = HeldFirstBatch(model)
    batcher = RequestBatcher(held, max_batch=16)
    requests = [request(k) for k in range(1, 10) if k % 7]  # none explained: every one joins a batch
    assert len(requests) == 8 and not any(r.explain for r in requests)
    with ThreadPoolExecutor(max_workers=8) as pool:
        leader = pool.submit(batcher.submit, requests[0])
        assert held.first_batch_started.wait(timeout=30)
        followers = [pool.submit(batcher.submit, r) for r in requests[1:]]
        while batcher.waiting < len(followers):  # every follower is waiting behind the first batch
            time.sleep(0.001)
        held.first_batch_may_run.set()
        answers = [leader.result(), *(f.result() for f in followers)]
    assert batcher.batches == 2  # one lone request, then the seven that queued behind it
    assert same_answers(answers, [model.recommend(r) for r in requests])


def test_a_bad_profile_fails_alone(recommenders):
    model, _ = recommenders
    batcher = RequestBatcher(model)
    mixed = [request(2), RecommendRequest(profile=[]), request(3), RecommendRequest(profile=[ProfileEntry(anime_id=5)])]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(batcher.submit, r) for r in mixed]
        assert futures[0].result() == model.recommend(mixed[0])
        assert futures[2].result() == model.recommend(mixed[2])
        with pytest.raises(InvalidProfile, match="empty"):
            futures[1].result()
        with pytest.raises(InvalidProfile, match="no usable entries"):
            futures[3].result()
    assert batcher.submit(request(4)) == model.recommend(request(4))  # still serving afterwards


def test_swap_serves_the_new_model_to_later_requests(recommenders):
    old, new = recommenders
    assert old.version != new.version
    batcher = RequestBatcher(old)
    assert batcher.submit(request(5)).model.version == old.version
    batcher.swap(new)
    assert batcher.recommender is new
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(batcher.submit, [request(k) for k in range(8)]))
    assert all(a.model.version == new.version for a in answers)
    assert same_answers(answers, [new.recommend(request(k)) for k in range(8)])
    served = {"model": old}
    follower = RequestBatcher(lambda: served["model"])
    assert follower.submit(request(6)).model.version == old.version
    served["model"] = new  # a service swapping its attribute
    assert follower.submit(request(6)) == new.recommend(request(6))


def test_a_batch_never_mixes_models_across_a_swap(recommenders):
    old, new = recommenders
    held = HeldFirstBatch(old)
    batcher = RequestBatcher(held, max_batch=16)
    requests = [request(k) for k in (1, 2, 3, 4, 5)]
    with ThreadPoolExecutor(max_workers=5) as pool:
        leader = pool.submit(batcher.submit, requests[0])
        assert held.first_batch_started.wait(timeout=30)
        before = pool.submit(batcher.submit, requests[1])  # encoded by the old model
        while batcher.waiting < 1:
            time.sleep(0.001)
        batcher.swap(new)
        after = [pool.submit(batcher.submit, r) for r in requests[2:]]  # encoded by the new model
        while batcher.waiting < 4:
            time.sleep(0.001)
        held.first_batch_may_run.set()
        answers = [leader.result(), before.result(), *(f.result() for f in after)]
    assert [a.model.version for a in answers] == [old.version] * 2 + [new.version] * 3
    assert same_answers(answers, [old.recommend(r) for r in requests[:2]] + [new.recommend(r) for r in requests[2:]])
    assert batcher.batches == 3  # the lone leader, the old model's follower, the new model's three


class Recorder:
    """A `BatchObserver` that keeps what it hears."""

    def __init__(self):
        self.sizes: list[int] = []
        self.waits: list[float] = []
        self.forwards: list[float] = []
        self.shed_lanes: list[str] = []
        self.explanation_counts: list[int] = []

    def batch(self, size, forward_s, waits_s):
        self.sizes.append(size)
        self.forwards.append(forward_s)
        self.waits.extend(waits_s)

    def shed(self, lane):
        self.shed_lanes.append(lane)

    def explanations(self, count):
        self.explanation_counts.append(count)


def test_past_the_queue_bound_a_request_is_refused_at_once(recommenders):
    model, _ = recommenders
    held = HeldFirstBatch(model)
    recorder = Recorder()
    batcher = RequestBatcher(held, max_waiting=2, observer=recorder)
    plain = [request(k) for k in (1, 2, 3, 4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        leader = pool.submit(batcher.submit, plain[0])
        assert held.first_batch_started.wait(timeout=30)
        queued = [pool.submit(batcher.submit, r) for r in plain[1:3]]
        while batcher.waiting < 2:
            time.sleep(0.001)
        with pytest.raises(Overloaded) as refused:
            batcher.submit(plain[3])  # two already wait behind the running batch
        assert refused.value.retry_after_s >= 1 and "busy" in str(refused.value)
        held.first_batch_may_run.set()
        answers = [leader.result(), *(f.result() for f in queued)]
    assert same_answers(answers, [model.recommend(r) for r in plain[:3]])
    assert batcher.shed == 1 and recorder.shed_lanes == ["plain"]
    assert batcher.submit(plain[3]) == model.recommend(plain[3])  # served once the queue drained
    assert sum(recorder.sizes) == 4 and recorder.sizes[:2] == [1, 2]  # the lone leader, then the two queued
    assert len(recorder.waits) == 4 and all(w >= 0 for w in recorder.waits)
    assert max(recorder.waits) > 0  # the queued two waited for the held batch
    assert all(f > 0 for f in recorder.forwards)


class HeldExplanation(Recommender):
    """The real engine, whose first explanation waits until the test lets it finish."""

    def __init__(self, model: Recommender):
        self.__dict__.update(model.__dict__)
        self.started = threading.Event()
        self.may_finish = threading.Event()

    def explain(self, request, pace=None):
        if not self.started.is_set():
            self.started.set()
            self.may_finish.wait(timeout=30)
        return super().explain(request, pace)


def test_explanations_have_their_own_bound(recommenders):
    model, _ = recommenders
    held = HeldExplanation(model)
    recorder = Recorder()
    batcher = RequestBatcher(held, max_waiting=0, max_waiting_explanations=1, observer=recorder)
    asked = ExplainRequest(profile=request(3).profile, top_k=5)
    with ThreadPoolExecutor(max_workers=3) as pool:
        first = pool.submit(batcher.explain, asked)
        assert held.started.wait(timeout=30)
        second = pool.submit(batcher.explain, asked)  # waits for the lane: the one allowed
        while batcher.explanations < 2:
            time.sleep(0.001)
        with pytest.raises(Overloaded):
            batcher.explain(asked)
        with pytest.raises(Overloaded):
            batcher.predict(PredictRequest(profile=asked.profile, shows=[101]))  # the same lane
        assert batcher.submit(request(1)) == model.recommend(request(1))  # plain requests are not in that lane
        held.may_finish.set()
        assert first.result() == second.result() == model.explain(asked)
    assert recorder.shed_lanes == ["explanation", "explanation"]
    assert batcher.explanations == 0 and recorder.explanation_counts[-1] == 0 and max(recorder.explanation_counts) == 2


def test_coroutines_are_answered_by_the_batch_thread(recommenders):
    """Coroutines on one event loop share batches and get their own answers and errors; a caller
    that gives up (cancelled) costs nobody else theirs."""
    import asyncio

    model, _ = recommenders
    held = HeldFirstBatch(model)
    batcher = RequestBatcher(held, max_batch=16)
    requests = [request(k) for k in range(1, 14)]  # two of them explained: answered in worker threads

    async def ask_all():
        leader = asyncio.create_task(batcher.submit_async(requests[0]))
        while not held.first_batch_started.is_set():
            await asyncio.sleep(0.001)
        followers = [asyncio.create_task(batcher.submit_async(r)) for r in requests[1:]]
        bad = asyncio.create_task(batcher.submit_async(RecommendRequest(profile=[ProfileEntry(anime_id=5)])))
        abandoned = asyncio.create_task(batcher.submit_async(requests[2]))
        await asyncio.sleep(0.05)
        abandoned.cancel()
        held.first_batch_may_run.set()
        answers = await asyncio.gather(leader, *followers)
        with pytest.raises(InvalidProfile, match="no usable entries"):
            await bad
        return answers

    answers = asyncio.run(ask_all())
    assert same_answers(answers, [model.recommend(r) for r in requests])
    assert batcher.batches <= 4  # the lone leader, then the plain ones that queued behind it, and two explained rows
    assert batcher.submit(request(4)) == model.recommend(request(4))  # still serving afterwards
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(request(4))


class SlowPass(Recommender):
    """The real engine, whose batched forward pass takes at least ``pass_s``."""

    def __init__(self, model: Recommender, pass_s: float):
        self.__dict__.update(model.__dict__)
        self.pass_s = pass_s

    def outputs(self, encoded):
        time.sleep(self.pass_s)
        return super().outputs(encoded)


def staggered(batcher: RequestBatcher, requests: list[RecommendRequest], gap_s: float) -> list:
    """Submit ``requests`` from threads of their own, ``gap_s`` apart; their answers."""
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        futures = []
        for r in requests:
            futures.append(pool.submit(batcher.submit, r))
            time.sleep(gap_s)
        return [f.result() for f in futures]


@pytest.mark.parametrize("max_linger_s", [0.0, 5.0])
def test_a_batch_waits_for_the_clients_answered_together_but_a_lone_client_never_waits(recommenders, max_linger_s):
    """After a batch of three, the next three requests arrive 30 ms apart: with lingering (bounded
    by the last pass's 0.5 s, well under the 5 s cap) they share one pass; without it the first
    runs alone. A lone client (last batch of one) starts at once."""
    model, _ = recommenders
    recorder = Recorder()
    batcher = RequestBatcher(SlowPass(model, 0.5), max_batch=16, max_linger_s=max_linger_s, observer=recorder)
    first = [request(k) for k in (1, 2, 3, 4)]
    staggered(batcher, first, 0.02)  # a lone leader, then the three that queued behind its pass
    assert recorder.sizes == [1, 3]
    second = [request(k) for k in (5, 6, 8)]
    answers = staggered(batcher, second, 0.03)
    assert same_answers(answers, [model.recommend(r) for r in second])
    assert recorder.sizes[2:] == ([3] if max_linger_s else [1, 2])
    if max_linger_s:
        assert max(recorder.waits[-3:]) < 0.5 + 0.4  # nobody waited past the bound
    for k in (9, 10):  # then one client: the first may wait one pass for the others, the next never waits
        assert batcher.submit(request(k)) == model.recommend(request(k))
    assert recorder.sizes[-2:] == [1, 1]
    assert recorder.waits[-2] < 0.5 + 0.4 and recorder.waits[-1] < 0.2
