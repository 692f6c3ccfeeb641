"""The crawl over real HTTP against the simulator, into real DuckDB files."""

from __future__ import annotations

import httpx
import pytest

from crawl_helpers import crawl, later_clock, public_users, stored_rows, truth_rows
from sprout.crawl.job import CrawlRequest
from sprout.crawl.policy import CrawlPolicy
from sprout.malsim.faults import FaultConfig
from sprout.malsim.synthetic_population import synthetic_population
from sprout.malsim.realdata import from_anime5k
from sprout.malsim.server import SimulatorServer
from sprout.store import Store

# Incremental crawls only: no periodic full refresh gets in the way of counting requests.
NO_FULL_REFRESH = CrawlPolicy(full_refresh_every="P3650D")


@pytest.fixture
def simulator():
    with SimulatorServer(synthetic_population(60, seed=11, private_fraction=0.05)) as server:
        yield server


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "sprout.duckdb") as opened:
        yield opened


def everyone(simulator, **options) -> CrawlRequest:
    return CrawlRequest(only_usernames=simulator.population.usernames(), **options)


def assert_store_equals_truth(store, simulator) -> None:
    for username in public_users(simulator):
        assert stored_rows(store, username) == truth_rows(simulator, username), username


def test_first_crawl_stores_exactly_the_truth(store, simulator):
    stats = crawl(store, simulator, everyone(simulator))
    public = public_users(simulator)
    private = set(simulator.population.usernames()) - set(public)
    assert private, "the fixture population should have private users"
    assert_store_equals_truth(store, simulator)
    assert stats.users_ok == len(public) and stats.users_private == len(private)
    assert stats.entries_added == sum(len(truth_rows(simulator, u)) for u in public)
    assert stats.full_listings == len(public)
    states = dict(store.connection.execute("SELECT username, state FROM crawl_state").fetchall())
    assert {states[u] for u in private} == {"private"}
    # Metadata for every show the lists reference, relations included.
    missing = store.connection.execute(
        "SELECT count(DISTINCT anime_id) FROM list_entries WHERE anime_id NOT IN (SELECT anime_id FROM anime)"
    ).fetchone()[0]
    assert missing == 0 and stats.anime_refreshed > 0
    assert store.counts()["anime_relations"] > 0
    run = store.last_crawl_run()
    assert run.status == "completed" and run.stats["users_ok"] == len(public)


def test_anime_metadata_stores_each_shows_picture(store, simulator):
    names = public_users(simulator)[:3]
    stats = crawl(store, simulator, CrawlRequest(only_usernames=names))
    rows = store.connection.execute("SELECT anime_id, main_picture FROM anime ORDER BY anime_id").fetchall()
    assert rows and len(rows) == stats.anime_refreshed
    # The large picture, as MAL's main_picture names it: the simulator serves it on loopback.
    assert all(picture == f"{simulator.url}/images/anime/{anime_id}l.svg" for anime_id, picture in rows)
    cover = httpx.get(rows[0][1], timeout=10)
    assert cover.status_code == 200 and cover.headers["content-type"].startswith("image/svg+xml")


def test_incremental_crawl_fetches_only_what_changed(store, simulator):
    crawl(store, simulator, everyone(simulator, policy=NO_FULL_REFRESH, refresh_anime=False))
    public = public_users(simulator)
    before = {u: stored_rows(store, u) for u in public}
    changes = simulator.population.advance(days=20, seed=5)
    assert changes["added"] and changes["changed"] and changes["deleted"]
    after = {u: truth_rows(simulator, u) for u in public}
    before_ids = {u: {r[0] for r in rows} for u, rows in before.items()}
    after_ids = {u: {r[0] for r in rows} for u, rows in after.items()}
    expected_added = sum(len(after_ids[u] - before_ids[u]) for u in public)
    expected_deleted = sum(len(before_ids[u] - after_ids[u]) for u in public)
    expected_changed = sum(len({r[0] for r in after[u] - before[u]} & before_ids[u]) for u in public)

    requests_before = simulator.stats()
    stats = crawl(store, simulator, everyone(simulator, policy=NO_FULL_REFRESH, refresh_anime=False))
    assert stats.incremental_listings == len(public)
    assert stats.requests <= 1.05 * len(simulator.population.usernames())
    assert (stats.entries_added, stats.entries_changed, stats.entries_deleted) == (
        expected_added, expected_changed, 0
    )
    for u in public:  # everything but deletions is already there
        assert stored_rows(store, u) - after[u] == {r for r in before[u] if r[0] not in after_ids[u]}
    assert simulator.stats() != requests_before

    stats = crawl(store, simulator, everyone(simulator, force_full=True, refresh_anime=False))
    assert stats.entries_deleted == expected_deleted and stats.entries_added == 0
    assert_store_equals_truth(store, simulator)


def test_unchanged_population_recrawl_is_one_request_per_user(store, simulator):
    crawl(store, simulator, everyone(simulator, policy=NO_FULL_REFRESH, refresh_anime=False))
    stats = crawl(store, simulator, everyone(simulator, policy=NO_FULL_REFRESH, refresh_anime=False))
    users = len(simulator.population.usernames())
    assert stats.requests == users
    assert stats.entries_added == stats.entries_changed == stats.entries_deleted == 0
    assert stats.profiles_changed == 0


def test_scheduled_crawl_picks_only_due_users(store, simulator):
    names = public_users(simulator)
    store.add_users(names[:10], "seed_list", later_clock(0)())
    stats = crawl(store, simulator, CrawlRequest(max_users=4, refresh_anime=False))
    assert stats.users_due == 4
    stats = crawl(store, simulator, CrawlRequest(max_users=100, refresh_anime=False))
    assert stats.users_due == 6  # the first four are not due again for a day
    stats = crawl(store, simulator, CrawlRequest(max_users=100, refresh_anime=False), clock=later_clock(2))
    assert stats.users_due == 10


def test_faults_are_retried_and_change_nothing(store, simulator):
    simulator.set_faults(
        FaultConfig(rate_429=0.15, burst_429=2, retry_after_s=0, rate_5xx=0.1, rate_truncated=0.1,
                    rate_slow=0.05, slow_s=0.05, seed=3)
    )
    stats = crawl(store, simulator, everyone(simulator, refresh_anime=False), max_attempts=12)
    assert stats.status_429 > 0 and stats.status_5xx > 0 and stats.retries > 0
    assert stats.users_failed == 0
    assert_store_equals_truth(store, simulator)


def test_missing_and_private_users_keep_their_stored_lists(store, simulator):
    crawl(store, simulator, everyone(simulator, refresh_anime=False))
    gone, hidden = public_users(simulator)[:2]
    kept_gone, kept_hidden = stored_rows(store, gone), stored_rows(store, hidden)
    simulator.population.delete_user([gone])
    simulator.population.set_private([hidden])
    stats = crawl(store, simulator, CrawlRequest(only_usernames=[gone, hidden], refresh_anime=False))
    assert stats.users_not_found == 1 and stats.users_private == 1
    states = dict(store.connection.execute("SELECT username, state || ':' || http_status FROM crawl_state").fetchall())
    assert states[gone] == "not_found:404" and states[hidden] == "private:403"
    assert stored_rows(store, gone) == kept_gone and stored_rows(store, hidden) == kept_hidden


def test_a_run_of_403s_across_users_is_throttling_not_privacy(store, simulator):
    names = public_users(simulator)[:6]
    simulator.population.set_private(names)
    stats = crawl(store, simulator, CrawlRequest(only_usernames=names, refresh_anime=False), throttle_403_streak=3)
    assert stats.users_throttled == 6 and stats.users_private == 0
    rows = store.connection.execute(
        "SELECT DISTINCT state, http_status FROM crawl_state WHERE username IN (SELECT unnest(?))", [names]
    ).fetchall()
    assert rows == [("pending", 403)]


def test_malformed_responses_leave_stored_data_intact(store, simulator):
    crawl(store, simulator, everyone(simulator, refresh_anime=False))
    public = public_users(simulator)
    kept = {u: stored_rows(store, u) for u in public}
    simulator.set_faults(FaultConfig(rate_truncated=1.0))
    stats = crawl(store, simulator, everyone(simulator, refresh_anime=False), max_attempts=2)
    assert stats.users_failed == len(public) and stats.users_ok == 0
    assert all(stored_rows(store, u) == kept[u] for u in public)
    errors = store.connection.execute("SELECT count(*) FROM crawl_state WHERE state = 'error' AND attempts = 1").fetchone()
    assert errors[0] == len(public)
    simulator.set_faults()
    stats = crawl(store, simulator, everyone(simulator, refresh_anime=False))
    assert stats.users_failed == 0
    assert store.connection.execute("SELECT count(*) FROM crawl_state WHERE attempts > 0").fetchone()[0] == 0


def test_real_data_backend_crawls_like_the_import(tmp_path, anime5k_dir):
    from sprout.anime5k import username_for
    from sprout.store.importer import import_anime5k

    population = from_anime5k(anime5k_dir)
    names = [username_for(i) for i in range(1, 31)]
    with SimulatorServer(population) as simulator, Store.open(tmp_path / "crawled.duckdb") as crawled:
        crawl(crawled, simulator, CrawlRequest(only_usernames=names, refresh_anime=False))
        with Store.open(tmp_path / "imported.duckdb") as imported:
            import_anime5k(imported, anime5k_dir, now=later_clock(0)())
            for name in names:
                want = {(e.anime_id, e.status, e.score) for e in imported.user_entries(name)}
                got = {(e.anime_id, e.status, e.score) for e in crawled.user_entries(name)}
                assert got == want and want, name


def test_recently_online_page_discovers_users_who_are_then_crawled(store, simulator):
    import asyncio

    from crawl_helpers import fast_client
    from sprout.crawl.job import run_crawl
    from sprout.mal.discovery import RecentlyOnlineSource

    async def run():
        async with fast_client(simulator) as client:
            request = CrawlRequest(sources=[RecentlyOnlineSource(client)], refresh_anime=False)
            return await run_crawl(store, client, request)

    stats = asyncio.run(run())
    known = set(simulator.population.usernames())
    users = [row[0] for row in store.connection.execute("SELECT username FROM users WHERE source = 'recently_online'").fetchall()]
    assert stats.users_discovered == len(users) > 0 and set(users) <= known
    assert stats.users_due == len(users)
    assert stats.users_ok + stats.users_private == len(users)
