"""Hot swap over real HTTP: promoting (and rolling back) in the registry changes the served model
while clients keep calling, with no failed request; a pinned server never changes."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest

from bentos.local_server import LocalServer
from service_helpers import SERVER_ENV, build_model_store, profile_of, served_version


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_model_store(tmp_path_factory.mktemp("swap"), n_models=2, champion=0)


@pytest.fixture(scope="module")
def servers(store, tmp_path_factory):
    """A server following the champion (polling every 0.3 s) and one pinned to the first version,
    started side by side."""
    logs = tmp_path_factory.mktemp("logs")
    poll = {**SERVER_ENV, "SPROUT_SERVE_POLL_S": "0.3"}
    following = LocalServer(store.store_dir, logs / "following.log", extra_env=poll)
    pinned = LocalServer(store.store_dir, logs / "pinned.log", version=store.versions[0], extra_env=poll)
    try:
        for server in (following, pinned):
            server.start(wait=False)
        for server in (following, pinned):
            server.wait_ready()
        yield following, pinned
    finally:
        following.stop()
        pinned.stop()


class Hammer:
    """Clients calling /recommend until stopped, recording each client's answers' model versions."""

    def __init__(self, url: str, corpus, clients: int = 4):
        self.url, self.corpus = url, corpus
        self.versions: dict[int, list[str]] = {i: [] for i in range(clients)}
        self.statuses: Counter = Counter()
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(i,)) for i in range(clients)]

    def __enter__(self) -> Hammer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _loop(self, seed: int) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            n = 0
            while not self._stop.is_set():
                body = {"profile": profile_of(self.corpus, 10 + (seed + n) % 20, start=seed), "top_k": 10}
                n += 1
                try:
                    response = http.post("/recommend", json=body)
                except httpx.HTTPError as error:
                    with self._lock:
                        self.failures.append(repr(error))
                    continue
                with self._lock:
                    self.statuses[response.status_code] += 1
                    if response.status_code == 200:
                        self.versions[seed].append(response.json()["model"]["version"])


def wait_for_version(url: str, version: str, timeout_s: float = 60) -> float:
    started = time.monotonic()
    while served_version(url) != version:
        assert time.monotonic() - started < timeout_s, f"{url} still serves {served_version(url)}, not {version}"
        time.sleep(0.1)
    return time.monotonic() - started


def test_promotion_and_rollback_swap_without_errors(servers, store):
    following, pinned = servers
    first, second = store.versions
    registry = store.registry()
    # A version folder whose model.yaml cannot be read (a registration being copied, say) is
    # skipped by every poll instead of stopping the follower.
    broken = store.store_dir / "sprout-recommender" / "20000101-000000-broken"
    broken.mkdir()
    (broken / "model.yaml").write_text("labels: [unclosed\n")
    with Hammer(following.url, store.corpus) as hammer:
        time.sleep(1.5)
        registry.promote(second, "better model")
        wait_for_version(following.url, second)
        time.sleep(1.5)
        registry.rollback("regression found")
        wait_for_version(following.url, first)
        time.sleep(1.0)
    assert hammer.failures == []
    assert set(hammer.statuses) == {200}, hammer.statuses
    # Each client (whose requests follow one another) saw first → second → first, each switch
    # once: no answer came from a stale model after a swap, and none was dropped during one.
    for versions in hammer.versions.values():
        switches = [v for i, v in enumerate(versions) if i == 0 or v != versions[i - 1]]
        assert switches == [first, second, first], switches[:10]
    assert hammer.statuses[200] > 50
    log = following.log()
    assert f"now serving {second}" in log
    assert f"champion changed back to {first}, still in memory" in log  # the rollback loaded nothing


def test_pinned_server_never_swaps(servers, store):
    _, pinned = servers
    first, second = store.versions
    store.registry().promote(second, "promoted again")
    time.sleep(1.5)  # five polling periods
    assert served_version(pinned.url) == first
    answer = httpx.post(f"{pinned.url}/recommend", json={"profile": profile_of(store.corpus, 5)}, timeout=60).json()
    assert answer["model"]["version"] == first
    assert "champion changed" not in pinned.log()
