"""Scoring an autoencoder on held-out users: fold-in profile in, ranking and ratings out.

Ranking uses `sprout.model.ranking_score` (the same score the server ranks by). The same
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

from sprout.dataset.features import denormalise, normalise
from sprout.evaluation.evaluator import rating_metrics, ranking_metrics
from sprout.evaluation.held_out import HeldOutUsers
from sprout.model.autoencoder import Autoencoder
from sprout.dataset.padding import bucket, gather_rows
from sprout.model.ranking_score import DEFAULT_RATING_WEIGHT, log_ranking_score


@partial(jax.jit, static_argnames=("graphdef",))
def _forward(graphdef, state, items, values, mask, rating_weight):
    """Sparse fold-in profiles [B, L] -> (log ranking score [B, C], normalised ratings [B, C]) in float32."""
    logits, ratings = nnx.merge(graphdef, state)(items, values, mask)
    log_presence = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    ratings = ratings.astype(jnp.float32)
    return log_ranking_score(log_presence, ratings, rating_weight), ratings


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


@dataclass(frozen=True)
class ModelScores:
    scores: np.ndarray  # [U, C] float32 log ranking score (fold-in items not yet excluded)
    ratings: np.ndarray  # [U, C] float32 predicted score on the 1..10 scale
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
    model_columns: np.ndarray | None = None,
) -> ModelScores:
    """Batched fold-in forward pass of every held-out user.

    ``model_columns`` [C] (see `corpus_columns`) scores a model trained on another corpus: its
    outputs are mapped back onto the split's shows, and shows it does not know can never be
    recommended (score -inf) and get the user's mean as their predicted rating.
    """
    if model_columns is None:
        _check_corpus(model, users)
    graphdef, state = nnx.split(model)
    n_users, corpus_size = users.n_users, users.corpus_size
    scores = np.empty((n_users, corpus_size), np.float32)
    normalised = np.empty((n_users, corpus_size), np.float32)
    known = None if model_columns is None else model_columns >= 0  # [C]
    size = min(batch_size, bucket(n_users, minimum=1))  # few compiled shapes, little padding
    finite = True
    for start in range(0, n_users, size):
        rows = np.arange(start, min(start + size, n_users))
        items, values, mask = fold_in_inputs(users, rows, size, model_columns)
        batch_scores, batch_ratings = (np.asarray(a)[: len(rows)] for a in _forward(graphdef, state, items, values, mask, rating_weight))
        finite = finite and bool(np.isfinite(batch_scores).all() and np.isfinite(batch_ratings).all())
        if model_columns is not None:  # [B, C_model] -> [B, C]
            batch_scores = np.where(known, batch_scores[:, np.maximum(model_columns, 0)], -np.inf)
            mean = normalise(users.mu[rows], users.mu[rows], users.sigma[rows])[:, None]  # [B, 1]: the user's mean
            batch_ratings = np.where(known, batch_ratings[:, np.maximum(model_columns, 0)], mean)
        scores[rows] = batch_scores
        normalised[rows] = batch_ratings
    ratings = denormalise(normalised, users.mu[:, None], users.sigma[:, None]).astype(np.float32)
    return ModelScores(scores=scores, ratings=ratings, finite=finite)


def ranking_quality(
    model: Autoencoder, users: HeldOutUsers, rating_weight: float = DEFAULT_RATING_WEIGHT
) -> dict[str, float]:
    """The ranking metrics of `ranking_metrics` for ``model`` on ``users``: what the gate compares."""
    return ranking_metrics(model_scores(model, users, rating_weight).scores, users)


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
        jax.block_until_ready(_forward(graphdef, state, items, values, mask, rating_weight))
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
        result = model_scores(self.model, users, self.rating_weight, self.batch_size, self.model_columns)
        predicted = result.ratings[users.rated_users, users.rated_items]  # [m]
        return {
            **ranking_metrics(result.scores, users),
            **rating_metrics(predicted, users),
            "finite": 1.0 if result.finite else 0.0,
            "forward_latency_ms": forward_latency_ms(
                self.model, users, self.rating_weight, self.latency_runs, self.model_columns
            ),
        }
