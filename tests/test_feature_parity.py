"""Training/serving parity: a raw profile run through the serving-side feature function gives
exactly the arrays the snapshot holds for that user."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from sprout.dataset.config import DatasetConfig
from sprout.dataset.features import profile_features
from sprout.dataset.snapshot import build_snapshot, load_snapshot
from sprout.malsim.store_loader import load_population
from sprout.malsim.synthetic_population import synthetic_population
from sprout.store import Store


def test_serving_features_equal_the_snapshot_for_every_training_user(tmp_path):
    population = synthetic_population(300, seed=5, n_anime=300)
    with Store.open(tmp_path / "sprout.duckdb") as store:
        load_population(store, population, population.now)
        config = DatasetConfig.tiny(n_validation_users=20, n_test_users=20)
        manifest = build_snapshot(store, tmp_path / "snaps", config, population.now.date())
        snapshot = load_snapshot(tmp_path / "snaps" / manifest.snapshot_id)
        train = snapshot.split("train")
        cutoff = population.now + timedelta(days=1)
        checked = 0
        for row, username in enumerate(train.usernames[:60]):
            entries = [e for e in store.user_entries(username) if e.updated_at < cutoff]
            served = profile_features(
                np.array([0, len(entries)]), np.array([e.anime_id for e in entries]),
                np.array([e.status for e in entries], dtype=object), np.array([e.score for e in entries]),
                snapshot.corpus,
            )
            start, end = train.indptr[row], train.indptr[row + 1]
            want = sorted(zip(train.items[start:end].tolist(), train.values[start:end].tolist(), train.rated[start:end].tolist()))
            got = sorted(zip(served.items.tolist(), served.values.tolist(), served.rated.tolist()))
            assert got == want, username
            assert np.isclose(served.mu[0], train.mu[row]) and np.isclose(served.sigma[0], train.sigma[row])
            checked += 1
    assert checked == 60
