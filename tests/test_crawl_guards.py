"""The crawl against answers that lie: the simulator's list lies over real HTTP, into real DuckDB
files. No lie destroys a stored list, and none fails the run."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from crawl_helpers import crawl, fast_client, later_clock, stored_rows, truth_rows
from sprout.crawl.access import StoreFile
from sprout.crawl.job import CrawlRequest, run_crawl
from sprout.crawl.policy import CrawlPolicy
from sprout.malsim.faults import FaultConfig
from sprout.malsim.synthetic_population import synthetic_population
from sprout.malsim.server import SimulatorServer
from sprout.store import Store

GUARD_MIN = 50  # the default: lists of at least 50 entries are guarded against losing most of them


@pytest.fixture
def simulator():
    with SimulatorServer(synthetic_population(30, seed=3, n_anime=800, private_fraction=0)) as server:
        yield server


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "sprout.duckdb") as opened:
        yield opened


def everyone(simulator, **options) -> CrawlRequest:
    return CrawlRequest(only_usernames=simulator.population.usernames(), refresh_anime=False, **options)


def stored_everywhere(store, simulator) -> dict[str, set]:
    return {u: stored_rows(store, u) for u in simulator.population.usernames()}


def crawl_states(store) -> dict[str, tuple]:
    rows = store.connection.execute(
        "SELECT username, state, attempts, last_full_refresh_at, mass_deletion_held_at FROM crawl_state"
    ).fetchall()
    return {row[0]: row[1:] for row in rows}


def last_run_status(store) -> str:
    return store.last_crawl_run().status


def test_the_simulator_tells_each_list_lie_on_list_pages_only(simulator):
    import httpx

    from sprout.malsim.faults import BAD_NEXT_LINK, OVERSIZED_NUMBER

    name = next(u for u in simulator.population.usernames() if len(truth_rows(simulator, u)) >= 3)
    url = f"{simulator.api_url}/users/{name}/animelist"
    params = {"fields": "list_status", "limit": 2, "nsfw": "true"}

    headers = {"X-MAL-CLIENT-ID": "test"}

    def page(**fault) -> dict:
        simulator.set_faults(**fault)
        return httpx.get(url, params=params, headers=headers, timeout=10).json()

    assert all("list_status" in item for item in page()["data"]) and page()["paging"]["next"]
    assert all("list_status" not in item for item in page(rate_missing_list_status=1.0)["data"])
    assert page(rate_empty_list=1.0) == {"data": [], "paging": {}}
    first = page(rate_oversized_numbers=1.0)["data"][0]
    assert first["node"]["id"] == OVERSIZED_NUMBER == first["list_status"]["num_episodes_watched"]
    assert page(rate_bad_next_link=1.0)["paging"]["next"] == BAD_NEXT_LINK
    simulator.set_faults(rate_endless_paging=1.0)
    body = httpx.get(url, params={**params, "offset": 100_000}, headers=headers, timeout=10).json()
    assert body["data"] == [] and "offset=100002" in body["paging"]["next"]
    simulator.set_faults(rate_false_gzip=1.0)
    with httpx.Client(headers=headers, timeout=10) as client:
        with client.stream("GET", url, params=params) as lying:
            raw = b"".join(lying.iter_raw())
    assert lying.headers["content-encoding"] == "gzip" and raw.startswith(b"{")  # not gzip at all
    anime = httpx.get(f"{simulator.api_url}/anime/{simulator.population.catalogue.ids[0]}", headers=headers, timeout=10)
    assert "content-encoding" not in anime.headers and anime.json()["id"] > 0  # other routes tell no lies


def test_an_empty_full_listing_of_any_list_waits_for_a_later_listing_to_agree(store, simulator):
    crawl(store, simulator, everyone(simulator))
    before = stored_everywhere(store, simulator)
    readable = {u for u, rows in before.items() if rows}
    assert {u for u in readable if len(before[u]) < GUARD_MIN}, "the population has short lists too"
    assert min(len(before[u]) for u in readable) <= 5

    simulator.set_faults(rate_empty_list=1.0)
    stats = crawl(store, simulator, everyone(simulator, force_full=True), clock=later_clock(1))
    after = stored_everywhere(store, simulator)
    assert after == before  # no list emptied on one listing's word, whatever its length
    assert stats.users_deletions_held == len(readable)
    assert stats.entries_deletions_held == sum(len(before[u]) for u in readable)
    assert stats.entries_deleted == 0
    states = crawl_states(store)
    first_full = {u: states[u][2] for u in readable}
    assert all(states[u][3] is not None for u in readable)  # the held deletion is remembered
    assert last_run_status(store) == "completed"

    # The next crawl lists the held lists whole again, though no full refresh is due yet.
    stats = crawl(store, simulator, everyone(simulator), clock=later_clock(2))
    assert stats.full_listings == len(readable)
    after = stored_everywhere(store, simulator)
    assert all(after[u] == set() for u in readable)  # a later listing agreed: the list really is empty
    assert stats.entries_deleted == sum(len(before[u]) for u in readable) and stats.users_deletions_held == 0
    states = crawl_states(store)
    assert all(states[u][3] is None and states[u][2] > first_full[u] for u in readable)


def test_a_held_deletion_that_a_later_listing_contradicts_deletes_nothing(store, simulator):
    crawl(store, simulator, everyone(simulator))
    before = stored_everywhere(store, simulator)
    guarded = {u for u, rows in before.items() if rows}

    simulator.set_faults(rate_empty_list=1.0)
    crawl(store, simulator, everyone(simulator, force_full=True), clock=later_clock(1))
    simulator.set_faults()
    stats = crawl(store, simulator, everyone(simulator), clock=later_clock(2))
    assert stats.full_listings == len(guarded) and stats.entries_deleted == 0 and stats.users_deletions_held == 0
    for username in guarded:
        assert stored_rows(store, username) == before[username] == truth_rows(simulator, username)
        assert crawl_states(store)[username][3] is None  # settled: nothing pending any more


def test_items_without_list_status_are_a_per_user_error_and_keep_the_data(store, simulator):
    crawl(store, simulator, everyone(simulator))
    before = stored_everywhere(store, simulator)
    simulator.set_faults(rate_missing_list_status=1.0)
    stats = crawl(store, simulator, everyone(simulator, force_full=True), clock=later_clock(1), max_attempts=2)
    assert stats.users_failed == len(before) and stats.users_ok == 0 and stats.entries_deleted == 0
    assert stored_everywhere(store, simulator) == before
    assert {state[:2] for state in crawl_states(store).values()} == {("error", 1)}
    assert stats.retries == len(before)  # each list was asked twice before giving up
    assert last_run_status(store) == "completed"


def test_ids_and_counts_beyond_32_bits_are_skipped_and_counted(store, simulator):
    simulator.set_faults(rate_oversized_numbers=1.0)
    stats = crawl(store, simulator, everyone(simulator))
    users = simulator.population.usernames()
    assert stats.users_ok == len(users) and stats.users_failed == 0
    assert stats.entries_skipped == len(users)  # the first item of each (one-page) list
    assert last_run_status(store) == "completed"
    assert store.last_crawl_run().stats["entries_skipped"] == len(users)
    for username in users:
        assert len(stored_rows(store, username)) == len(truth_rows(simulator, username)) - 1
    # A full listing that skipped an item deletes nothing and records no full refresh.
    kept = stored_everywhere(store, simulator)
    stats = crawl(store, simulator, everyone(simulator, force_full=True), clock=later_clock(1))
    assert stats.entries_deleted == 0 and stored_everywhere(store, simulator) == kept
    assert all(state[2] is None for state in crawl_states(store).values())


@pytest.mark.parametrize(
    ("fault", "client_options", "error"),
    [
        ({"rate_bad_next_link": 1.0}, {}, "paging.next is not a valid URL"),
        ({"rate_false_gzip": 1.0}, {"max_attempts": 2}, "undecodable body"),
        ({"rate_endless_paging": 1.0}, {"max_list_pages": 4}, "the list runs past 4 pages"),
    ],
    ids=["bad-next-link", "false-gzip", "endless-paging"],
)
def test_a_broken_answer_is_the_users_error_never_the_runs(store, simulator, fault, client_options, error):
    crawl(store, simulator, everyone(simulator))
    before = stored_everywhere(store, simulator)
    simulator.set_faults(FaultConfig(**fault))
    stats = crawl(store, simulator, everyone(simulator, force_full=True), clock=later_clock(1), **client_options)
    assert stats.users_failed == len(before) and stats.users_ok == 0
    assert stored_everywhere(store, simulator) == before
    states = crawl_states(store)
    assert {state[:2] for state in states.values()} == {("error", 1)}
    errors = [row[0] for row in store.connection.execute("SELECT last_error FROM crawl_state").fetchall()]
    assert all(error in message for message in errors), errors[0]
    assert last_run_status(store) == "completed"
    # Once the server answers properly again, the users are fetched as usual.
    simulator.set_faults()
    stats = crawl(store, simulator, everyone(simulator), clock=later_clock(2))
    assert stats.users_ok == len(before) and stats.users_failed == 0


def test_a_retry_after_decades_away_waits_only_the_backoff_maximum(store, simulator):
    names = simulator.population.usernames()[:2]
    simulator.set_faults(rate_429=1.0, retry_after_date="Thu, 01 Jan 2099 00:00:00 GMT")
    started = time.monotonic()
    stats = crawl(store, simulator, CrawlRequest(only_usernames=names, refresh_anime=False), max_attempts=3)
    assert time.monotonic() - started < 5
    assert stats.users_failed == 2 and stats.status_429 == 6
    assert last_run_status(store) == "completed"


def test_the_duckdb_file_is_free_while_the_crawl_waits_on_the_network(tmp_path, simulator):
    path = tmp_path / "sprout.duckdb"
    Store.open(path).close()
    names = simulator.population.usernames()[:1]
    simulator.set_faults(rate_slow=1.0, slow_s=4.0)
    result: dict = {}

    def run() -> None:
        async def go():
            async with fast_client(simulator) as client:
                request = CrawlRequest(only_usernames=names, refresh_anime=False)
                return await run_crawl(StoreFile(path), client, request)

        result["stats"] = asyncio.run(go())

    crawler = threading.Thread(target=run)
    crawler.start()
    time.sleep(0.5)
    # Another process opens the file read-write and writes while the crawl waits on the slow answer.
    other = subprocess.run(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); c.execute("
         "\"INSERT INTO users VALUES ('someone_else', now(), 'test', NULL)\"); c.close()", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    still_fetching = crawler.is_alive()
    crawler.join(60)
    assert other.returncode == 0, other.stderr
    assert still_fetching
    assert result["stats"].users_ok == 1
    with Store.open(path, read_only=True) as store:
        assert stored_rows(store, names[0]) == truth_rows(simulator, names[0])
        assert store.last_crawl_run().status == "completed"
        assert store.connection.execute("SELECT count(*) FROM users WHERE username = 'someone_else'").fetchone()[0] == 1


def test_a_list_the_store_refuses_costs_only_its_user(tmp_path):
    from sprout.crawl.profiles import ProfileCrawler
    from sprout.crawl.stats import CrawlStats
    from sprout.mal.models import ListEntry
    from sprout.store import UserListWrite

    at = datetime(2024, 6, 1, tzinfo=timezone.utc)

    def entry(anime_id: int) -> ListEntry:  # model_construct: past the validation the client does
        return ListEntry.model_construct(
            anime_id=anime_id, status="completed", score=7, num_episodes_watched=1, is_rewatching=False,
            updated_at=at, start_date=None, finish_date=None, title="",
        )

    def write(username: str, *ids: int) -> UserListWrite:
        entries = [entry(i) for i in ids]
        return UserListWrite(username, entries, full=True, fetched_at=at, next_due_at=at + timedelta(days=1))

    with Store.open(tmp_path / "sprout.duckdb") as store:
        crawler = ProfileCrawler(store, client=None, policy=CrawlPolicy(), clock=lambda: at)
        stats = CrawlStats()
        asyncio.run(crawler._flush([write("good", 1, 2), write("bad", 1, 2**40), write("fine", 3)], {}, stats))
        assert stats.entries_added == 3 and crawler.outcomes == {"bad": "error"}
        states = dict(store.connection.execute("SELECT username, state || ':' || attempts FROM crawl_state").fetchall())
        assert states == {"good": "ok:0", "bad": "error:1", "fine": "ok:0"}
        assert [e.anime_id for e in store.user_entries("bad")] == []


def test_the_deletion_guard_in_the_store(tmp_path):
    from sprout.mal.models import ListEntry
    from sprout.store import UserListWrite
    from sprout.store.diff import DeletionGuard
    from sprout.store.entries import write_guarded_lists

    t0 = datetime(2024, 6, 1, tzinfo=timezone.utc)

    def write(username: str, ids, at: datetime, full: bool = True) -> UserListWrite:
        entries = [
            ListEntry(anime_id=i, status="completed", score=5, num_episodes_watched=1, is_rewatching=False,
                      updated_at=t0)
            for i in ids
        ]
        return UserListWrite(username, entries, full=full, fetched_at=at, next_due_at=at + timedelta(days=1))

    guard = DeletionGuard(min_entries=10, max_fraction=0.5)
    with Store.open(tmp_path / "sprout.duckdb") as store:

        def apply(*writes):
            with store.transaction() as connection:
                return [(c.counts.deleted, c.held) for c in write_guarded_lists(connection, list(writes), guard)]

        def held_at(username):
            return store.connection.execute(
                "SELECT mass_deletion_held_at FROM crawl_state WHERE username = ?", [username]
            ).fetchone()[0]

        apply(
            write("long", range(1, 21), t0), write("short", range(1, 10), t0), write("trim", range(1, 21), t0),
            write("tiny", range(1, 5), t0), write("cut", range(1, 10), t0),
        )
        day = timedelta(days=1)
        # 15 of 20 would go: held. All 9 of a short list, or all 4 of a tiny one: held too (one
        # empty answer never clears a list). 5 of 20, and 8 of 9 on a short list: deleted at once.
        assert apply(
            write("long", range(1, 6), t0 + day), write("short", [], t0 + day), write("trim", range(1, 16), t0 + day),
            write("tiny", [], t0 + day), write("cut", [1], t0 + day),
        ) == [(0, 15), (0, 9), (5, 0), (0, 4), (8, 0)]
        assert len(store.user_entries("tiny")) == 4 and held_at("tiny") == t0 + day
        assert apply(write("tiny", [], t0 + 2 * day)) == [(4, 0)]  # a second empty listing agrees
        assert store.user_entries("tiny") == [] and held_at("tiny") is None
        assert len(store.user_entries("long")) == 20 and held_at("long") == t0 + day
        assert held_at("trim") is None
        # An incremental write neither confirms nor forgets the held deletion.
        assert apply(write("long", [1], t0 + 2 * day, full=False)) == [(0, 0)]
        assert held_at("long") == t0 + day
        # A later full list that agrees deletes.
        assert apply(write("long", range(1, 6), t0 + 3 * day)) == [(15, 0)]
        assert [e.anime_id for e in store.user_entries("long")] == [1, 2, 3, 4, 5] and held_at("long") is None
        # Without a guard (the data-set import), a full list is the truth at once.
        with store.transaction() as connection:
            changes = write_guarded_lists(connection, [write("trim", [], t0 + 4 * day)], None)
        assert (changes[0].counts.deleted, changes[0].held) == (15, 0)


def test_a_discovery_source_that_fails_costs_the_run_only_its_new_users(store, simulator):
    from sprout.mal.discovery import RecentlyOnlineSource

    names = simulator.population.usernames()[:3]

    async def run():
        # The website is unreachable (nothing listens on port 1); the API answers as usual.
        async with fast_client(simulator, web_url="http://127.0.0.1:1", max_attempts=2) as client:
            request = CrawlRequest(sources=[RecentlyOnlineSource(client)], only_usernames=names, refresh_anime=False)
            return await run_crawl(store, client, request)

    stats = asyncio.run(run())
    assert stats.sources_failed == 1 and stats.users_discovered == 0
    assert stats.users_ok == len(names) and last_run_status(store) == "completed"
