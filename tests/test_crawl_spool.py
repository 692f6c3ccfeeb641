"""Crawls split across hosts by the spool: workers that never open the store, one writer that
applies their batches exactly once.

Real components throughout: the simulator over HTTP on 127.0.0.1, DuckDB files, spool folders on
disk (and pyarrow's in-memory filesystem standing in for an object store), and worker and ingest
processes that SIGKILL themselves at precise points (a hook in a child script, as in
test_registry_failures.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from crawl_helpers import CLIENT_ID, fast_client, public_users, row_key, truth_rows
from sprout.crawl.assignments import take_assignment, waiting
from sprout.crawl.ingest import apply_spooled, ingest_spool
from sprout.crawl.job import CrawlRequest, crawl_assignments, hand_out, run_crawl
from sprout.crawl.policy import CrawlPolicy
from sprout.crawl.spool import BATCHES, TAKEN, Spool, SpoolError, SpooledBatch, batch_from_file_table
from sprout.mal.models import ListEntry
from sprout.malsim.server import SimulatorServer
from sprout.malsim.synthetic_population import synthetic_population
from sprout.store import Store, UserListWrite, UserOutcome

T0 = datetime(2025, 3, 1, 12, tzinfo=timezone.utc)
DAY = timedelta(days=1)


@pytest.fixture
def simulator():
    with SimulatorServer(synthetic_population(36, seed=21, n_anime=800, private_fraction=0.1)) as server:
        yield server


def at(moment: datetime):
    return lambda: moment


def snapshot(store: Store) -> dict[str, list]:
    """Every row a crawl writes, claims left out (only spooled crawls take them)."""
    queries = {
        "list_entries": "SELECT * FROM list_entries",
        "crawl_state": "SELECT * EXCLUDE (claimed_by, claimed_until) FROM crawl_state",
        "users": "SELECT * FROM users",
    }
    return {name: sorted(store.connection.execute(sql).fetchall(), key=repr) for name, sql in queries.items()}


def spooled_crawl(store: Store, spool: Spool, simulator, request: CrawlRequest, clock, *, parts: int = 1, **options):
    """Hand out, crawl every assignment as one worker, ingest: the three steps in one process."""

    async def run():
        await hand_out(store, spool, request, parts=parts, clock=clock)
        async with fast_client(simulator) as client:
            crawled = await crawl_assignments(spool, client, request.policy, worker="w", clock=clock, **options)
        return crawled, await ingest_spool(spool, store, clock=clock)

    return asyncio.run(run())


def direct_crawl(store: Store, simulator, request: CrawlRequest, clock):
    async def run():
        async with fast_client(simulator) as client:
            return await run_crawl(store, client, request, clock=clock)

    return asyncio.run(run())


def entry(anime_id: int, score: int = 7) -> ListEntry:
    return ListEntry.model_construct(
        anime_id=anime_id, status="completed", score=score, num_episodes_watched=3, is_rewatching=False,
        updated_at=T0, start_date=None, finish_date=None, title="",
    )


def listing(username: str, ids, when: datetime = T0) -> UserListWrite:
    return UserListWrite(username, [entry(i) for i in ids], full=True, fetched_at=when, next_due_at=when + DAY)


def outcome(username: str, state: str, when: datetime = T0) -> UserOutcome:
    status = {"private": 403, "not_found": 404, "error": 500, "pending": 403}[state]
    return UserOutcome(username, state, status, "boom" if state == "error" else None, when, when + DAY)


def ids(store: Store, username: str) -> list[int]:
    return [e.anime_id for e in store.user_entries(username)]


def batch_file(spool_dir: Path, name: str) -> Path:
    return spool_dir / BATCHES / f"{name}.parquet"


# One writer, exactly once


def test_a_spooled_crawl_stores_exactly_what_a_direct_crawl_stores(tmp_path, simulator):
    names = simulator.population.usernames()
    with Store.open(tmp_path / "direct.duckdb") as direct, Store.open(tmp_path / "spooled.duckdb") as spooled:
        spool = Spool(tmp_path / "spool")
        first = CrawlRequest(only_usernames=names, refresh_anime=False)
        direct_crawl(direct, simulator, first, at(T0))
        crawled, ingested = spooled_crawl(spooled, spool, simulator, first, at(T0), parts=3, batch_size=5)
        assert snapshot(spooled) == snapshot(direct)
        assert crawled.assignments == 3 and crawled.batches_spooled == ingested.batches >= 8
        assert ingested.lists == len(public_users(simulator)) and ingested.outcomes == len(names) - ingested.lists

        # A month on: incremental fetches planned from the handed-out crawl state, deletions
        # caught by the weekly full listing; still the same rows either way.
        simulator.population.advance(days=30, seed=3)
        later = T0 + 30 * DAY
        scheduled = CrawlRequest(max_users=100, refresh_anime=False)
        direct_crawl(direct, simulator, scheduled, at(later))
        crawled, ingested = spooled_crawl(spooled, spool, simulator, scheduled, at(later), parts=2)
        assert snapshot(spooled) == snapshot(direct)
        assert ingested.entries_added and ingested.entries_deleted and ingested.profiles_changed
        assert spooled.profiles_changed_since(T0 + DAY) == ingested.profiles_changed
        assert spool.pending() == [] and waiting(spool) == [] and spool.names(TAKEN) == []


def test_a_batch_applied_twice_changes_nothing(tmp_path):
    spool = Spool(tmp_path / "spool")
    name = spool.publish([listing("amy", [1, 2, 3]), listing("bob", [4])], [outcome("cat", "private")], run_id="r1")
    kept = tmp_path / "kept.parquet"
    shutil.copy(batch_file(tmp_path / "spool", name), kept)
    with Store.open(tmp_path / "sprout.duckdb") as store:
        first = asyncio.run(ingest_spool(spool, store))
        assert (first.batches, first.lists, first.outcomes, first.entries_added) == (1, 2, 1, 4)
        before = snapshot(store)
        shutil.copy(kept, batch_file(tmp_path / "spool", name))  # what a kill before the delete leaves
        again = asyncio.run(ingest_spool(spool, store))
        assert (again.batches, again.already_applied) == (0, 1)
        assert snapshot(store) == before and spool.pending() == []
        recorded = store.connection.execute("SELECT name, run_id, lists, outcomes, entries FROM spool_batches").fetchall()
        assert recorded == [(name, "r1", 2, 1, 4)]
        batch = batch_from_file_table(pq.read_table(kept))
        replayed = apply_spooled(store, [SpooledBatch(name, batch, "r1", None, None)], CrawlPolicy(), applied_at=T0)
        assert replayed == {name: None} and snapshot(store) == before


def test_grouped_batches_store_what_one_at_a_time_stores(tmp_path):
    batches = [
        ([listing("amy", [1, 2, 3]), listing("bob", [4])], [outcome("cat", "private")]),
        ([listing("dan", [5, 6])], []),
        ([listing("amy", [2, 3, 7], T0 + DAY)], [outcome("bob", "not_found", T0 + DAY)]),  # amy again: a new group
        ([listing("eve", [8])], [outcome("cat", "error", T0 + DAY)]),
    ]
    ledgers, snapshots, steps = [], [], []
    for group_entries in (1_000, 1):
        spool = Spool(tmp_path / f"spool{group_entries}")
        for lists, outcomes in batches:
            spool.publish(lists, outcomes, run_id="r")
        seen: list[str] = []
        with Store.open(tmp_path / f"store{group_entries}.duckdb") as store:
            stats = asyncio.run(ingest_spool(spool, store, group_entries=group_entries, on_step=lambda s, _: seen.append(s)))
            assert (stats.batches, stats.lists, stats.outcomes, stats.entries_added, stats.entries_deleted) == (4, 5, 3, 8, 1)
            assert ids(store, "amy") == [2, 3, 7] and spool.pending() == []
            ledgers.append(store.connection.execute(
                "SELECT * EXCLUDE (name, applied_at) FROM spool_batches ORDER BY name").fetchall())
            snapshots.append(snapshot(store))
        steps.append(seen)
    assert snapshots[0] == snapshots[1] and ledgers[0] == ledgers[1]  # each batch's own counts
    # Two transactions of two batches each: amy's second list could not share the first.
    assert steps[0] == ["applied", "applied", "committed", "committed", "removed", "removed"] * 2
    assert steps[1] == ["applied", "committed", "removed"] * 4


def test_torn_and_temporary_files_are_never_read(tmp_path):
    folder = tmp_path / "spool" / BATCHES
    spool = Spool(tmp_path / "spool")
    first = spool.publish([listing("amy", [1, 2])], run_id="r")
    # What writers killed mid-publish leave: dot-named temporary files, whole or torn.
    stale, fresh = folder / f".{first}-x.0a0b0c0d.tmp", folder / ".20990101T000000000000Z-y.01020304.tmp"
    stale.write_bytes(b"PAR1 torn")
    fresh.write_bytes(batch_file(tmp_path / "spool", first).read_bytes()[:40])
    hour_ago = (datetime.now(timezone.utc) - timedelta(hours=2)).timestamp()
    os.utime(stale, (hour_ago, hour_ago))
    assert spool.pending() == [first]
    with Store.open(tmp_path / "sprout.duckdb") as store:
        stats = asyncio.run(ingest_spool(spool, store))
        assert (stats.batches, stats.temporary_removed) == (1, 1)
        assert not stale.exists() and fresh.exists()  # a writer may still be busy with a fresh one
        assert ids(store, "amy") == [1, 2]

        # A published file that cannot be read stops the ingest there: later batches could hold
        # newer lists of the same users, and must not overtake it.
        broken = spool.publish([listing("amy", [3])], run_id="r")
        after = spool.publish([listing("amy", [4])], run_id="r")
        batch_file(tmp_path / "spool", broken).write_bytes(b"not parquet")
        with pytest.raises(SpoolError, match=broken):
            asyncio.run(ingest_spool(spool, store))
        assert ids(store, "amy") == [1, 2] and spool.pending() == [broken, after]


def test_batches_apply_in_publishing_order(tmp_path):
    spool = Spool(tmp_path / "spool")
    names = [
        spool.publish([listing("amy", [1, 2])], run_id="r", worker="w"),
        spool.publish([listing("amy", [2, 3], T0 + DAY)], run_id="r", worker="w"),
        spool.publish([], [outcome("amy", "private", T0 + 2 * DAY)], run_id="r", worker="w"),
    ]
    names += [spool.publish([listing("bob", [9])], run_id="r", worker=f"w{i}") for i in range(50)]
    assert spool.pending() == names == sorted(names) and len(set(names)) == len(names)
    with Store.open(tmp_path / "sprout.duckdb") as store:
        asyncio.run(ingest_spool(spool, store))
        assert ids(store, "amy") == [2, 3]  # the second full list, then private: the rows stay
        state = store.connection.execute("SELECT state, withdrawn_at FROM crawl_state WHERE username = 'amy'").fetchall()
        assert state == [("private", T0 + 2 * DAY)]
        applied = store.connection.execute("SELECT name FROM spool_batches ORDER BY applied_at, name").fetchall()
        assert [name for (name,) in applied] == names
        # A batch from a worker that stalled past its claim, fetched before what is stored: left out.
        spool.publish([listing("amy", [7]), listing("eve", [8])], run_id="late", worker="slow")
        late = asyncio.run(ingest_spool(spool, store))
        assert (late.batches, late.users_stale, late.lists) == (1, 1, 1)
        assert ids(store, "amy") == [2, 3] and ids(store, "eve") == [8]


def test_outcomes_apply_as_the_store_marks_them(tmp_path):
    rounds = [
        [outcome("amy", "private"), outcome("bob", "not_found"), outcome("cat", "error"), outcome("dan", "pending")],
        [outcome("cat", "error", T0 + DAY), outcome("amy", "pending", T0 + DAY)],
    ]
    spool = Spool(tmp_path / "spool")
    with Store.open(tmp_path / "marked.duckdb") as marked, Store.open(tmp_path / "spooled.duckdb") as spooled:
        for outcomes in rounds:
            marked.mark_users(outcomes)
            spool.publish([], outcomes, run_id="r")
        asyncio.run(ingest_spool(spool, spooled))
        assert snapshot(spooled) == snapshot(marked)
        attempts = spooled.connection.execute("SELECT attempts FROM crawl_state WHERE username = 'cat'").fetchall()
        assert attempts == [(2,)]


def test_arrow_tables_publish_and_a_refused_list_costs_only_its_user(tmp_path):
    lists = pa.table({
        "username": ["amy", "bob", "cat"], "full": [True, True, True],
        "fetched_at": [T0] * 3, "next_due_at": [T0 + DAY] * 3,
    })
    entries = pa.table({
        "username": ["amy", "amy", "bob", "cat", "amy"], "anime_id": [1, 2, 5, 6, 1],
        "status": ["completed", "watching", "dropped", "completed", "completed"],
        "score": [8, 0, 3, 11, 9],  # cat's 11 breaks the store's score check
        "num_episodes_watched": [12, 3, 1, 1, 12], "is_rewatching": [False] * 5, "updated_at": [T0] * 5,
    })
    outcomes = pa.table({
        "username": ["dan"], "state": ["not_found"], "http_status": [404], "at": [T0], "next_due_at": [T0 + 60 * DAY],
    })
    spool = Spool(tmp_path / "spool")
    spool.publish_tables(lists, entries, outcomes, run_id="bench")
    with pytest.raises(ValueError, match="once"):
        spool.publish_tables(lists, entries, outcomes.set_column(0, "username", pa.array(["amy"])), run_id="bench")
    with Store.open(tmp_path / "sprout.duckdb") as store:
        stats = asyncio.run(ingest_spool(spool, store))
        assert (stats.lists, stats.users_refused, stats.outcomes) == (2, 1, 1)
        rows = store.connection.execute("SELECT username, anime_id, score FROM list_entries ORDER BY ALL").fetchall()
        assert rows == [("amy", 1, 9), ("amy", 2, 0), ("bob", 5, 3)]  # amy's repeated show: the last row wins
        states = dict(store.connection.execute("SELECT username, state || ':' || attempts FROM crawl_state").fetchall())
        assert states == {"amy": "ok:0", "bob": "ok:0", "cat": "error:1", "dan": "not_found:0"}
        assert store.connection.execute("SELECT lists, outcomes FROM spool_batches").fetchall() == [(3, 1)]


def test_an_object_store_spool_publishes_whole_objects(tmp_path):
    spool = Spool("mock:///spool")  # pyarrow's in-memory filesystem: no renames, objects appear whole
    name = spool.publish([listing("amy", [1, 2, 3])], [outcome("bob", "private")], run_id="r")
    listed = spool.filesystem.get_file_info(pafs.FileSelector("spool", recursive=True))
    assert [info.path for info in listed if info.type == pafs.FileType.File] == [f"spool/{BATCHES}/{name}.parquet"]
    with Store.open(tmp_path / "sprout.duckdb") as store:
        store.add_users(["amy", "cat"], "seed_list", T0)
        (handed,) = asyncio.run(hand_out(store, spool, CrawlRequest(only_usernames=["cat"]), clock=at(T0)))
        assert take_assignment(spool, "w1").name == handed.name and take_assignment(spool, "w2") is None
        stats = asyncio.run(ingest_spool(spool, store))
        assert stats.batches == 1 and ids(store, "amy") == [1, 2, 3] and spool.pending() == []


# Crawl state across processes: claims


def test_claims_keep_users_with_one_worker_until_ingested_or_expired(tmp_path, simulator):
    names = public_users(simulator)[:8]
    spool = Spool(tmp_path / "spool")
    hours = timedelta(hours=1)
    with Store.open(tmp_path / "sprout.duckdb") as store:
        store.add_users(names, "seed_list", T0)
        request = CrawlRequest(max_users=5, refresh_anime=False)
        (first,) = asyncio.run(hand_out(store, spool, request, clock=at(T0), claim_for=hours))
        claimed = {user.username for user in first.users}
        # Nobody else gets them: not the next hand-out, not a direct crawl's due queue.
        (second,) = asyncio.run(hand_out(store, spool, request, clock=at(T0), claim_for=hours))
        assert len(claimed) == 5 and {u.username for u in second.users} == set(names) - claimed
        assert asyncio.run(hand_out(store, spool, request, clock=at(T0), claim_for=hours)) == []
        assert store.due_users(T0, 100) == []

        # Fetched and published, not ingested: not done. Still due, still claimed.
        async def crawl(name: str, worker: str, when: datetime):
            async with fast_client(simulator) as client:
                return await crawl_assignments(spool, client, CrawlPolicy(), worker=worker, assignment=name, clock=at(when))

        assert asyncio.run(crawl(first.name, "w1", T0)).users_ok == 5
        assert asyncio.run(crawl(second.name, "w2", T0)).users_ok == 3
        assert store.due_users(T0 + hours / 2, 100) == []
        assert {u.username for u in store.due_users(T0 + 2 * hours, 100)} == set(names)
        # Once the claims run out they are handed out again: their workers may have died.
        (again,) = asyncio.run(hand_out(store, spool, request, clock=at(T0 + 2 * hours), claim_for=hours))
        assert {u.username for u in again.users} == claimed
        # The first workers' batches land now: lists stored, due tomorrow; the users handed out
        # again stay claimed (ingest ends only the claims of a batch's own assignment).
        stats = asyncio.run(ingest_spool(spool, store))
        assert (stats.batches > 0, stats.lists) == (True, 8)
        for name in names:
            assert {row_key(e) for e in store.user_entries(name)} == truth_rows(simulator, name)
        holders = dict(store.connection.execute("SELECT username, claimed_by FROM crawl_state").fetchall())
        assert holders == {name: again.name if name in claimed else None for name in names}
        # A worker that reaches an assignment after its claim ran out fetches nobody.
        late = asyncio.run(crawl(again.name, "w3", T0 + 4 * hours))
        assert (late.users_claim_expired, late.requests, late.batches_spooled) == (5, 0, 0)
        assert store.due_users(T0 + 4 * hours, 100) == []  # all ingested: due a day after their fetch
        assert {u.username for u in store.due_users(T0 + 2 * DAY, 100)} == set(names)  # a lapsed claim holds nobody


def test_each_assignment_is_taken_by_one_worker(tmp_path):
    spool = Spool(tmp_path / "spool")
    with Store.open(tmp_path / "sprout.duckdb") as store:
        store.add_users([f"u{i}" for i in range(12)], "seed_list", T0)
        handed = asyncio.run(hand_out(store, spool, CrawlRequest(max_users=12), parts=3, clock=at(T0)))
    assert sorted(len(a.users) for a in handed) == [4, 4, 4]
    taken: list = []
    start = threading.Barrier(6)

    def worker(index: int) -> None:
        start.wait()
        try:
            taken.append((index, take_assignment(spool, f"w{index}")))
        except Exception as error:  # noqa: BLE001 - reported below
            taken.append((index, error))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not [error for _, error in taken if isinstance(error, Exception)]
    won = {index: assignment.name for index, assignment in taken if assignment is not None}
    assert sorted(won.values()) == sorted(a.name for a in handed) and waiting(spool) == []
    # A worker restarted under its name resumes what it took; nobody else can take it.
    index, name = next(iter(won.items()))
    assert take_assignment(spool, f"w{index}").name == name
    assert take_assignment(spool, "newcomer", name) is None


# Three worker hosts, kill -9 of a worker and of the ingester

CHILD_WORKER = textwrap.dedent(
    """
    import asyncio, os, sys
    from sprout.config import Settings
    from sprout.crawl.job import crawl_assignments
    from sprout.crawl.policy import CrawlPolicy
    from sprout.crawl.spool import Spool
    from sprout.mal.client import MalClient

    assignment, worker, kill_after = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class Dying(Spool):
        published = 0

        def publish_batch(self, *args, **kwargs):
            name = super().publish_batch(*args, **kwargs)
            Dying.published += 1
            if Dying.published == kill_after:
                os.kill(os.getpid(), 9)
            return name

    async def main():
        settings = Settings()
        async with MalClient.from_settings(settings) as client:
            await crawl_assignments(Dying(settings.crawl_spool), client, CrawlPolicy(), worker=worker,
                                    assignment=assignment, batch_size=2)

    asyncio.run(main())
    """
)

CHILD_INGEST = textwrap.dedent(
    """
    import asyncio, os, sys
    from sprout.config import Settings
    from sprout.crawl.ingest import ingest_spool
    from sprout.crawl.spool import Spool
    from sprout.store import Store

    kill_step, kill_at, group_entries, seen = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), []

    def on_step(step, name):
        if step == kill_step:
            seen.append(name)
            if len(seen) == kill_at:
                os.kill(os.getpid(), 9)

    settings = Settings()
    with Store.open(settings.db_path) as store:
        asyncio.run(ingest_spool(Spool(settings.crawl_spool), store, on_step=on_step, group_entries=group_entries))
    """
)


def test_three_workers_one_killed_and_a_killed_ingester_leave_the_store_equal_to_the_truth(tmp_path, simulator):
    spool_dir, store_home = tmp_path / "spool", tmp_path / "store"
    base = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SPROUT_")},
        "SPROUT_MAL_API_URL": simulator.api_url, "SPROUT_MAL_WEB_URL": simulator.url,
        "SPROUT_MAL_CLIENT_ID": CLIENT_ID, "SPROUT_MAL_REQUESTS_PER_SECOND": "1000",
        "SPROUT_CRAWL_SPOOL": str(spool_dir),
    }

    def env(home: Path) -> dict[str, str]:
        return {**base, "SPROUT_HOME": str(home)}

    def sprout(home: Path, *args: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "sprout.cli", *args, "--json"], env=env(home),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    def child(script: str, home: Path, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", script, *args], env=env(home), cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    # The store's host hands every user out in three assignments.
    everyone = simulator.population.usernames()
    (tmp_path / "seeds.txt").write_text("\n".join(everyone) + "\n")
    handed = sprout(store_home, "ingest", "--usernames", str(tmp_path / "seeds.txt"), "--parts", "3")["assignments"]
    assert sorted(a["users"] for a in handed) == [12, 12, 12]
    names = [a["name"] for a in handed]

    # Three worker hosts, each its own SPROUT_HOME; the second SIGKILLs itself after two batches.
    homes = [tmp_path / f"worker{i}" for i in range(3)]
    workers = [
        subprocess.Popen([sys.executable, "-m", "sprout.cli", "crawl", "--assignment", names[0], "--worker", "w0", "--json"],
                         env=env(homes[0]), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        child(CHILD_WORKER, homes[1], names[1], "w1", "2"),
        subprocess.Popen([sys.executable, "-m", "sprout.cli", "crawl", "--assignment", names[2], "--worker", "w2", "--json"],
                         env=env(homes[2]), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    ]
    results = [(process.wait(timeout=120), process.communicate()) for process in workers]
    assert [code for code, _ in results] == [0, -9, 0], [err[-2000:] for _, (_, err) in results]
    assert [json.loads(out)["crawl"]["users_due"] for code, (out, _) in results if code == 0] == [12, 12]
    for home in homes:
        assert not (home / "sprout.duckdb").exists()  # workers never open the store
    spool = Spool(spool_dir)
    killed_batches = [name for name in spool.pending() if name.endswith("-w1")]
    assert len(killed_batches) == 2  # what it fetched after those died with it
    assert spool.names(TAKEN) == [f"{names[1]}@w1"]

    # The ingester killed inside its first group's transaction (all batches in one): nothing
    # stays. Then, one batch per transaction, killed between its second commit and that file's
    # deletion.
    first = child(CHILD_INGEST, store_home, "applied", "2", "1000000")
    assert first.wait(timeout=120) == -9, first.communicate()[1]
    with Store.open(store_home / "sprout.duckdb", read_only=True) as store:
        assert store.connection.execute("SELECT count(*) FROM spool_batches").fetchall() == [(0,)]
        assert store.connection.execute("SELECT count(*) FROM list_entries").fetchall() == [(0,)]
    second = child(CHILD_INGEST, store_home, "committed", "2", "1")
    assert second.wait(timeout=120) == -9, second.communicate()[1]
    with Store.open(store_home / "sprout.duckdb", read_only=True) as store:
        applied = {name for (name,) in store.connection.execute("SELECT name FROM spool_batches").fetchall()}
    assert len(applied) == 2 and len(applied & set(spool.pending())) == 1  # committed, not yet deleted

    # The killed worker restarts under its name and resumes its assignment; the next ingest
    # deletes the recorded file without applying it again and applies the rest.
    rerun = sprout(homes[1], "crawl", "--assignment", names[1], "--worker", "w1")["crawl"]
    assert (rerun["assignments"], rerun["users_due"]) == (1, 12)
    last = sprout(store_home, "ingest")
    assert last["ingest"]["already_applied"] == 1 and last["ingest"]["batches"] > 0

    assert spool.pending() == [] and waiting(spool) == [] and spool.names(TAKEN) == []
    public = set(public_users(simulator))
    with Store.open(store_home / "sprout.duckdb", read_only=True) as store:
        rows = store.connection.execute(
            "SELECT username, anime_id, status, score, num_episodes_watched, is_rewatching, updated_at, "
            "start_date, finish_date FROM list_entries"
        ).fetchall()
        stored: dict[str, set] = {}
        for username, *fields in rows:
            keys = ("anime_id", "status", "score", "num_episodes_watched", "is_rewatching", "updated_at",
                    "start_date", "finish_date")
            stored.setdefault(username, set()).add(row_key(dict(zip(keys, fields))))
        assert stored == {name: truth_rows(simulator, name) for name in public}  # row for row
        states = dict(store.connection.execute("SELECT username, state FROM crawl_state").fetchall())
        assert states == {name: "ok" if name in public else "private" for name in everyone}
        assert store.connection.execute("SELECT count(*) FROM crawl_state WHERE claimed_by IS NOT NULL").fetchall() == [(0,)]
        assert store.profiles_changed_since(None) == len(public)  # each list changed its profile once
        assert store.connection.execute("SELECT count(*) FROM crawl_runs").fetchall() == [(0,)]


# The Prefect flows


def test_the_crawl_flow_spools_and_the_ingest_flow_applies(prefect_server, tmp_path, monkeypatch, simulator):
    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    from flows.crawl import CRAWL_ASSIGNED, CRAWL_COMPLETED, CRAWL_SPOOLED, CrawlParameters, crawl_flow
    from flows.ingest import IngestParameters, ingest_flow

    store_home, worker_home = tmp_path / "store", tmp_path / "worker"
    for name, value in {
        "SPROUT_MAL_API_URL": simulator.api_url, "SPROUT_MAL_WEB_URL": simulator.url,
        "SPROUT_MAL_CLIENT_ID": CLIENT_ID, "SPROUT_MAL_REQUESTS_PER_SECOND": "2000",
        "SPROUT_CRAWL_SPOOL": str(tmp_path / "spool"), "SPROUT_HOME": str(store_home),
    }.items():
        monkeypatch.setenv(name, value)
    # The store's host discovers users on the recently-online page and hands them out in two parts.
    quiet = {"refresh_anime": False, "shared_rate_limit": False}
    handed = asyncio.run(ingest_flow(IngestParameters(assign_users=100, assignments=2, **quiet)))
    assert (handed["batches"], handed["assignments_handed_out"]) == (0, 2) and handed["users_handed_out"] > 2
    names = waiting(Spool(tmp_path / "spool"))
    assert len(names) == 2
    # A worker host crawls the one its event names, then the rest, without a store of its own.
    monkeypatch.setenv("SPROUT_HOME", str(worker_home))
    first = asyncio.run(crawl_flow(CrawlParameters(assignment=names[0], **quiet)))
    assert first["assignments"] == 1 and waiting(Spool(tmp_path / "spool")) == names[1:]
    rest = asyncio.run(crawl_flow(CrawlParameters(**quiet)))
    crawled = {key: first[key] + rest[key] for key in ("assignments", "users_due", "users_ok", "batches_spooled")}
    assert crawled["assignments"] == 2 and crawled["users_due"] == handed["users_handed_out"]
    assert crawled["batches_spooled"] > 0 and not (worker_home / "sprout.duckdb").exists()
    # Back on the store's host: everything applied, anime metadata fetched, nothing handed out.
    monkeypatch.setenv("SPROUT_HOME", str(store_home))
    applied = asyncio.run(ingest_flow(IngestParameters(assign_users=0, discover_online=False, shared_rate_limit=False)))
    assert applied["batches"] == crawled["batches_spooled"] and applied["anime_refreshed"] > 0
    with Store.open(store_home / "sprout.duckdb", read_only=True) as store:
        ok = store.connection.execute("SELECT username FROM crawl_state WHERE state = 'ok'").fetchall()
        assert len(ok) == crawled["users_ok"]
        for (name,) in ok:
            assert {row_key(e) for e in store.user_entries(name)} == truth_rows(simulator, name)

    async def announced(name: str, key: str, value: object) -> bool:
        """Whether an event ``name`` with ``payload[key] == value`` arrives; events reach the server
        asynchronously, behind the run's own, and earlier tests' events share its name."""
        async with get_client() as client:
            for _ in range(300):
                found = await client.read_events(EventFilter(event=EventNameFilter(name=[name])), limit=50)
                if any(e.payload.get(key) == value for e in found.events):
                    return True
                await asyncio.sleep(0.1)
            return False

    assert all(asyncio.run(announced(CRAWL_ASSIGNED, "assignment", name)) for name in names)
    assert asyncio.run(announced(CRAWL_SPOOLED, "batches_spooled", rest["batches_spooled"]))
    assert asyncio.run(announced(CRAWL_COMPLETED, "batches", applied["batches"]))


def test_an_assignment_needs_a_spool(prefect_server, tmp_path, monkeypatch):
    from flows.crawl import CrawlParameters, crawl_flow

    monkeypatch.setenv("SPROUT_MAL_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("SPROUT_HOME", str(tmp_path))
    monkeypatch.delenv("SPROUT_CRAWL_SPOOL", raising=False)
    with pytest.raises(ValueError, match="SPROUT_CRAWL_SPOOL"):
        asyncio.run(crawl_flow(CrawlParameters(assignment="20260101T000000000000Z-plan")))
    assert not (tmp_path / "sprout.duckdb").exists()  # refused before anything was opened
