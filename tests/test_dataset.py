"""Dataset snapshots: hand-computed normalisation, entry rules, splits, and a tiny DuckDB store
whose snapshot is checked row by row."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime

import numpy as np
import pytest

from sprout.dataset import (
    IGNORED_DUPLICATE,
    IGNORED_NOT_IN_CORPUS,
    IGNORED_RULE_DROPPED,
    Corpus,
    DatasetConfig,
    build_snapshot,
    denormalise,
    entry_keep_mask,
    holdout_mask,
    load_snapshot,
    normalise,
    profile_features,
    split_users,
    user_stats,
)
from sprout.dataset.features import STATUS_CODES, normalised_values
from sprout.dataset.snapshot_format import SnapshotError
from sprout.mal.models import AnimeDetails, ListEntry
from sprout.store import Store
from sprout.store.records import UserListWrite

W, C, H, D, P = (STATUS_CODES[s] for s in ("watching", "completed", "on_hold", "dropped", "plan_to_watch"))


def one_user(scores, status=None):
    scores = np.asarray(scores)
    status = np.full(len(scores), C) if status is None else np.asarray(status)
    return np.array([0, len(scores)]), scores, status


# ---- normalisation -------------------------------------------------------------------------


def test_generous_low_variance_rater():
    indptr, scores, _ = one_user([8, 8, 9, 8, 7])
    mu, sigma = user_stats(indptr, scores)
    assert mu[0] == pytest.approx(8.0)
    assert sigma[0] == pytest.approx(math.sqrt(0.4) + 1e-6)  # population std of 0,0,1,0,-1
    # alpha = clip(0.632/2.6) = 0.3; for 9: z = 1/0.6325 = 1.5811, a = 3.5/2.5 = 1.4
    n = normalise(np.array([9, 8, 7]), mu[0], sigma[0])
    assert n == pytest.approx([0.3 * 1.581138 + 0.7 * 1.4, 0.7, -0.3 * 1.581138 + 0.7 * 0.6], abs=1e-5)


def test_objective_rater_centred_near_five():
    indptr, scores, _ = one_user([2, 4, 5, 6, 8])
    mu, sigma = user_stats(indptr, scores)
    assert (mu[0], sigma[0]) == pytest.approx((5.0, 2.0))
    alpha = 2 / 2.6
    n = normalise(np.array([8, 2, 5]), mu[0], sigma[0])
    expected = [alpha * 1.5 + (1 - alpha) * 1.0, -alpha * 1.5 - (1 - alpha) * 1.4, (1 - alpha) * -0.2]
    assert n == pytest.approx(expected, abs=1e-5)


def test_binary_rater_uses_the_alpha_ceiling_and_absolute_clip():
    indptr, scores, _ = one_user([1, 10, 10, 1])
    mu, sigma = user_stats(indptr, scores)
    assert (mu[0], sigma[0]) == pytest.approx((5.5, 4.5))
    # alpha = 0.8; for 10: z = 1, a = clip(1.8, ., 2.0) = 1.8 -> 0.8 + 0.36
    assert normalise(np.array([10, 1]), mu[0], sigma[0]) == pytest.approx([1.16, -1.16])


def test_user_without_scores_gets_the_default_scale():
    mu, sigma = user_stats(np.array([0, 3, 3]), np.array([0, 0, 0]))
    assert mu.tolist() == [5.0, 5.0] and sigma.tolist() == [2.0, 2.0]


def test_extremes_clip():
    # a rater with tiny spread giving one 10: z = 50 clips to 3, a = 1.8
    assert normalise(np.array([10.0]), 5.0, 0.1) == pytest.approx([0.3 * 3 + 0.7 * 1.8])
    assert normalise(np.array([-50.0]), 5.0, 4.0) == pytest.approx([-2.5])


def test_fills_for_unrated_and_unrated_dropped():
    indptr, scores, status = one_user([8, 8, 9, 8, 7, 0, 0], [C, C, C, C, C, W, D])
    values, rated, mu, sigma = normalised_values(indptr, scores, status)
    assert rated.tolist() == [True] * 5 + [False, False]
    assert mu[0] == pytest.approx(8.0)  # fills never shape the stats
    assert values[5] == pytest.approx(0.7, abs=1e-6)  # filled with mu: z = 0, a = 1.0
    # filled with mu - 1.5 sigma = 7.0513: z = -1.5, a = 0.62053
    assert values[6] == pytest.approx(0.3 * -1.5 + 0.7 * (8 - 1.5 * math.sqrt(0.4) - 5.5) / 2.5, abs=1e-5)
    assert values.dtype == np.float32


def test_denormalise_inverts_where_nothing_clipped():
    for raw in ([8, 8, 9, 8, 7], [2, 4, 5, 6, 8], [3, 6, 7, 7, 9, 5]):
        indptr, scores, _ = one_user(raw)
        mu, sigma = user_stats(indptr, scores)
        back = denormalise(normalise(scores, mu[0], sigma[0]), mu[0], sigma[0])
        assert back == pytest.approx(np.asarray(raw, float), abs=1e-6)


def test_denormalise_clamps_to_one_to_ten():
    assert denormalise(np.array([2.5]), 8.0, math.sqrt(0.4)) == pytest.approx([10.0])  # 10.39 unclamped
    assert denormalise(np.array([-2.5]), 5.5, 4.5) == pytest.approx([1.0])  # -4.2 unclamped


# ---- entry rules and profile features ------------------------------------------------------


def test_entry_rules():
    status = np.array([W, C, H, H, D, D, P, P])
    score = np.array([0, 7, 0, 6, 0, 3, 0, 9])
    assert entry_keep_mask(status, score).tolist() == [True, True, False, True, True, True, False, False]


def small_corpus() -> Corpus:
    return Corpus(np.array([30, 10, 20]), np.array([9, 5, 4]), ("c", "a", "b"), ("tv",) * 3, ((),) * 3)


def test_profile_features_on_a_single_profile():
    batch = profile_features(
        np.array([0, 6]),
        np.array([10, 99, 20, 30, 10, 40]),
        np.array(["completed", "completed", "plan_to_watch", "on_hold", "completed", "dropped"]),
        np.array([6, 8, 0, 0, 9, 2]),
        small_corpus(),
    )
    assert batch.indptr.tolist() == [0, 1]
    assert batch.items.tolist() == [1]  # show 10, listed twice: the last listing (score 9) wins
    assert batch.items.dtype == np.int32 and batch.values.dtype == np.float32
    assert batch.scores.tolist() == [9] and batch.rated.tolist() == [True]
    assert batch.mu.tolist() == [9.0]
    reasons = dict(zip(batch.ignored_positions.tolist(), batch.ignored_reasons.tolist()))
    assert reasons == {
        0: IGNORED_DUPLICATE,
        1: IGNORED_NOT_IN_CORPUS,
        2: IGNORED_RULE_DROPPED,
        3: IGNORED_RULE_DROPPED,
        5: IGNORED_NOT_IN_CORPUS,
    }
    assert batch.ignored_counts() == {"rule_dropped": 2, "not_in_corpus": 2, "duplicate": 1}


def test_profile_features_batches_match_single_profiles():
    rng = np.random.default_rng(0)
    sizes = np.array([0, 5, 12, 1])
    indptr = np.concatenate([[0], np.cumsum(sizes)])
    ids = rng.choice([10, 20, 30, 40], indptr[-1])
    status = rng.integers(0, 5, indptr[-1])
    scores = rng.integers(0, 11, indptr[-1])
    whole = profile_features(indptr, ids, status, scores, small_corpus())
    for u in range(len(sizes)):
        rows = slice(indptr[u], indptr[u + 1])
        alone = profile_features(np.array([0, sizes[u]]), ids[rows], status[rows], scores[rows], small_corpus())
        kept = slice(whole.indptr[u], whole.indptr[u + 1])
        assert alone.items.tolist() == whole.items[kept].tolist()
        assert alone.values == pytest.approx(whole.values[kept])
        assert alone.mu[0] == pytest.approx(whole.mu[u])


# ---- splits --------------------------------------------------------------------------------


def test_user_splits_are_disjoint_sized_and_seeded():
    a = split_users(90, 20, 25, seed=1)
    assert (a.assignment == 1).sum() == 20 and (a.assignment == 2).sum() == 25
    assert set(a.users(0)) | set(a.users(1)) | set(a.users(2)) == set(range(90))
    assert np.array_equal(a.assignment, split_users(90, 20, 25, seed=1).assignment)
    assert not np.array_equal(a.assignment, split_users(90, 20, 25, seed=2).assignment)
    with pytest.raises(ValueError, match="at most a third"):
        split_users(30, 11, 5, seed=1)


def test_only_eligible_users_are_held_out_and_everyone_eligible_changes_nothing():
    eligible = np.arange(90) % 3 != 0  # 60 users may be validation or test users
    split = split_users(90, 10, 12, seed=1, eligible=eligible)
    assert not eligible[split.users(1)].any() is True and eligible[split.users(1)].all()
    assert eligible[split.users(2)].all() and len(split.users(2)) == 12
    assert set(np.flatnonzero(~eligible)) <= set(split.users(0))  # the others all train
    every = split_users(90, 20, 25, seed=1, eligible=np.ones(90, bool))
    assert np.array_equal(every.assignment, split_users(90, 20, 25, seed=1).assignment)
    with pytest.raises(ValueError, match="min_evaluation_entries"):
        split_users(90, 21, 5, seed=1, eligible=eligible)


def test_holdout_mask_takes_a_fifth_and_at_least_one():
    sizes = np.array([1, 2, 5, 10, 100, 0])
    indptr = np.concatenate([[0], np.cumsum(sizes)])
    mask = holdout_mask(indptr, 0.2, seed=3)
    per_user = np.bincount(np.repeat(np.arange(len(sizes)), sizes), weights=mask, minlength=len(sizes))
    assert per_user.tolist() == [0, 1, 1, 2, 20, 0]
    assert np.array_equal(mask, holdout_mask(indptr, 0.2, seed=3))
    assert not np.array_equal(mask, holdout_mask(indptr, 0.2, seed=4))


# ---- snapshots from a tiny store -----------------------------------------------------------

SNAPSHOT_DATE = date(2025, 6, 30)
RECENT = datetime(2025, 3, 1, tzinfo=UTC)
OLD = datetime(2023, 1, 1, tzinfo=UTC)  # outside a 365-day window
FUTURE = datetime(2025, 7, 5, tzinfo=UTC)  # after the snapshot date: never read


def entry(anime_id, status, score, at=RECENT):
    return ListEntry(
        anime_id=anime_id, status=status, score=score, num_episodes_watched=0, is_rewatching=False, updated_at=at
    )


LISTS = {
    "alice": [entry(1, "completed", 8), entry(2, "completed", 8), entry(3, "completed", 9),
              entry(4, "on_hold", 0), entry(5, "plan_to_watch", 0), entry(6, "completed", 10),
              entry(7, "completed", 10, FUTURE)],
    "bob": [entry(1, "completed", 7), entry(2, "dropped", 0), entry(3, "watching", 0), entry(6, "completed", 5)],
    "carol": [entry(1, "completed", 10), entry(2, "completed", 1), entry(3, "completed", 4),
              entry(5, "plan_to_watch", 0)],
    "dave": [entry(1, "completed", 6), entry(5, "plan_to_watch", 0), entry(7, "plan_to_watch", 0)],  # too few
    "erin": [entry(i, "completed", 8, OLD) for i in (1, 2, 3, 7)],  # inactive
    "frank": [entry(i, "completed", 8, FUTURE) for i in (1, 2, 3, 8)],  # all after the date
}  # fmt: skip
CONFIG = DatasetConfig.tiny(
    corpus_size=5, min_counted_entries=3, activity_window_days=365, n_validation_users=0, n_test_users=0
)


def make_store(path, lists=LISTS) -> Store:
    store = Store.open(path)
    at = datetime(2025, 7, 10, tzinfo=UTC)
    store.write_user_lists([UserListWrite(name, rows, True, at, at) for name, rows in lists.items()])
    store.upsert_anime(
        [
            AnimeDetails(id=i, title=f"show {i}", rating="rx" if i == 6 else "pg_13", media_type="tv",
                         start_date="2019-04" if i == 1 else None,
                         main_picture={"large": "https://img.example/1l.jpg"} if i == 1 else None)
            for i in range(1, 7)
        ],
        at,
    )
    return store


@pytest.fixture
def store(tmp_path):
    with make_store(tmp_path / "db" / "sprout.duckdb") as store:
        yield store


def test_snapshot_arrays_by_hand(store, tmp_path):
    manifest = build_snapshot(store, tmp_path / "snaps", CONFIG, SNAPSHOT_DATE)
    snap = load_snapshot(tmp_path / "snaps" / manifest.snapshot_id)
    # counts before the date, all users and statuses: 1:5, 2:4, 3:4, 5:3, 6:2 (rx), 7:2 (no metadata), 4:1
    assert snap.corpus.anime_ids.tolist() == [1, 2, 3, 5, 7]
    assert snap.corpus.counts.tolist() == [5, 4, 4, 3, 2]
    assert snap.corpus.titles[:2] == ("show 1", "show 2") and snap.corpus.titles[4] == ""
    assert snap.corpus.years == (2019, None, None, None, None)  # show 7: no metadata
    assert snap.corpus.pictures == ("https://img.example/1l.jpg", None, None, None, None)
    train = snap.split("train")
    assert train.usernames == ("alice", "bob", "carol")  # dave: too few; erin: inactive; frank: future
    assert train.indptr.tolist() == [0, 3, 6, 9]
    assert train.items.tolist() == [0, 1, 2] * 3  # on-hold unrated, plan-to-watch, rx, future rows gone
    assert train.scores.tolist() == [8, 8, 9, 7, 0, 0, 10, 1, 4]
    assert train.rated.tolist() == [True] * 4 + [False] * 2 + [True] * 3
    assert train.mu == pytest.approx([25 / 3, 7.0, 5.0])
    assert train.sigma == pytest.approx([math.sqrt(2 / 9) + 1e-6, 1e-6, math.sqrt(14) + 1e-6])
    # bob rated one show 7: his fill is 7 (-> 0.3*0 + 0.7*0.6) and his dropped fill ~7 - 1.5e-6 (z = -1.5)
    assert train.values[3:6] == pytest.approx([0.42, -0.03, 0.42], abs=1e-5)
    assert train.values[:3] == pytest.approx(normalise(np.array([8, 8, 9]), 25 / 3, math.sqrt(2 / 9) + 1e-6))
    assert train.heldout is None and snap.split("test").n_users == 0
    assert manifest.source["eligible_users"] == 3 and manifest.splits["train"].entries == 9
    assert {p.name for p in (tmp_path / "snaps").iterdir()} == {manifest.snapshot_id}  # no temp left


def test_same_input_same_id_changed_input_new_id(store, tmp_path):
    first = build_snapshot(store, tmp_path / "a", CONFIG, SNAPSHOT_DATE)
    again = build_snapshot(store, tmp_path / "b", CONFIG, SNAPSHOT_DATE)
    reused = build_snapshot(store, tmp_path / "a", CONFIG, SNAPSHOT_DATE)
    assert first.snapshot_id == again.snapshot_id == reused.snapshot_id
    reseeded = CONFIG.model_copy(update={"seed": 1})
    assert build_snapshot(store, tmp_path / "a", reseeded, SNAPSHOT_DATE).snapshot_id != first.snapshot_id
    at = datetime(2025, 7, 11, tzinfo=UTC)
    rx_rescored = [*LISTS["bob"][:-1], entry(6, "completed", 9)]  # rx: outside the snapshot's content
    store.write_user_lists([UserListWrite("bob", rx_rescored, True, at, at)])
    assert build_snapshot(store, tmp_path / "a", CONFIG, SNAPSHOT_DATE).snapshot_id == first.snapshot_id
    rescored = [entry(1, "completed", 6), *LISTS["bob"][1:]]
    store.write_user_lists([UserListWrite("bob", rescored, True, at, at)])
    assert build_snapshot(store, tmp_path / "a", CONFIG, SNAPSHOT_DATE).snapshot_id != first.snapshot_id


def test_snapshot_from_a_path_with_held_out_users(tmp_path):
    lists = {f"user{u:02d}": [entry(i, "completed", (u + i) % 10 + 1) for i in range(1, 8 + u % 5)] for u in range(30)}
    make_store(tmp_path / "db.duckdb", lists).close()
    config = DatasetConfig.tiny(min_counted_entries=3, n_validation_users=5, n_test_users=5)
    manifest = build_snapshot(tmp_path / "db.duckdb", tmp_path / "snaps", config, SNAPSHOT_DATE)
    snap = load_snapshot(tmp_path / "snaps" / manifest.snapshot_id)
    names = [set(snap.split(s).usernames) for s in ("train", "validation", "test")]
    assert [len(n) for n in names] == [20, 5, 5] and set.union(*names) == set(lists)
    assert not (names[0] & names[1]) and not (names[1] & names[2]) and not (names[0] & names[2])
    for split in ("validation", "test"):
        arrays = snap.split(split)
        per_user = np.add.reduceat(arrays.heldout.astype(int), arrays.indptr[:-1])
        assert (per_user >= 1).all() and (per_user < np.diff(arrays.indptr)).all()
        # mu comes from fold-in scores only
        fold_in = np.where(arrays.heldout, 0, arrays.scores)
        mu, _ = user_stats(arrays.indptr, fold_in)
        assert arrays.mu == pytest.approx(mu)
    assert build_snapshot(tmp_path / "db.duckdb", tmp_path / "snaps", config, SNAPSHOT_DATE) == manifest
    with pytest.raises(ValueError, match="at most a third"):
        build_snapshot(tmp_path / "db.duckdb", tmp_path / "x", DatasetConfig.tiny(min_counted_entries=3), SNAPSHOT_DATE)


def test_load_rejects_a_tampered_snapshot(store, tmp_path):
    manifest = build_snapshot(store, tmp_path, CONFIG, SNAPSHOT_DATE)
    folder = tmp_path / manifest.snapshot_id
    users = json.loads((folder / "users.json").read_text())
    users["train"][0] = "mallory"
    (folder / "users.json").write_text(json.dumps(users))
    with pytest.raises(SnapshotError, match="users.json"):
        load_snapshot(folder)


def test_load_rejects_arrays_rewritten_with_a_matching_file_hash(store, tmp_path):
    import hashlib

    manifest = build_snapshot(store, tmp_path, CONFIG, SNAPSHOT_DATE)
    folder = tmp_path / manifest.snapshot_id
    with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["train.values"] = arrays["train.values"] + np.float32(0.5)
    np.savez(folder / "arrays.npz", **arrays)
    data = json.loads((folder / "manifest.json").read_text())
    data["files"]["arrays.npz"] = hashlib.sha256((folder / "arrays.npz").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(SnapshotError, match="content hash"):
        load_snapshot(folder)


def test_the_default_date_is_the_newest_entry_and_too_few_users_says_which_filter(tmp_path):
    from datetime import date, datetime, timezone

    from sprout.dataset.config import DatasetConfig
    from sprout.dataset.snapshot import build_snapshot
    from sprout.mal.models import ListEntry
    from sprout.store import Store

    stamp = datetime(2016, 12, 21, 12, tzinfo=timezone.utc)  # an import's publication date, years ago
    from sprout.store.records import UserListWrite

    with Store.open(tmp_path / "sprout.duckdb") as store:
        names = [f"user{u}" for u in range(30)]
        store.add_users(names, "seed", stamp)
        store.write_user_lists([
            UserListWrite(name, [ListEntry(anime_id=a, status="completed", score=7, num_episodes_watched=1,
                                           is_rewatching=False, updated_at=stamp) for a in range(1 + u % 3, 12 + u % 5)],
                          full=True, fetched_at=stamp, next_due_at=stamp)
            for u, name in enumerate(names)
        ])
    config = DatasetConfig(corpus_size=20, min_counted_entries=5, n_validation_users=3, n_test_users=3)
    first = build_snapshot(tmp_path / "sprout.duckdb", tmp_path / "a", config)
    again = build_snapshot(tmp_path / "sprout.duckdb", tmp_path / "b", config)
    assert first.snapshot_date == "2016-12-21" and first.snapshot_id == again.snapshot_id

    with pytest.raises(ValueError, match="activity window removed 30") as found:
        build_snapshot(tmp_path / "sprout.duckdb", tmp_path / "c", config, date(2026, 11, 28))
    assert "--date" in str(found.value)
    strict = config.model_copy(update={"min_counted_entries": 50})
    with pytest.raises(ValueError, match="min_counted_entries = 50 removed 30"):
        build_snapshot(tmp_path / "sprout.duckdb", tmp_path / "d", strict)


# ---- chunked builds: memory changes, the snapshot does not ----------------------------------


@pytest.fixture(scope="module")
def simulated_store(tmp_path_factory):
    """A few hundred simulated users, some of whom went private."""
    from sprout.malsim.store_loader import load_population
    from sprout.malsim.synthetic_population import synthetic_population

    path = tmp_path_factory.mktemp("simulated") / "sprout.duckdb"
    population = synthetic_population(400, seed=3, n_anime=300)
    with Store.open(path) as store:
        load_population(store, population, population.now)
        withdrawn = population.usernames()[:10]
        store.connection.execute("UPDATE crawl_state SET state = 'private' WHERE username IN (SELECT unnest(?))", [withdrawn])
    return path, population.now.date()


def test_a_chunked_build_is_byte_identical_to_a_single_chunk(simulated_store, tmp_path):
    path, day = simulated_store
    config = DatasetConfig.tiny(corpus_size=120, n_validation_users=40, n_test_users=30)
    whole = build_snapshot(path, tmp_path / "whole", config, day, chunk_rows=10**9)
    assert whole.source["eligible_users"] > 200 and whole.splits["validation"].heldout_entries > 0
    for chunk_rows in (1, 997):  # one user per chunk, and chunks that end mid-way through the data
        chunked = build_snapshot(path, tmp_path / f"chunks-{chunk_rows}", config, day, chunk_rows=chunk_rows)
        assert chunked == whole
        for name in ("arrays.npz", "users.json", "corpus.json", "manifest.json"):
            built = (tmp_path / f"chunks-{chunk_rows}" / chunked.snapshot_id / name).read_bytes()
            assert built == (tmp_path / "whole" / whole.snapshot_id / name).read_bytes(), name


def test_streamed_rows_are_the_rows_a_sorted_query_returns(simulated_store):
    from sprout.dataset.user_rows import read_user_rows

    path, day = simulated_store
    config = DatasetConfig.tiny()
    cutoff = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    with Store.open(path, read_only=True) as store:
        rows = read_user_rows(store.connection, config, cutoff)
        sorted_rows = store.connection.execute(
            "SELECT username, anime_id, score FROM list_entries "
            "WHERE updated_at < ? AND username IN (SELECT unnest(?)) "
            "ORDER BY username, anime_id",  # byte order: Python's string order
            [cutoff, rows.usernames],
        ).fetchnumpy()
    assert rows.usernames == sorted(rows.usernames) and rows.n_rows == len(sorted_rows["anime_id"])
    indptr, anime_ids, _, scores = rows.chunk(0, rows.n_users)
    assert np.array_equal(indptr, rows.indptr)
    assert np.array_equal(anime_ids, sorted_rows["anime_id"]) and np.array_equal(scores, sorted_rows["score"])
    names = np.repeat(np.array(rows.usernames, dtype=object), np.diff(indptr))
    assert names.tolist() == sorted_rows["username"].tolist()
