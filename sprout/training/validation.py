"""Validation during training: held-out users, fold-in entries in, ranking of the rest scored."""

from __future__ import annotations

import numpy as np

from sprout.dataset.snapshot_format import SplitArrays
from sprout.evaluation.metrics import mean_defined, ndcg_at_k
from sprout.training.batches import make_batch
from sprout.training.step import eval_step


def heldout_relevance(split: SplitArrays, rows: np.ndarray, corpus_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense fold-in and held-out masks of ``rows``: ([U, C] bool, [U, C] bool)."""
    fold_in = np.zeros((len(rows), corpus_size), bool)
    held_out = np.zeros((len(rows), corpus_size), bool)
    for out, row in enumerate(rows):
        start, end = split.indptr[row], split.indptr[row + 1]
        items, heldout = split.items[start:end], split.heldout[start:end]
        fold_in[out, items[~heldout]] = True
        held_out[out, items[heldout]] = True
    return fold_in, held_out


def popularity_ndcg(train: SplitArrays, validation: SplitArrays, rows: np.ndarray, corpus_size: int, k: int = 100) -> float:
    """NDCG@k of ranking by training popularity: the bar a model has to clear."""
    counts = np.bincount(train.items, minlength=corpus_size).astype(np.float64)  # [C]
    fold_in, held_out = heldout_relevance(validation, rows, corpus_size)
    scores = np.where(fold_in, -np.inf, counts[None, :])
    return mean_defined(ndcg_at_k(scores, held_out, k))


def validate(graphdef, params, split: SplitArrays, rows: np.ndarray, corpus_size: int, *, batch_size: int,
             huber_delta: float, k: int = 100) -> dict[str, float]:
    """Validation loss (fold-in in, whole profile as target) and NDCG@k of the held-out entries."""
    losses, presences, ratings, ndcgs = [], [], [], []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        batch = make_batch(
            split.indptr, split.items, split.values, split.rated, chunk, None, keep=~split.heldout,
            corpus_size=corpus_size,
        )
        total, presence, rating, logits = eval_step(graphdef, params, batch, huber_delta=huber_delta)
        fold_in, held_out = heldout_relevance(split, chunk, corpus_size)
        scores = np.where(fold_in, -np.inf, np.asarray(logits, np.float64))
        ndcgs.append(ndcg_at_k(scores, held_out, k))
        weight = len(chunk)
        losses.append(float(total) * weight)
        presences.append(float(presence) * weight)
        ratings.append(float(rating) * weight)
    n = max(len(rows), 1)
    return {
        "val/loss": sum(losses) / n,
        "val/presence_loss": sum(presences) / n,
        "val/rating_loss": sum(ratings) / n,
        f"val/ndcg@{k}": mean_defined(np.concatenate(ndcgs)) if ndcgs else float("nan"),
    }
