"""The hybrid's rating path: fit a bias baseline and item neighbourhoods, then blend them with
the trained rating head on validation users (`sprout.model.rating_path`).

1. Biases (μ, b_i) and each show's most similar shows (shrunk Pearson correlation of the
   baseline residuals) come from the training users' ratings in closed form, for each
   shrinkage of a small grid (the residual products are shared).
2. For every held-out rated entry of the validation users, the bias baseline, the
   neighbourhood correction (both from the user's fold-in ratings) and the rating head's
   prediction give the blend (β0, β1, β2) with the least absolute error; the shrinkage whose
   blend errs least wins. Then the "will like" curve P(score ≥ the user's mean) is fitted on the
   blended predictions by logistic regression.

`refit_rating_path` replaces the closed-form parts with ones fitted on more users (training and
validation, for the final model) and keeps the blend and curve chosen on validation.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from sprout.dataset.snapshot_format import SplitArrays
from sprout.evaluation.held_out import HeldOutUsers
from sprout.evaluation.model_scores import held_out_rating_components, model_scores
from sprout.model.autoencoder import Autoencoder
from sprout.model.config import ModelConfig
from sprout.model.rating_neighbours import Biases, Neighbours, fit_biases, ranked_neighbours, similarity_products
from sprout.model.rating_path import NEIGHBOURS_ALONE, RatingPath, blend_ratings, fit_blend, fit_like_curve


def fitted_parts(train: SplitArrays, corpus_size: int, keep: int, shrinkages: tuple[float, ...] = (100.0,)):
    """Biases of ``train``'s ratings and its neighbour lists at each shrinkage: (Biases, {s: Neighbours})."""
    biases = fit_biases(train.indptr, train.items, train.scores, corpus_size)
    products = similarity_products(train.indptr, train.items, train.scores, biases, corpus_size)
    return biases, {s: ranked_neighbours(products, corpus_size, shrinkage=s, keep=keep) for s in shrinkages}


def with_rating_path(model: Autoencoder, keep: int) -> Autoencoder:
    """A copy of ``model`` with the rating path (its arrays still at their defaults)."""
    copy = Autoencoder(model.config.model_copy(update={"rating_neighbours": keep}), nnx.Rngs(0))
    nnx.update(copy, nnx.state(model))
    return copy


def set_rating_parts(model: Autoencoder, biases: Biases, neighbours: Neighbours) -> None:
    model.rating_global_mean.value = jnp.asarray(biases.global_mean, jnp.float32)
    model.rating_item_bias.value = jnp.asarray(biases.item_bias, jnp.float32)
    model.rating_user_reg.value = jnp.asarray(biases.user_reg, jnp.float32)
    model.neighbour_ids.value = jnp.asarray(neighbours.ids, jnp.int32)
    model.neighbour_similarities.value = jnp.asarray(neighbours.similarities, jnp.float32)


def fit_rating_path(
    model: Autoencoder, config: ModelConfig, train: SplitArrays, users: HeldOutUsers, shrinkages: tuple[float, ...]
) -> tuple[Autoencoder, dict[str, float]]:
    """``model`` with a rating path fitted on ``train`` and blended on the validation ``users``;
    also its validation MAE beside the rating head's and the neighbourhood alone's."""
    keep = config.rating_neighbours
    head = model_scores(model, users, ratings=True).ratings  # [U, C] the rating head alone, 1..10
    deep = head[users.rated_users, users.rated_items].astype(np.float64)  # [m]
    actual = users.rated_scores
    biases, by_shrinkage = fitted_parts(train, users.corpus_size, keep, shrinkages)
    best = None
    for shrinkage, neighbours in by_shrinkage.items():
        path = RatingPath(biases, neighbours, config.rating_k, NEIGHBOURS_ALONE)
        baseline, correction = held_out_rating_components(path, users)
        blend = fit_blend(actual, baseline, correction, deep)
        predicted = blend_ratings(blend, baseline, correction, deep)
        error = float(np.abs(predicted - actual).mean()) if len(actual) else float("nan")
        if best is None or error < best[0]:
            best = (error, shrinkage, neighbours, blend, predicted, baseline, correction)
    error, shrinkage, neighbours, blend, predicted, baseline, correction = best
    curve = fit_like_curve(predicted, users.mu[users.rated_users], actual)
    model = with_rating_path(model, keep)
    set_rating_parts(model, biases, neighbours)
    model.rating_blend.value = jnp.asarray(blend, jnp.float32)
    model.like_curve.value = jnp.asarray(curve, jnp.float32)
    knn = blend_ratings(NEIGHBOURS_ALONE, baseline, correction, deep)
    mae = (lambda p: float(np.abs(p - actual).mean()) if len(actual) else float("nan"))  # noqa: E731
    return model, {
        "shrinkage": shrinkage, "blend_offset": float(blend[0]), "blend_neighbours": float(blend[1]),
        "blend_head": float(blend[2]), "like_slope": curve[0], "like_offset": curve[1],
        "validation_mae": error, "validation_mae_head": mae(deep), "validation_mae_neighbours": mae(knn),
    }


def refit_rating_path(model: Autoencoder, users: SplitArrays, shrinkage: float) -> None:
    """Refit the rating path's closed-form parts on ``users`` in place (blend and curve stay)."""
    biases, by_shrinkage = fitted_parts(users, model.config.corpus_size, model.config.rating_neighbours, (shrinkage,))
    set_rating_parts(model, biases, by_shrinkage[shrinkage])
