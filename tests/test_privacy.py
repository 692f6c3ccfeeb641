"""Users who withdraw their list leave snapshots at once and the store after the retention
period; the simulator keeps its unauthenticated admin routes on loopback and bounded."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta

import duckdb
import httpx
import pytest
from typer.testing import CliRunner

from crawl_helpers import crawl, later_clock, stored_rows, truth_rows
from sprout.cli import app
from sprout.crawl.job import CrawlRequest
from sprout.crawl.policy import CrawlPolicy, plan_fetch
from sprout.dataset import DatasetConfig, build_snapshot, load_snapshot
from sprout.mal.models import ListEntry
from sprout.malsim.synthetic_population import synthetic_population
from sprout.malsim.server import RemoteBindRefused, SimulatorServer, is_loopback
from sprout.store import Store, UserListWrite, UserOutcome
from sprout.store.retention import purge_withdrawn_users, withdrawn_users
from sprout.store.schema import migrate

T0 = datetime(2025, 5, 1, tzinfo=UTC)
T1 = datetime(2025, 6, 1, tzinfo=UTC)
RETENTION = timedelta(days=30)
NAMES = ("alice", "bob", "carol", "dave")
ENTRIES_EACH = 6
CONFIG = DatasetConfig.tiny(
    corpus_size=20, min_counted_entries=3, activity_window_days=3650, n_validation_users=0, n_test_users=0
)


def rows(offset: int) -> list[ListEntry]:
    return [
        ListEntry(anime_id=offset + i, status="completed", score=1 + (offset + i) % 10, num_episodes_watched=1,
                  is_rewatching=False, updated_at=T0)
        for i in range(ENTRIES_EACH)
    ]  # fmt: skip


def private(name: str, at: datetime) -> UserOutcome:
    return UserOutcome(name, "private", 403, None, at, at + timedelta(days=14))


def gone(name: str, at: datetime) -> UserOutcome:
    return UserOutcome(name, "not_found", 404, None, at, at + timedelta(days=60))


def outcome(name: str, state: str, at: datetime) -> UserOutcome:
    return UserOutcome(name, state, 500 if state == "error" else 403, state, at, at + timedelta(hours=1))


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "sprout.duckdb") as store:
        store.write_user_lists([UserListWrite(name, rows(2 * i), True, T0, T0) for i, name in enumerate(NAMES)])
        yield store


def withdrawn_at(store: Store, name: str) -> datetime | None:
    return store.connection.execute("SELECT withdrawn_at FROM crawl_state WHERE username = ?", [name]).fetchall()[0][0]


def stored_count(store: Store, name: str) -> int:
    return store.connection.execute("SELECT count(*) FROM list_entries WHERE username = ?", [name]).fetchall()[0][0]


def snapshot_users(store: Store, out) -> tuple[tuple[str, ...], int]:
    manifest = build_snapshot(store, out, CONFIG, date(2025, 6, 2))
    snapshot = load_snapshot(out / manifest.snapshot_id)
    return snapshot.split("train").usernames, int(snapshot.corpus.counts.sum())


# ---- snapshots -----------------------------------------------------------------------------


def test_private_and_deleted_users_leave_snapshots_at_once(store, tmp_path):
    assert snapshot_users(store, tmp_path / "s")[0] == NAMES
    store.mark_users([private("bob", T1), gone("carol", T1)])
    users, counted = snapshot_users(store, tmp_path / "s")
    assert users == ("alice", "dave")
    assert counted <= 2 * ENTRIES_EACH  # corpus popularity counts only the consenting lists
    store.mark_users([outcome("bob", "error", T1 + timedelta(days=14))])  # a failed recheck says nothing new
    with store.transaction() as connection:  # a hand-written state without the mark still counts
        connection.execute("UPDATE crawl_state SET withdrawn_at = NULL WHERE username = 'carol'")
    assert snapshot_users(store, tmp_path / "s")[0] == ("alice", "dave")
    store.write_user_lists([UserListWrite("bob", rows(2), True, T1 + timedelta(days=15), T1)])  # public again
    assert snapshot_users(store, tmp_path / "s")[0] == ("alice", "bob", "dave")


# ---- the withdrawal mark -------------------------------------------------------------------


def test_the_withdrawal_time_is_the_first_verdict_and_survives_rechecks_and_errors(store):
    store.mark_users([private("bob", T1)])
    store.mark_users([private("bob", T1 + timedelta(days=14))])
    store.mark_users([outcome("bob", "error", T1 + timedelta(days=28))])
    store.mark_users([outcome("bob", "pending", T1 + timedelta(days=29))])  # throttled, after a confirmed verdict
    assert withdrawn_at(store, "bob") == T1
    store.mark_users([gone("carol", T1)])
    store.mark_users([outcome("carol", "pending", T1 + timedelta(minutes=5))])  # the 404 came with throttling
    assert withdrawn_at(store, "carol") is None
    store.mark_users([private("newcomer", T1)])  # a user first seen private
    assert withdrawn_at(store, "newcomer") == T1
    assert withdrawn_users(store) == 2


def test_a_returning_user_is_listed_in_full(store):
    policy = CrawlPolicy(full_refresh_every=timedelta(days=3650))
    bob = store.user_states(["bob"])[0]
    assert not plan_fetch("bob", bob.high_water_mark, bob.last_full_refresh_at, T1, policy).full
    store.mark_users([private("bob", T1)])
    bob = store.user_states(["bob"])[0]
    assert plan_fetch("bob", bob.high_water_mark, bob.last_full_refresh_at, T1, policy).full
    assert [u.last_full_refresh_at for u in store.due_users(None, 10) if u.username == "bob"] == [None]
    store.write_user_lists([UserListWrite("bob", rows(2), True, T1 + timedelta(days=1), T1)])
    bob = store.user_states(["bob"])[0]
    assert bob.last_full_refresh_at == T1 + timedelta(days=1)


def test_the_migration_marks_users_already_private(tmp_path):
    path = tmp_path / "old.duckdb"
    connection = duckdb.connect(str(path))
    connection.execute("SET TimeZone = 'UTC'")
    migrate(connection, target=4)
    connection.execute(
        """
        INSERT INTO crawl_state (username, state, attempts, last_crawl_at, entries) VALUES
            ('bob', 'private', 0, '2025-06-01 00:00:00+00', 3), ('alice', 'ok', 0, '2025-06-01 00:00:00+00', 3)
        """
    )
    connection.close()
    with Store.open(path) as store:
        assert withdrawn_at(store, "bob") == T1 and withdrawn_at(store, "alice") is None


# ---- purging -------------------------------------------------------------------------------


def test_entries_are_purged_after_the_retention_period_and_only_then(store):
    store.mark_users([private("bob", T1)])
    store.mark_users([private("bob", T1 + timedelta(days=14))])  # the recheck does not restart the clock
    store.mark_users([gone("carol", T1 + timedelta(days=20))])
    before = store.counts()["list_entries"]
    assert purge_withdrawn_users(store, T1 + timedelta(days=29), RETENTION).as_dict() == {"users": 0, "entries": 0}
    assert store.counts()["list_entries"] == before
    purged = purge_withdrawn_users(store, T1 + timedelta(days=31), RETENTION)
    assert (purged.users, purged.entries) == (1, ENTRIES_EACH)
    assert stored_count(store, "bob") == 0 and stored_count(store, "carol") == ENTRIES_EACH
    bob = store.user_states(["bob"])[0]
    assert (bob.state, bob.high_water_mark, bob.last_full_refresh_at) == ("private", None, None)
    assert store.connection.execute("SELECT entries FROM crawl_state WHERE username = 'bob'").fetchall() == [(0,)]
    assert "bob" in {row[0] for row in store.connection.execute("SELECT username FROM users").fetchall()}
    purged = purge_withdrawn_users(store, T1 + timedelta(days=51), RETENTION)
    assert (purged.users, purged.entries) == (1, ENTRIES_EACH)
    assert purge_withdrawn_users(store, T1 + timedelta(days=90), RETENTION).entries == 0
    assert stored_count(store, "alice") == stored_count(store, "dave") == ENTRIES_EACH
    with pytest.raises(ValueError, match="retention"):
        purge_withdrawn_users(store, T1, timedelta(days=-1))


def test_a_failing_purge_changes_nothing(store):
    store.mark_users([private("bob", T1)])
    with store.transaction() as connection:  # a schema the purge does not expect: its last statement fails
        connection.execute("ALTER TABLE crawl_state RENAME COLUMN high_water_mark TO hwm")
    with pytest.raises(duckdb.Error):
        purge_withdrawn_users(store, T1 + timedelta(days=31), RETENTION)
    assert stored_count(store, "bob") == ENTRIES_EACH  # the DELETE was rolled back with it


# ---- over HTTP: withdraw, purge, come back -------------------------------------------------


@pytest.fixture
def simulator():
    with SimulatorServer(synthetic_population(6, seed=5, n_anime=300, private_fraction=0.0)) as server:
        yield server


def test_a_user_who_withdraws_is_purged_and_relisted_in_full_on_return(tmp_path, simulator):
    policy = CrawlPolicy(full_refresh_every=timedelta(days=3650))  # only a return forces a full listing
    name = simulator.population.usernames()[0]
    with Store.open(tmp_path / "sprout.duckdb") as store:
        crawl(store, simulator, CrawlRequest(only_usernames=simulator.population.usernames(), policy=policy))
        assert stored_rows(store, name) == truth_rows(simulator, name)
        flip = httpx.post(f"{simulator.url}/sim/private", json={"usernames": [name]}, timeout=10)
        assert flip.status_code == 200
        stats = crawl(store, simulator, CrawlRequest(only_usernames=[name], policy=policy), clock=later_clock(1))
        assert stats.users_private == 1 and stored_rows(store, name)  # kept within the retention period
        purged = purge_withdrawn_users(store, datetime.now(UTC) + timedelta(days=32), RETENTION)
        assert purged.users == 1 and stored_rows(store, name) == set()
        httpx.post(f"{simulator.url}/sim/private", json={"usernames": [name], "private": False}, timeout=10)
        stats = crawl(store, simulator, CrawlRequest(only_usernames=[name], policy=policy), clock=later_clock(40))
        assert stats.users_ok == 1 and stats.full_listings == 1
        assert stored_rows(store, name) == truth_rows(simulator, name)


# ---- the CLI -------------------------------------------------------------------------------


def test_db_purge_command_uses_the_retention_setting(tmp_path, monkeypatch):
    for variable in [v for v in os.environ if v.startswith("SPROUT_")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("SPROUT_HOME", str(tmp_path))
    yesterday = datetime.now(UTC) - timedelta(days=1)
    with Store.open(tmp_path / "sprout.duckdb") as store:
        store.write_user_lists([UserListWrite("bob", rows(0), True, T0, T0)])
        store.mark_users([private("bob", yesterday)])
    runner = CliRunner()
    kept = runner.invoke(app, ["db", "purge", "--json"])
    assert kept.exit_code == 0, kept.output
    assert '"users": 0' in kept.output and '"retention_days": 30.0' in kept.output
    monkeypatch.setenv("SPROUT_WITHDRAWN_RETENTION_DAYS", "0.5")
    purged = runner.invoke(app, ["db", "purge", "--json"])
    assert purged.exit_code == 0, purged.output
    assert f'"users": 1, "entries": {ENTRIES_EACH}' in purged.output
    monkeypatch.setenv("SPROUT_WITHDRAWN_RETENTION_DAYS", "-1")
    refused = runner.invoke(app, ["db", "purge"])
    assert refused.exit_code == 2 and "SPROUT_WITHDRAWN_RETENTION_DAYS" in refused.output


# ---- the simulator's exposure --------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.org"])
def test_the_simulator_refuses_a_non_loopback_host_without_the_flag(host):
    result = CliRunner().invoke(app, ["malsim", "serve", "--host", host, "--users", "2"], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "allow-remote" in result.output and "unauthenticated" in result.output
    with pytest.raises(RemoteBindRefused):
        SimulatorServer(synthetic_population(2, seed=0, n_anime=50), host=host)


def test_loopback_hosts():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.5.0.1", "::1", "[::1]", "localhost", "LOCALHOST"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "localhost.example.org", ""))


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/sim/advance", {"days": 0}, "days"),
        ("POST", "/sim/advance", {"days": -1}, "days"),
        ("POST", "/sim/advance", {"days": 3650.5}, "days"),
        ("POST", "/sim/advance", {"days": 1e12}, "days"),
        ("POST", "/sim/advance", {"days": 1, "seed": -1}, "seed"),
        ("POST", "/sim/private", {"usernames": ["x"] * 10_001}, "usernames"),
        ("POST", "/sim/delete", {"usernames": ["x" * 65]}, "usernames"),
        ("PUT", "/sim/faults", {"slow_s": 601}, "slow_s"),
        ("PUT", "/sim/faults", {"burst_429": 10**9}, "burst_429"),
        ("PUT", "/sim/faults", {"seed": -5}, "seed"),
        ("GET", "/sim/usernames?limit=100001", None, "limit"),
        ("GET", "/sim/usernames?offset=-1", None, "offset"),
    ],
)
def test_admin_parameters_out_of_bounds_are_400s_naming_the_field(simulator, method, path, body, field):
    response = httpx.request(method, simulator.url + path, json=body, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request" and field in response.json()["message"]


def test_admin_parameters_within_bounds_still_work(simulator):
    assert httpx.post(f"{simulator.url}/sim/advance", json={"days": 1, "seed": 3}, timeout=30).status_code == 200
    listing = httpx.get(f"{simulator.url}/sim/usernames", params={"limit": 100_000}, timeout=10)
    assert listing.status_code == 200 and len(listing.json()["usernames"]) == simulator.population.n_users
    assert httpx.put(f"{simulator.url}/sim/faults", json={"slow_s": 600}, timeout=10).json()["slow_s"] == 600
