"""Scoring an autoencoder on held-out users: fold-in profile in, ranking and ratings out.

Ranking uses `sprout.model.ranking_score` (the same score the server ranks by) and ratings the
model's rating path when it has one (`sprout.model.rating_path`, as the server does). The same
functions score validation users during training, so training-time and gate NDCG are one number.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sprout.dataset.features import denormalise
from sprout.evaluation.calibration import presence_calibration
from sprout.evaluation.evaluator import rating_metrics, ranking_metrics
from sprout.evaluation.held_out import HeldOutUsers
from sprout.model.autoencoder import Autoencoder
from sprout.dataset.padding import bucket, gather_rows
from sprout.model.ranking_score import DEFAULT_RATING_WEIGHT, log_ranking_score
from sprout.model.rating_path import RatingPath, like_curve_of, log_like


@partial(jax.jit, static_argnames=("graphdef",))
def _forward(graphdef, state, items, values, mask):
    """Sparse fold-in profiles [B, L] -> (log presence [B, C], the rating head's normalised ratings [B, C])."""
    logits, ratings = nnx.merge(graphdef, state)(items, values, mask)
    return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), ratings.astype(jnp.float32)


@partial(jax.jit, static_argnames=("graphdef",))
def _blended(graphdef, state, items, values, mask):
    """Sparse fold-in profiles [B, L] -> the blended presence logits before any presence map [B, C]."""
    model: Autoencoder = nnx.merge(graphdef, state)
    z = model.encode(items, values, mask)
    return model.blend(model.decode_presence(z), model.linear_scores(items, mask)).astype(jnp.float32)


def blended_logits(model: Autoencoder, users: HeldOutUsers, batch_size: int = 256) -> np.ndarray:
    """Every held-out user's blended presence logits from their fold-in profile, before the
    presence map (what the map is fitted on). [U, C] float32"""
    _check_corpus(model, users)
    graphdef, state = nnx.split(model)
    logits = np.empty((users.n_users, users.corpus_size), np.float32)
    size = min(batch_size, bucket(users.n_users, minimum=1))
    for start in range(0, users.n_users, size):
        rows = np.arange(start, min(start + size, users.n_users))
        logits[rows] = np.asarray(_blended(graphdef, state, *fold_in_inputs(users, rows, size)))[: len(rows)]
    return logits


def fold_in_rated(users: HeldOutUsers, row: int, model_columns: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One held-out user's fold-in shows and raw scores [n] (in the model's corpus; unknown shows dropped)."""
    split = users.split
    start, end = split.indptr[row], split.indptr[row + 1]
    kept = ~split.heldout[start:end]
    items, scores = split.items[start:end][kept].astype(np.int64), split.scores[start:end][kept]
    if model_columns is not None:
        items = model_columns[items]
        known = items >= 0
        items, scores = items[known], scores[known]
    return items, scores


def fold_in_inputs(
    users: HeldOutUsers, rows: np.ndarray, batch_size: int, model_columns: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Padded sparse fold-in profiles of ``rows``: items, values, mask [batch_size, L] (L bucketed).

    ``model_columns`` [C] maps the split's corpus onto another model's (-1: a show it does not
    know, left out of its input, as a server would).
    """
    split = users.split
    positions, row_of_entry = gather_rows(split.indptr, rows)  # [n], [n]
    kept = ~split.heldout[positions]
    if model_columns is not None:
        kept &= model_columns[split.items[positions]] >= 0
    positions, row_of_entry = positions[kept], row_of_entry[kept]
    lengths = np.bincount(row_of_entry, minlength=len(rows))  # [B]
    width = bucket(int(lengths.max()) if lengths.size else 1, minimum=16)
    column = np.arange(len(positions)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    items = np.zeros((batch_size, width), np.int32)
    values = np.zeros((batch_size, width), np.float32)
    mask = np.zeros((batch_size, width), bool)
    items[row_of_entry, column] = (split.items if model_columns is None else model_columns[split.items])[positions]
    values[row_of_entry, column] = split.values[positions]
    mask[row_of_entry, column] = True
    return items, values, mask


def held_out_rating_components(path: RatingPath, users: HeldOutUsers) -> tuple[np.ndarray, np.ndarray]:
    """The rating path's bias baseline and neighbourhood correction [m] of every held-out rated
    entry (`users.rated_items`), each from its user's fold-in ratings."""
    baseline = np.empty(len(users.rated_items))
    correction = np.empty(len(users.rated_items))
    by_user = np.argsort(users.rated_users, kind="stable")  # held-out rated entries, grouped by user
    bounds = np.searchsorted(users.rated_users[by_user], np.arange(users.n_users + 1))  # [U + 1]
    for user in range(users.n_users):
        entries = by_user[bounds[user] : bounds[user + 1]]
        if len(entries):
            items, scores = fold_in_rated(users, user)
            baseline[entries], correction[entries] = path.components(items, scores, users.rated_items[entries])
    return baseline, correction


@dataclass(frozen=True)
class ModelScores:
    scores: np.ndarray  # [U, C] float32 log ranking score (fold-in items not yet excluded)
    log_presence: np.ndarray  # [U, C] float32 log presence probability (softmax over the corpus)
    ratings: np.ndarray | None  # [U, C] float32 predicted score on the 1..10 scale (None: not asked for)
    finite: bool  # every output of every user was finite


def _check_corpus(model: Autoencoder, users: HeldOutUsers) -> None:
    if model.config.corpus_size != users.corpus_size:
        raise ValueError(
            f"model corpus size {model.config.corpus_size} differs from the split's {users.corpus_size}"
        )


def corpus_columns(model_ids: np.ndarray, split_ids: np.ndarray) -> np.ndarray:
    """For each show of the split's corpus, its index in the model's corpus, or -1. [C_split]"""
    order = np.argsort(model_ids, kind="stable")
    slot = np.minimum(np.searchsorted(model_ids[order], split_ids), max(len(model_ids) - 1, 0))
    found = len(model_ids) > 0 and model_ids[order][slot] == split_ids
    return np.where(found, order[slot], -1).astype(np.int64)


def model_scores(
    model: Autoencoder, users: HeldOutUsers, rating_weight: float = DEFAULT_RATING_WEIGHT, batch_size: int = 256,
    model_columns: np.ndarray | None = None, ratings: bool = True,
) -> ModelScores:
    """Batched fold-in forward pass of every held-out user.

    ``model_columns`` [C] (see `corpus_columns`) scores a model trained on another corpus: its
    outputs are mapped back onto the split's shows, and shows it does not know can never be
    recommended (score -inf) and get the user's mean as their predicted rating. ``ratings=False``
    skips the predicted ratings where the ranking does not need them (rating weight 1).
    """
    if model_columns is None:
        _check_corpus(model, users)
    graphdef, state = nnx.split(model)
    n_users, corpus_size = users.n_users, users.corpus_size
    with_ratings = ratings or rating_weight < 1.0
    path = RatingPath.of(model) if with_ratings else None
    curve = like_curve_of(model)
    scores = np.empty((n_users, corpus_size), np.float32)
    presence = np.empty((n_users, corpus_size), np.float32)
    predicted = np.empty((n_users, corpus_size), np.float32) if with_ratings else None
    known = None if model_columns is None else model_columns >= 0  # [C]
    size = min(batch_size, bucket(n_users, minimum=1))  # few compiled shapes, little padding
    finite = True
    targets = np.arange(model.config.corpus_size)
    for start in range(0, n_users, size):
        rows = np.arange(start, min(start + size, n_users))
        items, values, mask = fold_in_inputs(users, rows, size, model_columns)
        log_presence, normalised = (np.asarray(a)[: len(rows)] for a in _forward(graphdef, state, items, values, mask))
        finite = finite and bool(np.isfinite(log_presence).all() and np.isfinite(normalised).all())
        mu, sigma = users.mu[rows][:, None], users.sigma[rows][:, None]  # [B, 1]
        batch_ratings = None
        if with_ratings:
            batch_ratings = denormalise(normalised, mu, sigma)  # [B, C_model] the rating head's scores
            if path is not None:
                for offset, row in enumerate(rows):
                    fold_items, fold_scores = fold_in_rated(users, int(row), model_columns)
                    batch_ratings[offset] = path.predict(fold_items, fold_scores, targets, batch_ratings[offset])
            finite = finite and bool(np.isfinite(batch_ratings).all())
        batch_scores = log_presence
        if rating_weight < 1.0:
            batch_scores = log_ranking_score(log_presence, log_like(batch_ratings, mu, curve), rating_weight)
        if model_columns is not None:  # [B, C_model] -> [B, C]
            gather = np.maximum(model_columns, 0)
            batch_scores = np.where(known, batch_scores[:, gather], -np.inf)
            log_presence = np.where(known, log_presence[:, gather], -np.inf)
            if batch_ratings is not None:
                batch_ratings = np.where(known, batch_ratings[:, gather], users.mu[rows][:, None])  # the user's mean
        scores[rows] = batch_scores
        presence[rows] = log_presence
        if predicted is not None:
            predicted[rows] = batch_ratings
    return ModelScores(scores=scores, log_presence=presence, ratings=predicted, finite=finite)


def ranking_quality(
    model: Autoencoder, users: HeldOutUsers, rating_weight: float = DEFAULT_RATING_WEIGHT
) -> dict[str, float]:
    """The ranking metrics of `ranking_metrics` for ``model`` on ``users``: what the gate compares."""
    return ranking_metrics(model_scores(model, users, rating_weight, ratings=False).scores, users)


def forward_latency_ms(
    model: Autoencoder, users: HeldOutUsers, rating_weight: float = DEFAULT_RATING_WEIGHT, runs: int = 7,
    model_columns: np.ndarray | None = None,
) -> float:
    """Median wall time of a batch-1 forward pass (the serving shape) after two warm-up calls.

    The profile is the held-out user with the median fold-in length: a typical request.
    """
    if model_columns is None:
        _check_corpus(model, users)
    graphdef, state = nnx.split(model)
    lengths = users.fold_in.sum(axis=1)  # [U]
    typical = int(np.argsort(lengths, kind="stable")[len(lengths) // 2])
    items, values, mask = fold_in_inputs(users, np.array([typical]), 1, model_columns)
    timings = []
    for run in range(runs + 2):
        began = time.perf_counter()
        jax.block_until_ready(_forward(graphdef, state, items, values, mask))
        if run >= 2:
            timings.append((time.perf_counter() - began) * 1000.0)
    return float(np.median(timings))


@dataclass
class ModelEvaluator:
    """Metrics of an autoencoder, plus ``finite`` (1.0/0.0) and ``forward_latency_ms``."""

    model: Autoencoder
    rating_weight: float = DEFAULT_RATING_WEIGHT
    batch_size: int = 256
    latency_runs: int = 7
    name: str = "model"
    model_columns: np.ndarray | None = None  # [C] for a model of another corpus (see `corpus_columns`)

    def evaluate(self, users: HeldOutUsers) -> dict[str, float]:
        return self.evaluate_with_predictions(users)[0]

    def evaluate_with_predictions(self, users: HeldOutUsers) -> tuple[dict[str, float], np.ndarray]:
        """`evaluate`'s metrics and the predicted ratings [m] of the held-out rated entries."""
        result = model_scores(self.model, users, self.rating_weight, self.batch_size, self.model_columns)
        predicted = result.ratings[users.rated_users, users.rated_items]  # [m]
        return {
            **ranking_metrics(result.scores, users),
            **rating_metrics(predicted, users),
            **presence_calibration(result.log_presence, users.fold_in, users.held_out),
            "finite": 1.0 if result.finite else 0.0,
            "forward_latency_ms": forward_latency_ms(
                self.model, users, self.rating_weight, self.latency_runs, self.model_columns
            ),
        }, predicted
