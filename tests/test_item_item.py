"""The full-rank item-item path: the closed form by hand, its zero diagonal, and its place in the model."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sprout.dataset.gram import gram_matrix
from sprout.evaluation.baselines import ease_weights
from sprout.model.autoencoder import Autoencoder
from sprout.model.config import ModelConfig
from sprout.model.item_item import edlae_weights, popularity_discount


def test_two_show_closed_form_by_hand():
    # For two shows, B[0, 1] = G01 / (G00 + λ + p/(1-p)·G00) and B[1, 0] = G01 / (G11 + λ + p/(1-p)·G11).
    gram = np.array([[4.0, 2.0], [2.0, 3.0]])
    weights = edlae_weights(gram, l2=1.0, dropout=0.5)
    assert weights[0, 1] == pytest.approx(2.0 / (4.0 + 1.0 + 4.0))
    assert weights[1, 0] == pytest.approx(2.0 / (3.0 + 1.0 + 3.0))
    assert weights[0, 0] == weights[1, 1] == 0.0


def test_without_dropout_it_is_ease():
    x = (np.random.default_rng(0).random((40, 12)) < 0.3).astype(np.float64)
    np.testing.assert_allclose(edlae_weights(x.T @ x, 5.0, 0.0), ease_weights(x, 5.0), atol=1e-5)


def test_popularity_discount_by_hand():
    # Show j's column is multiplied by ((count_j + 1) / (n_users + 1))^-power; the diagonal stays 0.
    weights = np.array([[0.0, 0.5, 0.2], [0.4, 0.0, 0.1], [0.3, 0.6, 0.0]], np.float32)
    counts = np.array([7, 1, 3])
    discounted = popularity_discount(weights, counts, n_users=7, power=0.5)
    factors = np.array([(8 / 8) ** -0.5, (2 / 8) ** -0.5, (4 / 8) ** -0.5])  # 1, 2, √2
    np.testing.assert_allclose(discounted, weights * factors[None, :], rtol=1e-6)
    assert discounted[0, 1] == pytest.approx(1.0) and discounted[2, 1] == pytest.approx(1.2)
    np.testing.assert_array_equal(np.diag(discounted), 0.0)
    np.testing.assert_array_equal(popularity_discount(weights, counts, 7, 0.0), weights)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        edlae_weights(np.eye(3), l2=0.0, dropout=0.2)
    with pytest.raises(ValueError):
        edlae_weights(np.eye(3), l2=1.0, dropout=1.0)


def hybrid(seed: int = 0) -> Autoencoder:
    model = Autoencoder(ModelConfig.tiny(corpus_size=30, item_item=True), nnx.Rngs(seed))
    x = (np.random.default_rng(seed).random((50, 30)) < 0.3).astype(np.float64)
    model.item_item.value = jnp.asarray(edlae_weights(x.T @ x, 2.0, 0.3))
    model.presence_scale.value = jnp.asarray(0.0, jnp.float32)  # the item-item path alone
    model.linear_scale.value = jnp.asarray(1.0, jnp.float32)
    return model


def test_no_show_recommends_itself_through_the_item_item_path():
    model = hybrid()
    items = jnp.arange(30)[:, None]  # 30 one-show profiles [30, 1]
    scores = np.asarray(model.linear_scores(items, jnp.ones((30, 1), bool)))  # [30, C]
    np.testing.assert_array_equal(np.diag(scores), 0.0)
    assert np.abs(scores).sum() > 0


def test_sparse_gather_dense_product_and_dense_reference_agree():
    model = hybrid()
    rng = np.random.default_rng(1)
    items = jnp.asarray(np.stack([rng.permutation(30)[:8] for _ in range(3)]))  # [3, 8]
    mask = jnp.asarray(rng.random((3, 8)) < 0.8)
    values = jnp.asarray(rng.normal(size=(3, 8)), jnp.float32)
    gathered = np.asarray(model.linear_scores(items, mask))
    present = np.zeros((3, 30), np.float32)
    for row in range(3):
        present[row, np.asarray(items[row])[np.asarray(mask[row])]] = 1.0
    np.testing.assert_allclose(gathered, present @ np.asarray(model.item_item[...]), rtol=1e-5, atol=1e-5)
    sparse_logits, _ = model(items, values, mask)
    dense_logits, _ = model.forward_dense(model.to_dense(items, values, mask))
    np.testing.assert_allclose(np.asarray(sparse_logits), np.asarray(dense_logits), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(sparse_logits), gathered, rtol=1e-5, atol=1e-5)  # presence scale 0


def test_user_weighting_is_chosen_when_a_few_long_lists_blur_the_co_occurrences():
    """Two taste groups of short lists, plus users who list half the shows at random: weighing
    users by n^-power lets the groups' co-occurrences decide (it won on each of six seeds of this
    setup), and with power 0 alone the choice is plain EDLAE."""
    from test_baselines import make_split

    from sprout.evaluation.held_out import held_out_users_from_splits
    from sprout.training.item_item_fit import choose_reweighting, fit_item_item

    rng = np.random.default_rng(0)
    corpus = 40

    def group_profile(held_out_share: float) -> list[tuple[int, int, bool]]:
        group = int(rng.integers(0, 2))
        items = rng.choice(np.arange(group, corpus, 2), size=4, replace=False)
        return [(int(i), 7, bool(rng.random() < held_out_share)) for i in items]

    noisy = [[(int(i), 7, False) for i in rng.choice(corpus, corpus // 2, replace=False)] for _ in range(20)]
    train = make_split([group_profile(0.0) for _ in range(60)] + noisy)
    validation = make_split([group_profile(0.5) for _ in range(80)])
    users = held_out_users_from_splits(validation, train, corpus, "validation")

    plain = fit_item_item(train, users, (1.0,), (0.25,))
    chosen = choose_reweighting(train, users, plain, (0.0, 1.0), (0.0,))
    assert chosen.user_weight_power == 1.0 and chosen.popularity_power == 0.0
    weighted = "l2=1,p=0.25,power=1,popularity=0"
    assert max(chosen.validation_ndcg.values()) == chosen.validation_ndcg[weighted]
    assert chosen.validation_ndcg[weighted] > plain.validation_ndcg["l2=1,p=0.25"]
    np.testing.assert_allclose(chosen.weights, edlae_weights(gram_matrix(train, corpus, 1.0), 1.0, 0.25))
    unweighted_only = choose_reweighting(train, users, plain, (0.0,), (0.0,))
    assert unweighted_only.user_weight_power == 0.0
    np.testing.assert_array_equal(unweighted_only.weights, plain.weights)


def test_popularity_discount_is_chosen_when_a_show_everyone_lists_crowds_out_the_taste_groups():
    """Show 0 is in most training lists of both taste groups, so ``x B`` puts it first for any
    profile; validation users never list it. Discounting popular columns ranks the users' own
    group first, so a power > 0 wins; the refit applies the same choice to another split's counts."""
    from test_baselines import make_split

    from sprout.evaluation.held_out import held_out_users_from_splits, item_popularity
    from sprout.training.item_item_fit import choose_reweighting, fit_item_item, item_item_weights

    rng = np.random.default_rng(0)
    corpus = 21  # show 0, then two groups: odd and even shows 1..20

    def profile(held_out_share: float, with_popular: bool) -> list[tuple[int, int, bool]]:
        group = int(rng.integers(0, 2))
        items = rng.choice(np.arange(1 + group, corpus, 2), size=4, replace=False)
        entries = [(int(i), 7, bool(rng.random() < held_out_share)) for i in items]
        return [(0, 7, False), *entries] if with_popular else entries

    train = make_split([profile(0.0, rng.random() < 0.8) for _ in range(120)])
    validation = make_split([profile(0.5, False) for _ in range(80)])
    users = held_out_users_from_splits(validation, train, corpus, "validation")

    plain = fit_item_item(train, users, (1.0,), (0.25,))
    chosen = choose_reweighting(train, users, plain, (0.0,), (0.0, 0.5))
    assert chosen.popularity_power == 0.5 and chosen.user_weight_power == 0.0
    discounted = "l2=1,p=0.25,power=0,popularity=0.5"
    assert chosen.validation_ndcg[discounted] > plain.validation_ndcg["l2=1,p=0.25"]
    counts = item_popularity(train, corpus)
    np.testing.assert_allclose(chosen.weights, popularity_discount(plain.weights, counts, train.n_users, 0.5))
    assert (users.fold_in.astype(np.float32) @ plain.weights).argmax(axis=1).tolist().count(0) > 40
    assert (users.fold_in.astype(np.float32) @ chosen.weights).argmax(axis=1).tolist().count(0) < 40

    everyone = train.joined(validation)
    expected = popularity_discount(
        edlae_weights(gram_matrix(everyone, corpus), 1.0, 0.25), item_popularity(everyone, corpus), everyone.n_users,
        0.5,
    )
    np.testing.assert_allclose(item_item_weights(everyone, corpus, chosen), expected, rtol=1e-5)
    assert choose_reweighting(train, users, plain, (0.0,), (0.0,)).popularity_power == 0.0

