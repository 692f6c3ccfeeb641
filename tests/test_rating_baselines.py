"""The bias and item-kNN rating baselines (`sprout.model.rating_neighbours` and their evaluators):
a 3-user, 3-show case worked by hand, the neighbour lists' invariants against a brute-force
similarity, `neighbour_residual`'s k limit and padding, clamping, and synthetic data where each
method should win."""

from __future__ import annotations

import numpy as np
import pytest

from sprout.dataset.snapshot_format import SplitArrays
from sprout.evaluation.baselines import (
    BiasEvaluator,
    ItemKnnEvaluator,
    ItemMeanEvaluator,
    UserMeanEvaluator,
    global_mean_score,
    standard_baselines,
)
from sprout.evaluation.held_out import held_out_users_from_splits
from sprout.model import rating_neighbours
from test_baselines import make_split
from sprout.model.rating_neighbours import (
    Biases,
    Neighbours,
    fit_biases,
    fit_neighbours,
    neighbour_residual,
    residuals,
    user_biases,
)


# r = 6 + a_u + c_i + interaction, a = (1, 0, -1), c = (1, -1, 0); show 2 of user 2's row and
# the unrated entry (show 0 of user 3, score 0) must be ignored.
HAND = make_split([
    [(0, 9, False), (1, 7, False), (2, 5, False)],
    [(0, 8, False), (1, 6, False), (2, 4, False)],
    [(0, 4, False), (1, 2, False), (2, 9, False)],
    [(0, 0, False)],
])


def hand_biases() -> Biases:
    return fit_biases(HAND.indptr, HAND.items, HAND.scores, 3, item_reg=1.0, user_reg=0.0, iterations=1)


def test_biases_by_hand():
    biases = hand_biases()
    # μ = (9+7+5 + 8+6+4 + 4+2+9) / 9 = 54 / 9 = 6
    assert biases.global_mean == pytest.approx(6.0)
    # pass 1, b_u with b_i = 0 and user_reg 0: u0 (3+1-1)/3 = 1, u1 (2+0-2)/3 = 0, u2 (-2-4+3)/3 = -1
    # b_i = Σ (r - 6 - b_u) / (1 + 3): show 0 (2+2-1)/4 = .75, show 1 (0+0-3)/4 = -.75, show 2 (-2-2+4)/4 = 0
    np.testing.assert_allclose(biases.item_bias, [0.75, -0.75, 0.0])
    assert biases.user_reg == 0.0
    # b_u from the final b_i: u0 (2.25 + 1.75 - 1)/3 = 1, u1 (1.25 + .75 - 2)/3 = 0, u2 (-2.75 - 3.25 + 3)/3 = -1,
    # u3 rated nothing: 0
    user_bias = user_biases(biases, HAND.indptr, HAND.items, HAND.scores)
    np.testing.assert_allclose(user_bias, [1.0, 0.0, -1.0, 0.0])
    owner = np.repeat(np.arange(4), np.diff(HAND.indptr))
    error = residuals(biases, user_bias, owner, HAND.items, HAND.scores)
    # e = r - 6 - b_u - b_i; the unrated entry gets 0
    np.testing.assert_allclose(error, [1.25, 0.75, -2, 1.25, 0.75, -2, -1.75, -2.25, 4, 0])


def test_regularisers_shrink_biases_toward_zero():
    loose = fit_biases(HAND.indptr, HAND.items, HAND.scores, 4, item_reg=0.0, user_reg=0.0, iterations=1)
    tight = fit_biases(HAND.indptr, HAND.items, HAND.scores, 4, item_reg=100.0, user_reg=0.0, iterations=1)
    np.testing.assert_allclose(loose.item_bias, [1.0, -1.0, 0.0, 0.0])  # 3/3, -3/3, 0; show 3 unrated: 0
    assert np.all(np.abs(tight.item_bias[:2]) < 0.05)
    strict_user = Biases(6.0, loose.item_bias, user_reg=3.0)
    # u0: (9-7 + 7-5 + 5-6) / (3 + 3) = 3/6 instead of 3/3
    assert user_biases(strict_user, HAND.indptr, HAND.items, HAND.scores)[0] == pytest.approx(0.5)


def test_alternating_passes_reach_the_ridge_least_squares_solution():
    rng = np.random.default_rng(0)
    n_users, corpus_size = 30, 12
    profiles = [[(int(i), int(rng.integers(1, 11)), False) for i in rng.choice(corpus_size, 6, replace=False)]
                for _ in range(n_users)]
    split = make_split(profiles)
    item_reg, user_reg = 2.0, 3.0
    biases = fit_biases(split.indptr, split.items, split.scores, corpus_size, item_reg=item_reg,
                        user_reg=user_reg, iterations=300)
    # minimise Σ (r - μ - b_u - b_i)² + user_reg Σ b_u² + item_reg Σ b_i² as one stacked least squares
    owner = np.repeat(np.arange(n_users), np.diff(split.indptr))
    design = np.zeros((len(owner), n_users + corpus_size))
    design[np.arange(len(owner)), owner] = 1.0
    design[np.arange(len(owner)), n_users + split.items] = 1.0
    ridge = np.diag(np.r_[np.full(n_users, np.sqrt(user_reg)), np.full(corpus_size, np.sqrt(item_reg))])
    target = np.r_[split.scores - biases.global_mean, np.zeros(n_users + corpus_size)]
    solution = np.linalg.lstsq(np.vstack([design, ridge]), target, rcond=None)[0]
    np.testing.assert_allclose(biases.item_bias, solution[n_users:], atol=1e-6)
    np.testing.assert_allclose(user_biases(biases, split.indptr, split.items, split.scores), solution[:n_users],
                               atol=1e-6)


def test_neighbours_by_hand():
    neighbours = fit_neighbours(HAND.indptr, HAND.items, HAND.scores, hand_biases(), 3, shrinkage=1.0)
    # residual columns over users 0..2 (see test_biases_by_hand): show 0 (1.25, 1.25, -1.75),
    # show 1 (.75, .75, -2.25), show 2 (-2, -2, 4).
    # s01 = (2·1.25·.75 + 1.75·2.25) / sqrt((2·1.25² + 1.75²)(2·.75² + 2.25²)) = 5.8125 / 6.1875 = 31/33,
    # shrunk by (3-1)/(3-1+1) = 2/3; s02 = (-5 - 7)/... < 0 and s12 = (-3 - 9)/... < 0 are dropped.
    assert neighbours.ids.shape == neighbours.similarities.shape == (3, 2)  # M = C - 1: never itself
    assert neighbours.ids.dtype == np.int32 and neighbours.similarities.dtype == np.float32
    assert neighbours.ids.tolist() == [[1, -1], [0, -1], [-1, -1]]
    np.testing.assert_allclose(neighbours.similarities, [[31 / 33 * 2 / 3, 0], [31 / 33 * 2 / 3, 0], [0, 0]],
                               rtol=1e-6)


def test_knn_and_bias_predictions_by_hand():
    held_out = make_split([
        [(0, 9, False), (2, 5, False), (1, 8, True)],  # predict show 1 from shows 0 and 2
        [(0, 9, False), (1, 7, False), (2, 6, True)],  # predict show 2: it has no positive neighbour
    ])
    users = held_out_users_from_splits(held_out, HAND, 3)
    biases = hand_biases()
    neighbours = fit_neighbours(HAND.indptr, HAND.items, HAND.scores, biases, 3, shrinkage=1.0)
    # user 0: b_u = ((9 - 6 - .75) + (5 - 6 - 0)) / (0 + 2) = .625, so the bias prediction of show 1 is
    # 6 + .625 - .75 = 5.875; its one rated neighbour is show 0 with e = 9 - 6 - .625 - .75 = 1.625, so
    # kNN adds s01·1.625 / s01 = 1.625: 7.5.
    # user 1: b_u = ((9 - 6.75) + (7 - 5.25)) / 2 = 2, show 2: 6 + 2 + 0 = 8 from both (empty neighbourhood).
    bias = BiasEvaluator(biases).evaluate(users)
    assert bias["rating_mae"] == pytest.approx((abs(5.875 - 8) + abs(8 - 6)) / 2)
    knn = ItemKnnEvaluator(biases, neighbours, k=20).evaluate(users)
    assert knn["rating_mae"] == pytest.approx((abs(7.5 - 8) + abs(8 - 6)) / 2)
    assert knn["rating_rmse"] == pytest.approx(np.sqrt((0.5**2 + 2**2) / 2))
    assert np.isnan(knn["ndcg@100"]) and np.isnan(bias["recall@20"])


# Show 0's neighbours in similarity order: 3 (.9), 1 (.5), 4 (.3), 2 (.1); show 1's: 0 (.5), then padding.
TABLE = Neighbours(
    ids=np.array([[3, 1, 4, 2], [0, -1, -1, -1], [-1, -1, -1, -1], [0, -1, -1, -1], [0, -1, -1, -1]], np.int32),
    similarities=np.array([[0.9, 0.5, 0.3, 0.1], [0.5, 0, 0, 0], [0, 0, 0, 0], [0.9, 0, 0, 0], [0.3, 0, 0, 0]],
                          np.float32),
)


def test_neighbour_residual_takes_the_first_k_rated_neighbours():
    items = np.array([1, 2, 4])  # rated shows; show 3 (the most similar to 0) is not rated
    error = np.array([1.0, -2.0, 4.0])
    # k = 2 for show 0: shows 1 (.5, e 1) and 4 (.3, e 4) -> (.5 + 1.2) / .8; show 2 is beyond k
    assert neighbour_residual(TABLE, 2, items, error, np.array([0]))[0] == pytest.approx(1.7 / 0.8)
    # k = 3 adds show 2 (.1, e -2): (.5 + 1.2 - .2) / .9
    assert neighbour_residual(TABLE, 3, items, error, np.array([0]))[0] == pytest.approx(1.5 / 0.9)
    # k = 1: show 1 alone
    assert neighbour_residual(TABLE, 1, items, error, np.array([0]))[0] == pytest.approx(1.0)


def test_neighbour_residual_is_zero_without_rated_neighbours_and_vectorised_over_targets():
    items, error = np.array([1, 2, 4]), np.array([1.0, -2.0, 4.0])
    targets = np.array([0, 1, 2, 3, 4, 0])
    out = neighbour_residual(TABLE, 20, items, error, targets)
    assert out.shape == (6,)
    # 1: its neighbour 0 is unrated (padding -1 never counts); 2: no neighbours; 3, 4: neighbour 0 unrated
    np.testing.assert_allclose(out, [(0.5 + 1.2 - 0.2) / 0.9, 0, 0, 0, 0, (0.5 + 1.2 - 0.2) / 0.9])
    # a profile with nothing rated: all zero
    assert not neighbour_residual(TABLE, 20, np.array([], int), np.array([]), targets).any()
    # one user and every show at once is the serving case: it matches one target at a time
    each = [neighbour_residual(TABLE, 2, items, error, np.array([t]))[0] for t in range(5)]
    np.testing.assert_allclose(neighbour_residual(TABLE, 2, items, error, np.arange(5)), each)


def brute_force_similarity(split: SplitArrays, biases: Biases, corpus_size: int, shrinkage: float) -> np.ndarray:
    """s_ij by the definition, one pair at a time over the users who rated both. [C, C]"""
    user_bias = user_biases(biases, split.indptr, split.items, split.scores)
    error = np.full((split.n_users, corpus_size), np.nan)
    owner = np.repeat(np.arange(split.n_users), np.diff(split.indptr))
    rated = split.scores > 0
    error[owner[rated], split.items[rated]] = residuals(biases, user_bias, owner, split.items, split.scores)[rated]
    similarity = np.zeros((corpus_size, corpus_size))
    for i in range(corpus_size):
        for j in range(corpus_size):
            both = ~np.isnan(error[:, i]) & ~np.isnan(error[:, j])
            n = both.sum()
            denominator = np.sqrt((error[both, i] ** 2).sum() * (error[both, j] ** 2).sum())
            if i != j and n >= 2 and denominator > 0:
                similarity[i, j] = (error[both, i] * error[both, j]).sum() / denominator * (n - 1) / (n - 1 + shrinkage)
    return similarity


def random_ratings(rng: np.random.Generator, n_users: int, corpus_size: int, per_user: int) -> SplitArrays:
    """Users rating ``per_user`` random shows 0..10 (0: listed, unrated)."""
    return make_split([[(int(i), int(rng.integers(0, 11)), False)
                        for i in rng.choice(corpus_size, per_user, replace=False)] for _ in range(n_users)])


def test_neighbours_match_the_definition_in_chunks(monkeypatch):
    rng = np.random.default_rng(4)
    corpus_size = 15
    split = random_ratings(rng, 40, corpus_size, 7)
    biases = fit_biases(split.indptr, split.items, split.scores, corpus_size)
    monkeypatch.setattr(rating_neighbours, "NEIGHBOUR_CHUNK_USERS", 7)  # several user chunks
    monkeypatch.setattr(rating_neighbours, "NEIGHBOUR_CHUNK_SHOWS", 4)  # several row blocks
    neighbours = fit_neighbours(split.indptr, split.items, split.scores, biases, corpus_size, shrinkage=5.0, keep=6)
    reference = brute_force_similarity(split, biases, corpus_size, 5.0)
    assert neighbours.ids.shape == (corpus_size, 6)
    for show in range(corpus_size):
        ids, sims = neighbours.ids[show], neighbours.similarities[show]
        valid = ids >= 0
        assert show not in ids  # never its own neighbour
        assert np.all(sims[valid] > 0) and np.all(sims[~valid] == 0)  # positive only; 0 padding
        assert np.all(valid[: valid.sum()])  # padding only at the end
        assert np.all(np.diff(sims[valid]) <= 1e-7)  # most similar first
        np.testing.assert_allclose(sims[valid], reference[show, ids[valid]], rtol=1e-4, atol=1e-6)
        expected = np.sort(reference[show][reference[show] > 0])[::-1][:6]  # the top positive ones
        np.testing.assert_allclose(sims[valid], expected, rtol=1e-4, atol=1e-6)
    assert (neighbours.ids >= 0).any() and (neighbours.ids < 0).any()


def test_shows_with_fewer_than_two_ratings_have_no_neighbours():
    split = make_split([[(0, 8, False), (1, 6, False), (3, 2, False)], [(0, 4, False), (1, 9, False), (2, 0, False)],
                        [(0, 6, False), (1, 3, False)]])
    biases = fit_biases(split.indptr, split.items, split.scores, 4)
    neighbours = fit_neighbours(split.indptr, split.items, split.scores, biases, 4, keep=200)
    assert neighbours.ids.shape == (4, 3)  # M = min(keep, C - 1)
    assert np.all(neighbours.ids[2:] == -1)  # show 2 is unrated, show 3 rated once
    assert not (np.isin(neighbours.ids, [2, 3])).any()


def test_predictions_are_clamped_to_the_score_range():
    # show 0 is rated 2 by everyone, show 1 10: μ = 6, b_0 = -4, b_1 = 4 (no regularisation)
    train = make_split([[(0, 2, False), (1, 10, False)] for _ in range(20)])
    biases = fit_biases(train.indptr, train.items, train.scores, 2, item_reg=0.0, user_reg=0.0)
    np.testing.assert_allclose(biases.item_bias, [-4.0, 4.0])
    users = held_out_users_from_splits(make_split([
        [(0, 6, False), (1, 10, True)],  # b_u = 6 - 2 = 4: 6 + 4 + 4 = 14 -> 10
        [(1, 5, False), (0, 1, True)],  # b_u = 5 - 10 = -5: 6 - 5 - 4 = -3 -> 1
    ]), train, 2)
    assert BiasEvaluator(biases).evaluate(users)["rating_mae"] == pytest.approx(0.0)
    neighbours = fit_neighbours(train.indptr, train.items, train.scores, biases, 2)
    assert ItemKnnEvaluator(biases, neighbours).evaluate(users)["rating_mae"] == pytest.approx(0.0)


def additive_split(rng, user_offset, item_effect, users, per_user, held_out_share, interaction=None) -> SplitArrays:
    """Users rate ``per_user`` random shows at round(5.5 + offset_u + effect_i + interaction_ui + noise)."""
    corpus_size = len(item_effect)
    profiles = []
    for u in range(users):
        shows = rng.choice(corpus_size, per_user, replace=False)
        extra = 0.0 if interaction is None else interaction[u, shows]
        raw = 5.5 + user_offset[u] + item_effect[shows] + extra + rng.normal(0, 0.5, per_user)
        scores = np.clip(np.rint(raw), 1, 10).astype(int)
        profiles.append([(int(s), int(r), bool(rng.random() < held_out_share)) for s, r in zip(shows, scores)])
    return make_split(profiles)


def test_biases_beat_user_and_item_means_when_both_effects_are_strong():
    rng = np.random.default_rng(7)
    corpus_size = 60
    item_effect = rng.normal(0, 1.5, corpus_size)
    train = additive_split(rng, rng.normal(0, 1.5, 300), item_effect, 300, 20, 0.0)
    validation = additive_split(rng, rng.normal(0, 1.5, 100), item_effect, 100, 20, 0.3)
    users = held_out_users_from_splits(validation, train, corpus_size)
    bias = BiasEvaluator.fit(train, corpus_size).evaluate(users)["rating_mae"]
    user_mean = UserMeanEvaluator(global_mean_score(train)).evaluate(users)["rating_mae"]
    item_mean = ItemMeanEvaluator.fit(train, corpus_size).evaluate(users)["rating_mae"]
    assert bias < 0.8 * min(user_mean, item_mean), (bias, user_mean, item_mean)


def test_knn_beats_biases_when_shows_come_in_taste_groups():
    rng = np.random.default_rng(8)
    corpus_size = 40
    group = np.where(np.arange(corpus_size) % 2 == 0, 1.0, -1.0)  # [C] which taste each show serves
    item_effect = rng.normal(0, 0.5, corpus_size)

    def population(users):
        taste = rng.choice([-1.0, 1.0], users)  # [U]: likes even shows and dislikes odd ones, or the reverse
        return taste[:, None] * group[None, :] * 2.0  # [U, C] ±2: biases average it away

    train = additive_split(rng, rng.normal(0, 0.5, 400), item_effect, 400, 16, 0.0, population(400))
    validation = additive_split(rng, rng.normal(0, 0.5, 100), item_effect, 100, 16, 0.3, population(100))
    users = held_out_users_from_splits(validation, train, corpus_size)
    bias = BiasEvaluator.fit(train, corpus_size).evaluate(users)["rating_mae"]
    knn_evaluator = ItemKnnEvaluator.fit(train, corpus_size)
    knn = knn_evaluator.evaluate(users)["rating_mae"]
    assert knn < 0.6 * bias, (knn, bias)
    # same-group shows are the neighbours that were kept (positive similarity)
    ids = knn_evaluator.neighbours.ids
    assert np.all((ids[ids >= 0] % 2) == (np.nonzero(ids >= 0)[0] % 2))


def test_standard_baselines_end_with_bias_and_item_knn():
    rng = np.random.default_rng(3)
    train = random_ratings(rng, 40, 8, 4)
    validation = held_out_users_from_splits(
        make_split([[(0, 7, False), (1, 5, False), (2, 9, True)], [(3, 4, False), (2, 8, True)]]), train, 8)
    evaluators = standard_baselines(train, validation, (1.0, 10.0))
    names = [evaluator.name for evaluator in evaluators]
    assert names[names.index("item_mean") + 1:] == ["bias", "item_knn"]
    for evaluator in evaluators[-2:]:
        assert np.isfinite(evaluator.evaluate(validation)["rating_mae"])
