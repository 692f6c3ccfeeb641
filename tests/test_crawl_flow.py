"""The crawl flow under a real temporary Prefect server."""

from __future__ import annotations

import asyncio

import pytest

from crawl_helpers import CLIENT_ID, public_users, stored_rows, truth_rows
from sprout.malsim.synthetic_population import synthetic_population
from sprout.malsim.server import SimulatorServer
from sprout.store import Store


@pytest.fixture
def sprout_env(tmp_path, monkeypatch):
    with SimulatorServer(synthetic_population(25, seed=4, n_anime=800)) as simulator:
        monkeypatch.setenv("SPROUT_HOME", str(tmp_path))
        monkeypatch.setenv("SPROUT_MAL_API_URL", simulator.api_url)
        monkeypatch.setenv("SPROUT_MAL_WEB_URL", simulator.url)
        monkeypatch.setenv("SPROUT_MAL_CLIENT_ID", CLIENT_ID)
        monkeypatch.setenv("SPROUT_MAL_REQUESTS_PER_SECOND", "400")
        yield simulator, tmp_path


def test_crawl_flow_stores_publishes_and_emits(prefect_server, sprout_env):
    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    from flows.crawl import CRAWL_COMPLETED, CRAWL_LIMIT, CrawlParameters, crawl_flow
    from flows.limits import DUCKDB_WRITER_LIMIT, MAL_RATE_LIMIT

    simulator, home = sprout_env
    params = CrawlParameters(usernames=simulator.population.usernames(), discover_online=False, refresh_anime=False)
    figures = asyncio.run(crawl_flow(params))
    public = public_users(simulator)
    assert figures["users_ok"] == len(public) and figures["entries_added"] > 0
    with Store.open(home / "sprout.duckdb", read_only=True) as store:
        for username in public:
            assert stored_rows(store, username) == truth_rows(simulator, username)

    async def read_back():
        async with get_client() as client:
            artifacts = await client.read_artifacts(limit=20)
            for _ in range(100):  # events reach the server asynchronously, behind the run's own,
                # and earlier tests' events share its name
                events = await client.read_events(EventFilter(event=EventNameFilter(name=[CRAWL_COMPLETED])), limit=50)
                if any(e.payload.get("users_ok") == len(public) for e in events.events):
                    break
                await asyncio.sleep(0.1)
            limits = {
                name: await client.read_global_concurrency_limit_by_name(name)
                for name in (MAL_RATE_LIMIT, DUCKDB_WRITER_LIMIT, CRAWL_LIMIT)
            }
            return artifacts, events, limits

    artifacts, events, limits = asyncio.run(read_back())
    table = next(a for a in artifacts if a.key == "crawl-figures")
    assert "users_ok" in str(table.data)
    assert any(e.payload.get("users_ok") == len(public) for e in events.events)
    assert limits[DUCKDB_WRITER_LIMIT].limit == 1
    assert limits[MAL_RATE_LIMIT].slot_decay_per_second == 400
    # The writer slot (taken for each transaction) and the crawl slot (the whole run) were handed back.
    assert limits[DUCKDB_WRITER_LIMIT].active_slots == 0
    assert limits[CRAWL_LIMIT].limit == 1 and limits[CRAWL_LIMIT].active_slots == 0
