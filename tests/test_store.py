"""The DuckDB store, on real files: schema migrations, crawl queue, list writes, anime, locking."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from sprout.mal.models import AlternativeTitles, AnimeDetails, AnimeNode, Genre, ListEntry, Picture, RelatedAnime
from sprout.store import (
    LATEST_VERSION,
    ChangeCounts,
    NotADatabase,
    SchemaError,
    Store,
    StoreError,
    StoreLocked,
    UserListWrite,
    UserOutcome,
)
from sprout.store.schema import migrate

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
PROJECT_ROOT = Path(__file__).resolve().parents[1]
ANIME5K = PROJECT_ROOT.parent / "shared" / "data" / "anime-5k"


def entry(anime_id: int, score: int = 0, status: str = "completed", *, updated: datetime = T0, **fields) -> ListEntry:
    return ListEntry(
        anime_id=anime_id,
        status=status,
        score=score,
        num_episodes_watched=fields.pop("episodes", 12),
        is_rewatching=fields.pop("is_rewatching", False),
        updated_at=updated,
        **fields,
    )


def write(username: str, entries: list[ListEntry], *, full: bool, at: datetime = T0) -> UserListWrite:
    return UserListWrite(username, entries, full=full, fetched_at=at, next_due_at=at + 7 * DAY)


def crawl_state(store: Store, username: str) -> dict:
    cursor = store.connection.execute("SELECT * FROM crawl_state WHERE username = ?", [username])
    names = [column[0] for column in cursor.description]
    rows = cursor.fetchall()
    return dict(zip(names, rows[0])) if rows else {}


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path / "db" / "sprout.duckdb") as opened:
        yield opened


# Schema and opening


def test_fresh_file_gets_every_migration(tmp_path: Path):
    path = tmp_path / "nested" / "folder" / "sprout.duckdb"
    with Store.open(path) as store:
        assert store.schema_version() == LATEST_VERSION >= 2
        versions = store.connection.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        tables = {name for (name,) in store.connection.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert [v for (v,) in versions] == list(range(1, LATEST_VERSION + 1))
    assert {"users", "crawl_state", "list_entries", "anime", "anime_relations", "crawl_runs"} <= tables
    assert path.is_file()


def test_reopening_keeps_data_and_applies_nothing_twice(tmp_path: Path):
    path = tmp_path / "sprout.duckdb"
    with Store.open(path) as store:
        store.add_users(["alice"], "seed", T0)
    with Store.open(path) as store:
        assert store.counts()["users"] == 1
        assert store.connection.execute("SELECT count(*) FROM schema_migrations").fetchall()[0][0] == LATEST_VERSION


def test_file_left_at_version_1_is_upgraded(tmp_path: Path):
    path = tmp_path / "old.duckdb"
    connection = duckdb.connect(str(path))
    assert migrate(connection, target=1) == 1
    connection.execute("INSERT INTO users VALUES ('old_timer', TIMESTAMPTZ '2020-01-01 00:00:00+00', 'seed', 1)")
    connection.close()

    with pytest.raises(SchemaError, match="read-write to upgrade"):
        Store.open(path, read_only=True)
    with Store.open(path) as store:
        assert store.schema_version() == LATEST_VERSION
        assert store.counts()["users"] == 1
        store.upsert_anime([AnimeDetails(id=1, title="Now possible")], T0)  # table from migration 2
        assert store.counts()["anime"] == 1


def test_file_from_before_show_pictures_upgrades_in_place_and_keeps_its_rows(tmp_path: Path):
    path = tmp_path / "before-pictures.duckdb"
    connection = duckdb.connect(str(path))
    assert migrate(connection, target=7) == 7
    connection.execute(
        "INSERT INTO anime VALUES (1, 'Kept', 'tv', 'pg_13', '2019-04', 8.25, 10, 1234, 12, ['Action'], NULL, ?)", [T0]
    )
    connection.execute("INSERT INTO anime_relations VALUES (1, 2, 'sequel')")
    connection.execute("INSERT INTO users VALUES ('old_timer', TIMESTAMPTZ '2020-01-01 00:00:00+00', 'seed', 1)")
    connection.close()

    with Store.open(path) as store:
        assert store.schema_version() == LATEST_VERSION
        sql = store.connection.execute
        assert sql("SELECT name FROM schema_migrations WHERE version = 8").fetchall() == [("show pictures",)]
        assert sql(
            "SELECT anime_id, title, media_type, start_date, genres, fetched_at, main_picture FROM anime"
        ).fetchall() == [(1, "Kept", "tv", "2019-04", ["Action"], T0, None)]
        assert store.counts()["users"] == store.counts()["anime_relations"] == 1
        store.upsert_anime([_details(2, "New", main_picture=Picture(medium="https://img.example/2.jpg"))], T0)
        assert sql("SELECT anime_id, main_picture FROM anime ORDER BY anime_id").fetchall() == [
            (1, None), (2, "https://img.example/2.jpg")
        ]


def test_file_from_newer_code_is_refused(tmp_path: Path):
    path = tmp_path / "future.duckdb"
    Store.open(path).close()
    connection = duckdb.connect(str(path))
    connection.execute("INSERT INTO schema_migrations VALUES (?, now(), 'from the future')", [LATEST_VERSION + 1])
    connection.close()
    for read_only in (False, True):
        with pytest.raises(SchemaError, match="newer than this code"):
            Store.open(path, read_only=read_only)


def test_read_only_store_reads(tmp_path: Path):
    path = tmp_path / "sprout.duckdb"
    with Store.open(path) as store:
        store.write_user_lists([write("alice", [entry(1, 8)], full=True)])
    with Store.open(path, read_only=True) as store:
        assert [e.anime_id for e in store.user_entries("alice")] == [1]
        with pytest.raises(duckdb.Error):
            store.add_users(["bob"], "seed", T0)
    with pytest.raises(StoreError, match="no database"):
        Store.open(tmp_path / "missing.duckdb", read_only=True)


def test_file_that_is_not_a_database(tmp_path: Path):
    path = tmp_path / "notes.duckdb"
    path.write_text("these are not the tables you are looking for\n" * 200)
    with pytest.raises(NotADatabase, match="not a DuckDB database"):
        Store.open(path)


_OPEN_IN_CHILD = textwrap.dedent(
    """
    import sys, time
    from sprout.store import Store, StoreLocked
    path, hold_s, wait_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    try:
        store = Store.open(path, wait_s=wait_s)
    except StoreLocked as error:
        print("LOCKED", error)
        sys.exit(3)
    print("OPENED", flush=True)
    time.sleep(hold_s)
    store.close()
    """
)


def _child(path: Path, hold_s: float, wait_s: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _OPEN_IN_CHILD, str(path), str(hold_s), str(wait_s)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_second_process_gets_store_locked(tmp_path: Path):
    path = tmp_path / "sprout.duckdb"
    with Store.open(path):
        child = _child(path, hold_s=0, wait_s=0)
        out, err = child.communicate(timeout=60)
    assert child.returncode == 3, err
    assert "LOCKED" in out and "another process holds the database" in out


def test_open_waits_for_the_other_process(tmp_path: Path):
    path = tmp_path / "sprout.duckdb"
    Store.open(path).close()
    child = _child(path, hold_s=1.5, wait_s=0)
    try:
        assert child.stdout.readline().startswith("OPENED")
        with pytest.raises(StoreLocked, match="another process holds the database"):
            Store.open(path)
        with Store.open(path, wait_s=30) as store:  # the child lets go after 1.5 s
            assert store.schema_version() == LATEST_VERSION
    finally:
        child.communicate(timeout=60)
    assert child.returncode == 0


# Users and the crawl queue


def test_add_users_counts_new_ones_and_leaves_existing_alone(store: Store):
    assert store.add_users(["carol", "alice", "carol"], "seed", T0) == 2
    store.write_user_lists([write("alice", [entry(1)], full=True)])
    assert store.add_users(["alice", "bob"], "recently_online", T0 + DAY) == 1
    assert store.add_users(["alice", "bob"], "recently_online", T0 + DAY) == 0
    sources = dict(store.connection.execute("SELECT username, source FROM users").fetchall())
    assert sources == {"carol": "seed", "alice": "seed", "bob": "recently_online"}
    assert crawl_state(store, "alice")["state"] == "ok"  # not reset to pending
    assert crawl_state(store, "bob")["state"] == "pending"
    assert crawl_state(store, "bob")["next_due_at"] == T0 + DAY


def test_due_users_never_crawled_first_in_discovery_order_then_stalest(store: Store):
    store.add_users(["zed", "amy"], "seed", T0)
    store.add_users(["kim"], "seed", T0 + timedelta(minutes=1))
    store.add_users(["old", "older"], "seed", T0 - DAY)
    store.write_user_lists(
        [
            UserListWrite("old", [entry(1)], full=True, fetched_at=T0 - DAY, next_due_at=T0),
            UserListWrite("older", [entry(1)], full=True, fetched_at=T0 - 2 * DAY, next_due_at=T0),
        ]
    )
    store.add_users(["later"], "seed", T0 + DAY)  # due only tomorrow

    due = store.due_users(T0 + timedelta(hours=1), limit=10)
    assert [u.username for u in due] == ["zed", "amy", "kim", "older", "old"]
    assert due[0].state == "pending" and due[0].high_water_mark is None and due[0].attempts == 0
    assert due[3].state == "ok" and due[3].last_full_refresh_at == T0 - 2 * DAY
    assert [u.username for u in store.due_users(T0 + timedelta(hours=1), limit=2)] == ["zed", "amy"]
    assert "later" in [u.username for u in store.due_users(T0 + DAY, limit=10)]
    assert len(store.due_users(None, limit=10)) == 6  # the schedule ignored

    states = store.user_states(["old", "nobody", "zed"])
    assert [(u.username, u.state, u.high_water_mark) for u in states] == [("old", "ok", T0), ("zed", "pending", None)]


def test_mark_users_keeps_entries_and_counts_failures(store: Store):
    store.write_user_lists([write("alice", [entry(1, 7), entry(2, 9)], full=True)])
    fail = UserOutcome("alice", "error", 503, "upstream down", T0 + DAY, T0 + 2 * DAY)
    store.mark_users([fail])
    store.mark_users([fail])
    state = crawl_state(store, "alice")
    assert (state["state"], state["http_status"], state["attempts"], state["last_error"]) == (
        "error",
        503,
        2,
        "upstream down",
    )
    assert state["last_crawl_at"] == T0 + DAY and state["next_due_at"] == T0 + 2 * DAY

    store.mark_users([UserOutcome("alice", "private", 403, "forbidden", T0 + 3 * DAY, T0 + 30 * DAY)])
    state = crawl_state(store, "alice")
    assert (state["state"], state["attempts"], state["entries"]) == ("private", 0, 2)
    assert [(e.anime_id, e.score) for e in store.user_entries("alice")] == [(1, 7), (2, 9)]

    # Throttled: back to pending without counting as a failure; unknown users get added.
    store.mark_users(
        [
            UserOutcome("alice", "pending", 403, "throttled", T0 + 4 * DAY, T0 + 5 * DAY),
            UserOutcome("ghost", "not_found", 404, "no such user", T0, T0 + 90 * DAY),
        ]
    )
    assert crawl_state(store, "alice")["state"] == "pending"
    assert crawl_state(store, "ghost")["state"] == "not_found"
    assert store.counts()["users"] == 2
    with pytest.raises(ValueError):
        UserOutcome("alice", "ok", 200, None, T0, T0)


# List writes


def test_full_and_incremental_writes_count_exactly(store: Store):
    first = store.write_user_lists(
        [
            write("alice", [entry(1, 7), entry(2, 0, "plan_to_watch"), entry(3, 9)], full=True),
            write("bob", [entry(1, 5)], full=True),
        ]
    )
    assert first == [ChangeCounts(added=3), ChangeCounts(added=1)]

    # Incremental: only what changed since; absent rows stay.
    later = T0 + DAY
    second = store.write_user_lists(
        [write("alice", [entry(2, 6, "watching", updated=later), entry(4, 8, updated=later)], full=False, at=later)]
    )
    assert second == [ChangeCounts(added=1, changed=1, deleted=0)]
    assert [(e.anime_id, e.status, e.score) for e in store.user_entries("alice")] == [
        (1, "completed", 7),
        (2, "watching", 6),
        (3, "completed", 9),
        (4, "completed", 8),
    ]

    # Full: the list as it is now; 3 was removed on MAL, 1 is unchanged, 4 got a start date.
    third = store.write_user_lists(
        [
            write(
                "alice",
                [entry(1, 7), entry(2, 6, "watching", updated=later), entry(4, 8, updated=later, start_date="2024-02")],
                full=True,
                at=later,
            )
        ]
    )
    assert third == [ChangeCounts(added=0, changed=1, deleted=1)]
    assert [e.anime_id for e in store.user_entries("alice")] == [1, 2, 4]
    assert [e.anime_id for e in store.user_entries("bob")] == [1]  # other users untouched
    assert crawl_state(store, "alice")["entries"] == 3
    first_seen = dict(
        store.connection.execute("SELECT anime_id, first_seen_at FROM list_entries WHERE username = 'alice'").fetchall()
    )
    assert first_seen == {1: T0, 2: T0, 4: later}


def test_writing_the_same_lists_again_changes_nothing(store: Store):
    lists = [
        write("alice", [entry(1, 7), entry(2, 0, "dropped", start_date="2019", finish_date="2019-05-03")], full=True),
        write("bob", [], full=True),
    ]
    assert store.write_user_lists(lists) == [ChangeCounts(added=2), ChangeCounts()]
    assert store.write_user_lists(lists) == [ChangeCounts(), ChangeCounts()]
    assert store.write_user_lists([write("alice", lists[0].entries, full=False)]) == [ChangeCounts()]
    assert store.counts()["list_entries"] == 2


def test_every_stored_field_counts_as_a_change(store: Store):
    base = dict(score=5, status="watching", episodes=3, is_rewatching=False, start_date="2020", finish_date=None)
    store.write_user_lists([write("alice", [entry(1, **{**base, "updated": T0})], full=True)])
    variants = [
        {"score": 6},
        {"status": "completed"},
        {"episodes": 4},
        {"is_rewatching": True},
        {"updated": T0 + DAY},
        {"start_date": "2020-01"},
        {"finish_date": "2021"},
    ]
    current = {**base, "updated": T0}
    for variant in variants:
        current = {**current, **variant}
        counts = store.write_user_lists([write("alice", [entry(1, **current)], full=False)])
        assert counts == [ChangeCounts(changed=1)], variant
    stored = store.user_entries("alice")[0]
    assert (stored.score, stored.status, stored.num_episodes_watched, stored.is_rewatching) == (6, "completed", 4, True)
    assert (stored.start_date, stored.finish_date, stored.updated_at) == ("2020-01", "2021", T0 + DAY)


def test_repeated_anime_id_in_one_write_last_wins(store: Store):
    counts = store.write_user_lists([write("alice", [entry(1, 3), entry(2, 4), entry(1, 9)], full=True)])
    assert counts == [ChangeCounts(added=2)]
    assert [(e.anime_id, e.score) for e in store.user_entries("alice")] == [(1, 9), (2, 4)]


def test_two_writes_for_one_user_in_one_call_apply_in_order(store: Store):
    counts = store.write_user_lists(
        [write("alice", [entry(1, 3), entry(2, 4)], full=True), write("alice", [entry(2, 5)], full=True)]
    )
    assert counts == [ChangeCounts(added=2), ChangeCounts(changed=1, deleted=1)]
    assert [(e.anime_id, e.score) for e in store.user_entries("alice")] == [(2, 5)]


def test_crawl_state_after_writes_and_high_water_mark(store: Store):
    store.add_users(["alice"], "seed", T0 - DAY)
    newest = T0 - timedelta(hours=2)
    store.write_user_lists([write("alice", [entry(1, updated=newest), entry(2, updated=newest - DAY)], full=True)])
    state = crawl_state(store, "alice")
    assert (state["state"], state["http_status"], state["attempts"], state["last_error"]) == ("ok", 200, 0, None)
    assert state["high_water_mark"] == newest
    assert state["last_full_refresh_at"] == T0 and state["last_crawl_at"] == T0
    assert state["next_due_at"] == T0 + 7 * DAY and state["entries"] == 2

    # An incremental write with only older timestamps never moves the mark back,
    # and does not count as a full refresh.
    later = T0 + DAY
    store.write_user_lists([write("alice", [entry(3, updated=newest - 5 * DAY)], full=False, at=later)])
    state = crawl_state(store, "alice")
    assert state["high_water_mark"] == newest
    assert state["last_full_refresh_at"] == T0 and state["last_crawl_at"] == later and state["entries"] == 3

    store.mark_users([UserOutcome("alice", "error", 500, "boom", later, later)])
    store.write_user_lists([write("alice", [entry(4, updated=later)], full=False, at=later + DAY)])
    state = crawl_state(store, "alice")
    assert (state["state"], state["attempts"], state["last_error"], state["high_water_mark"]) == ("ok", 0, None, later)


def test_writes_for_unknown_users_add_them(store: Store):
    store.write_user_lists([write("newcomer", [entry(1)], full=True)])
    assert store.connection.execute("SELECT source, discovered_at FROM users").fetchall() == [("crawl", T0)]
    assert crawl_state(store, "newcomer")["state"] == "ok"


def test_failed_write_leaves_the_store_as_it_was(store: Store):
    store.write_user_lists([write("alice", [entry(1, 7)], full=True), write("bob", [entry(1, 5)], full=True)])
    before_state = crawl_state(store, "alice")
    bad = ListEntry.model_construct(**{**entry(3).model_dump(), "status": "binge_watching"})
    with pytest.raises(duckdb.ConstraintException):
        store.write_user_lists(
            [
                write("alice", [entry(2, 8)], full=True, at=T0 + DAY),  # valid, but in the same call
                write("bob", [entry(1, 6), bad], full=True, at=T0 + DAY),
                write("carol", [entry(1, 1)], full=True, at=T0 + DAY),
            ]
        )
    assert [(e.anime_id, e.score) for e in store.user_entries("alice")] == [(1, 7)]
    assert [(e.anime_id, e.score) for e in store.user_entries("bob")] == [(1, 5)]
    assert crawl_state(store, "alice") == before_state
    assert store.counts()["users"] == 2
    # The store still works afterwards.
    assert store.write_user_lists([write("carol", [entry(1, 1)], full=True)]) == [ChangeCounts(added=1)]


def test_naive_datetimes_are_refused(store: Store):
    with pytest.raises(ValueError, match="timezone-aware"):
        store.add_users(["alice"], "seed", datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        store.write_user_lists([UserListWrite("alice", [], True, datetime(2024, 1, 1), T0)])


# Anime metadata and crawl runs


def _details(anime_id: int, title: str, related: dict[int, str] | None = None, **fields) -> AnimeDetails:
    return AnimeDetails(
        id=anime_id,
        title=title,
        related_anime=[
            RelatedAnime(node=AnimeNode(id=other), relation_type=kind) for other, kind in (related or {}).items()
        ],
        **fields,
    )


def test_upsert_anime_replaces_metadata_and_relations(store: Store):
    store.upsert_anime(
        [
            _details(
                1,
                "Show One",
                {2: "sequel", 3: "side_story"},
                genres=[Genre(id=1, name="Action"), Genre(id=8, name="Drama")],
                alternative_titles=AlternativeTitles(synonyms=["S1"], en="Show One EN"),
                media_type="tv",
                rating="pg_13",
                mean=8.25,
                popularity=10,
                num_list_users=123456,
                num_episodes=12,
                start_date="2019-04",
            ),
            _details(2, "Show Two", {1: "prequel"}),
        ],
        T0,
    )
    row = store.connection.execute(
        "SELECT title, genres, media_type, rating, mean, popularity, num_list_users, num_episodes, start_date, "
        "alternative_titles->>'en', fetched_at FROM anime WHERE anime_id = 1"
    ).fetchall()[0]
    assert row == ("Show One", ["Action", "Drama"], "tv", "pg_13", 8.25, 10, 123456, 12, "2019-04", "Show One EN", T0)

    store.upsert_anime([_details(1, "Show One (renamed)", {4: "sequel"})], T0 + DAY)
    relations = store.connection.execute("SELECT * FROM anime_relations ORDER BY anime_id, related_id").fetchall()
    assert relations == [(1, 4, "sequel"), (2, 1, "prequel")]
    assert store.connection.execute("SELECT title, genres FROM anime WHERE anime_id = 1").fetchall() == [
        ("Show One (renamed)", [])
    ]
    assert store.counts()["anime"] == 2


def test_upsert_anime_keeps_the_large_picture_else_the_medium(store: Store):
    pictures = {
        1: Picture(medium="https://img.example/1.jpg", large="https://img.example/1l.jpg"),
        2: Picture(medium="https://img.example/2.jpg"),
        3: Picture(large="https://img.example/3l.jpg"),
        4: Picture(),
        5: None,
    }
    store.upsert_anime([_details(i, f"Show {i}", main_picture=picture) for i, picture in pictures.items()], T0)
    assert store.connection.execute("SELECT anime_id, main_picture FROM anime ORDER BY anime_id").fetchall() == [
        (1, "https://img.example/1l.jpg"), (2, "https://img.example/2.jpg"), (3, "https://img.example/3l.jpg"),
        (4, None), (5, None),
    ]
    store.upsert_anime([_details(1, "Show 1")], T0 + DAY)  # a later answer without a picture clears it
    assert store.connection.execute("SELECT main_picture FROM anime WHERE anime_id = 1").fetchall() == [(None,)]


def test_anime_needing_refresh_most_listed_first(store: Store):
    store.write_user_lists(
        [
            write("alice", [entry(10), entry(20), entry(30), entry(40)], full=True),
            write("bob", [entry(20), entry(30), entry(40)], full=True),
            write("carol", [entry(30), entry(40)], full=True),
        ]
    )
    store.upsert_anime([_details(40, "Fresh")], T0)
    store.upsert_anime([_details(30, "Stale")], T0 - 40 * DAY)
    store.upsert_anime([_details(99, "Listed by nobody")], T0 - 400 * DAY)
    assert store.anime_needing_refresh(T0, timedelta(days=30), limit=10) == [30, 20, 10]
    assert store.anime_needing_refresh(T0, timedelta(days=30), limit=2) == [30, 20]
    assert store.user_entries("carol")[1].title == "Fresh"


def test_crawl_runs_record_params_and_stats_without_secrets(store: Store):
    assert store.last_crawl_run() is None
    store.start_crawl_run("run-1", T0, {"limit": 50, "mal_client_id": "abc123", "nested": {"api_token": "t"}})
    store.finish_crawl_run("run-1", T0 + timedelta(minutes=5), "completed", {"users": 50, "entries": 5000})
    store.start_crawl_run("run-2", T0 + DAY, {"limit": 10})
    run = store.last_crawl_run()
    assert (run.run_id, run.status, run.finished_at) == ("run-2", "running", None)
    done = store.last_crawl_run(status="completed")
    assert done.params == {"limit": 50, "mal_client_id": "***", "nested": {"api_token": "***"}}
    assert done.stats == {"users": 50, "entries": 5000} and done.finished_at == T0 + timedelta(minutes=5)
    assert "abc123" not in str(store.connection.execute("SELECT params FROM crawl_runs").fetchall())


def test_counts_report_every_crawl_state(store: Store):
    store.add_users(["a", "b", "c"], "seed", T0)
    store.write_user_lists([write("a", [entry(1), entry(2)], full=True)])
    store.mark_users([UserOutcome("b", "private", 403, None, T0, T0 + DAY)])
    assert store.counts() == {
        "users": 3,
        "list_entries": 2,
        "anime": 0,
        "anime_relations": 0,
        "crawl_runs": 0,
        "crawl_state": {"pending": 1, "ok": 1, "private": 1, "not_found": 0, "error": 0},
    }


# The anime-5k data set


def test_import_anime5k(tmp_path: Path):
    if not ANIME5K.is_dir():
        pytest.skip(f"{ANIME5K} is absent")
    with Store.open(tmp_path / "sprout.duckdb") as store:
        first = store.import_anime5k(ANIME5K, now=T0)
        assert first["entries"] == 520_609 and first["added"] == 520_609
        assert first["users"] == first["new_users"] == 5_000
        assert first["scored"] == 419_943
        again = store.import_anime5k(ANIME5K, now=T0)
        assert (again["added"], again["changed"], again["deleted"], again["new_users"]) == (0, 0, 0, 0)

        sql = store.connection.execute
        assert sql("SELECT count(*), count(*) FILTER (score > 0) FROM list_entries").fetchall() == [(520_609, 419_943)]
        assert sql("SELECT DISTINCT status, updated_at, is_rewatching FROM list_entries").fetchall() == [
            ("completed", datetime(2016, 12, 21, tzinfo=UTC), False)
        ]
        users = sql("SELECT count(*), min(source), max(source) FROM users").fetchall()
        assert users == [(5_000, "anime-5k", "anime-5k")]
        states = sql(
            "SELECT DISTINCT state, high_water_mark, next_due_at > TIMESTAMPTZ '9000-01-01' FROM crawl_state"
        ).fetchall()
        assert states == [("ok", datetime(2016, 12, 21, tzinfo=UTC), True)]
        assert store.due_users(T0 + 365 * DAY, limit=5) == []
        # Episodes watched = the show's episode count; popularity 1 = the most members.
        assert sql(
            "SELECT count(*) FROM list_entries le JOIN anime a USING (anime_id) "
            "WHERE le.num_episodes_watched <> coalesce(a.num_episodes, 0)"
        ).fetchall() == [(0,)]
        top = sql("SELECT num_list_users FROM anime WHERE popularity = 1").fetchall()[0][0]
        assert top == sql("SELECT max(num_list_users) FROM anime").fetchall()[0][0]
        assert sql("SELECT count(*) FROM anime WHERE rating = 'rx'").fetchall()[0][0] > 0
        assert sql("SELECT count(*) FROM crawl_state WHERE entries <> 0").fetchall()[0][0] == 5_000
