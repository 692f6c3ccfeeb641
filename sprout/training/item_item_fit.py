"""The hybrid's second stage: fit the item-item path, then blend it with the trained deep logits.

Both choices are made on validation users with the evaluator the gate uses:

1. ``B`` in closed form (`sprout.model.item_item.edlae_weights`) from the training split's Gram
   matrix, for each (λ, p) of a small grid; the pair whose ``x B`` ranks validation users best
   wins. Cost: one ``C³`` inverse per pair, independent of the number of users.
   At the chosen pair, each user's weight in the Gram matrix (`sprout.dataset.gram.user_weights`:
   ``n_u^(-power)``) and the discount of popular shows' columns
   (`sprout.model.item_item.popularity_discount`) are chosen together the same way, both 0
   (plain EDLAE) among the candidates.
2. The presence logits become ``a · deep + s · (x B)``; (a, s) is picked from a grid that contains
   the deep path alone (1, 0) and the item-item path alone (0, s), so the blend is never worse on
   validation users than either path by itself.

Training the deep path jointly with ``B`` (a residual on top of a frozen or learned scale) was
measured worse than either path alone on real data: the softmax loss pulls the deep path towards
calibrating the linear scores rather than adding what they miss (docs/design.md §5).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import jax.numpy as jnp
import numpy as np
from flax import nnx

from sprout.dataset.gram import gram_matrix
from sprout.dataset.snapshot_format import SplitArrays
from sprout.evaluation.evaluator import ranking_metrics
from sprout.evaluation.held_out import HeldOutUsers, item_popularity
from sprout.evaluation.model_scores import ranking_quality
from sprout.model.autoencoder import Autoencoder
from sprout.model.config import ModelConfig
from sprout.model.item_item import edlae_weights, popularity_discount

RANKING_METRIC = "ndcg@100"


def _ranked(metrics: dict[str, float]) -> float:
    """NDCG@100 as a sort key: NaN (a broken candidate) ranks below everything."""
    return float(np.nan_to_num(metrics[RANKING_METRIC], nan=-1.0))


@dataclass(frozen=True)
class ItemItemFit:
    weights: np.ndarray  # B [C, C] float32, zero diagonal
    l2: float
    dropout: float
    validation_ndcg: dict[str, float] = field(default_factory=dict)  # "l2=…,p=…" -> NDCG@100
    user_weight_power: float = 0.0  # each training user weighs n_u^(-power) in the Gram matrix
    popularity_power: float = 0.0  # show j's column is divided by its training share^power


def fit_item_item(
    train: SplitArrays, users: HeldOutUsers, l2_grid: tuple[float, ...], dropout_grid: tuple[float, ...]
) -> ItemItemFit:
    """The closed-form B whose ``x B`` has the best validation NDCG@100 (earlier grid point on ties)."""
    gram = gram_matrix(train, users.corpus_size)  # [C, C]
    fold_in = users.fold_in.astype(np.float32)  # [U, C]
    best, best_key, ndcgs = None, -np.inf, {}
    for l2 in l2_grid:
        for dropout in dropout_grid:
            weights = edlae_weights(gram, l2, dropout)
            metrics = ranking_metrics(fold_in @ weights, users)
            ndcgs[f"l2={l2:g},p={dropout:g}"] = metrics[RANKING_METRIC]
            if _ranked(metrics) > best_key:
                best, best_key = (weights, l2, dropout), _ranked(metrics)
    return ItemItemFit(*best, validation_ndcg=ndcgs)


def choose_reweighting(
    train: SplitArrays, users: HeldOutUsers, fit: ItemItemFit, user_powers: tuple[float, ...],
    popularity_powers: tuple[float, ...],
) -> ItemItemFit:
    """``fit`` or, at its (λ, p), the user weighting and popularity discount whose ``x B`` ranks
    ``users`` best (plain EDLAE, then the smaller powers, on ties): one more inverse and one
    scoring product per non-zero user power; a discount only rescales the scores' columns."""
    fold_in = users.fold_in.astype(np.float32)  # [U, C]
    counts = item_popularity(train, users.corpus_size)  # [C]
    best, best_key = fit, max(_ranked({RANKING_METRIC: v}) for v in fit.validation_ndcg.values())
    ndcgs = dict(fit.validation_ndcg)
    for user_power in sorted(set(user_powers) | {0.0}):
        plain = fit.weights if user_power == 0 else edlae_weights(
            gram_matrix(train, users.corpus_size, user_power), fit.l2, fit.dropout
        )
        scores = fold_in @ plain  # [U, C]: a discount of B's columns discounts these columns alike
        for popularity_power in sorted(set(popularity_powers) | {0.0}):
            if user_power == popularity_power == 0:
                continue  # ``fit`` itself
            metrics = ranking_metrics(popularity_discount(scores, counts, train.n_users, popularity_power), users)
            name = f"l2={fit.l2:g},p={fit.dropout:g},power={user_power:g},popularity={popularity_power:g}"
            ndcgs[name] = metrics[RANKING_METRIC]
            if _ranked(metrics) > best_key:
                best_key = _ranked(metrics)
                best = ItemItemFit(
                    popularity_discount(plain, counts, train.n_users, popularity_power), fit.l2, fit.dropout,
                    user_weight_power=user_power, popularity_power=popularity_power,
                )
    return replace(best, validation_ndcg=ndcgs)


def item_item_weights(split: SplitArrays, corpus_size: int, fit: ItemItemFit) -> np.ndarray:
    """``fit``'s every choice (λ, p, user weighting, popularity discount) applied to ``split``:
    the refit on a larger set of users. [C, C] float32"""
    weights = edlae_weights(gram_matrix(split, corpus_size, fit.user_weight_power), fit.l2, fit.dropout)
    return popularity_discount(weights, item_popularity(split, corpus_size), split.n_users, fit.popularity_power)


def choose_entry_threshold(
    train: SplitArrays, users: HeldOutUsers, thresholds: tuple[int, ...], l2: float, dropout: float
) -> tuple[int, dict[str, float]]:
    """The training users' minimum entries whose ``x B`` ranks ``users`` best (smaller on ties),
    and each candidate's validation NDCG@100: short profiles carry co-occurrence signal too, and
    whether they help is measured, not assumed."""
    sizes = np.diff(train.indptr)  # [U] entries kept by the entry rules
    fold_in = users.fold_in.astype(np.float32)
    ndcgs = {}
    for threshold in sorted(set(thresholds)):
        chosen = train.subset(sizes >= threshold)
        if chosen.n_users == 0:
            continue
        weights = edlae_weights(gram_matrix(chosen, users.corpus_size), l2, dropout)
        ndcgs[threshold] = _ranked(ranking_metrics(fold_in @ weights, users))
    best = max(ndcgs, key=lambda t: (ndcgs[t], -t))
    return best, {f"min_entries={t}": v for t, v in ndcgs.items()}


def with_item_item(deep: Autoencoder, config: ModelConfig, weights: np.ndarray) -> Autoencoder:
    """A model of ``config`` (with the item-item path) carrying ``deep``'s trained weights and B."""
    model = Autoencoder(
        config.model_copy(update={"item_item": True, "rating_neighbours": 0, "presence_map": False}), nnx.Rngs(0)
    )
    nnx.update(model, nnx.state(deep, nnx.Param))
    model.item_item.value = jnp.asarray(weights, jnp.float32)
    return model


def set_blend(model: Autoencoder, presence_scale: float, linear_scale: float) -> None:
    model.presence_scale.value = jnp.asarray(presence_scale, jnp.float32)
    model.linear_scale.value = jnp.asarray(linear_scale, jnp.float32)


@dataclass(frozen=True)
class Blend:
    presence_scale: float
    linear_scale: float
    metrics: dict[str, float]  # the chosen blend's validation ranking metrics
    validation_ndcg: dict[str, float]  # "a=…,s=…" -> NDCG@100 of every candidate


def choose_blend(
    model: Autoencoder, users: HeldOutUsers, linear_scales: tuple[float, ...], rating_weight: float
) -> Blend:
    """Set the (presence, linear) scales with the best validation NDCG@100 and describe the choice.

    Candidates: (1, s) for each s (s = 0 is the deep path alone) and (0, s) for s > 0 (B alone).
    """
    candidates = [(1.0, s) for s in linear_scales] + [(0.0, s) for s in linear_scales if s > 0]
    best, best_key, ndcgs = None, -np.inf, {}
    for presence_scale, linear_scale in candidates:
        set_blend(model, presence_scale, linear_scale)
        metrics = ranking_quality(model, users, rating_weight)
        ndcgs[f"a={presence_scale:g},s={linear_scale:g}"] = metrics[RANKING_METRIC]
        if _ranked(metrics) > best_key:
            best, best_key = (presence_scale, linear_scale, metrics), _ranked(metrics)
    set_blend(model, best[0], best[1])
    return Blend(*best, validation_ndcg=ndcgs)
