"""Training batches and the first layer over a batch's distinct shows."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from sprout.model.autoencoder import Autoencoder
from sprout.model.config import ModelConfig
from sprout.training.batches import make_batch
from sprout.training.step import preactivation_compact

CONFIG = ModelConfig.tiny()


def profiles(n_users: int, max_items: int, rng):
    lengths = rng.integers(1, 30, n_users)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    items = np.concatenate([rng.choice(max_items, n, replace=False) for n in lengths]).astype(np.int32)
    values = rng.normal(size=len(items)).astype(np.float32)
    return indptr, items, values, rng.random(len(items)) < 0.7


def dense_inputs(batch, corpus: int) -> np.ndarray:
    x = np.zeros((batch.size + 1, 2 * corpus), np.float32)
    shows = batch.input_columns[batch.input_items]
    x[batch.input_users, shows] = 1.0
    x[batch.input_users, corpus + shows] = batch.input_values
    return x[:-1]


def test_batch_targets_hold_every_entry_and_inputs_a_dropped_subset():
    rng = np.random.default_rng(0)
    indptr, items, values, rated = profiles(8, 150, rng)
    rows = np.array([3, 0, 5])
    batch = make_batch(indptr, items, values, rated, rows, rng, corpus_size=CONFIG.corpus_size)
    for out, row in enumerate(rows):
        entries = set(items[indptr[row] : indptr[row + 1]].tolist())
        assert set(batch.target_items[out][batch.target_mask[out]].tolist()) == entries
        kept = batch.input_columns[batch.input_items[batch.input_users == out]]
        assert set(kept.tolist()) <= entries
        # target_kept marks exactly the targets that are among the inputs
        assert set(batch.target_items[out][batch.target_kept[out]].tolist()) == set(kept.tolist())
        assert not (batch.target_kept[out] & ~batch.target_mask[out]).any()
    assert batch.target_rated.sum() == sum(rated[indptr[r] : indptr[r + 1]].sum() for r in rows)


def test_dropout_rate_is_per_sample_within_bounds():
    rng = np.random.default_rng(1)
    indptr = np.arange(0, 200 * 100 + 1, 100)
    items = np.tile(np.arange(100, dtype=np.int32), 200)
    batch = make_batch(indptr, items, np.zeros(len(items), np.float32), np.ones(len(items), bool),
                       np.arange(200), rng, corpus_size=200)
    kept_share = np.bincount(batch.input_users, minlength=201)[:200] / 100
    assert 1 - 0.56 - 0.15 < kept_share.min() and kept_share.max() < 1 - 0.24 + 0.15
    assert 0.5 < kept_share.mean() < 0.7


@pytest.mark.parametrize("max_items", [40, 200], ids=["few distinct shows", "most of the corpus"])
def test_compact_first_layer_equals_the_dense_product(max_items):
    rng = np.random.default_rng(2)
    indptr, items, values, rated = profiles(16, max_items, rng)
    batch = make_batch(indptr, items, values, rated, np.arange(16), rng, corpus_size=CONFIG.corpus_size)
    compact = len(batch.input_columns) < CONFIG.corpus_size
    assert compact == (max_items == 40)
    model = Autoencoder(CONFIG, nnx.Rngs(0))
    got = np.asarray(preactivation_compact(model, batch))
    want = np.asarray(model.preactivation_dense(dense_inputs(batch, CONFIG.corpus_size)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_each_epoch_visits_distinct_users_in_its_own_seeded_order():
    from sprout.training.loop import batch_rows

    n_users, batch_size, per_epoch = 103, 10, 10  # 3 users left out of each epoch
    epochs = [np.concatenate([batch_rows(n_users, batch_size, 7, e * per_epoch + i) for i in range(per_epoch)])
              for e in range(3)]
    for order in epochs:
        assert order.shape == (100,) and len(np.unique(order)) == 100 and order.max() < n_users
    assert not np.array_equal(epochs[0], epochs[1])
    # Drawn once per epoch and shared between its steps: read-only, and the same on a second call.
    rows = batch_rows(n_users, batch_size, 7, 3)
    assert not rows.flags.writeable
    assert np.array_equal(rows, np.random.default_rng([7, 0]).permutation(n_users)[30:40])
