"""The item co-occurrence (Gram) matrix XᵀX of a split's binary user × show matrix."""

from __future__ import annotations

import numpy as np

from sprout.dataset.features import owners
from sprout.dataset.snapshot_format import SplitArrays

GRAM_CHUNK_USERS = 4096  # dense rows per step while summing XᵀX: bounded memory at any U


def user_weights(sizes: np.ndarray, power: float) -> np.ndarray:
    """Each user's weight in the Gram matrix [U] float64: ``n_u^(-power)``, scaled so that the
    weighted entries add up to the real number of entries (the ridge λ keeps its meaning).

    ``power`` 0 weighs every entry alike; at 0.5 a user listing 400 shows counts 10× one listing 4
    rather than 100×, so a few very long lists do not decide every co-occurrence.
    """
    sizes = np.asarray(sizes, np.float64)
    if power == 0:
        return np.ones_like(sizes)
    raw = np.maximum(sizes, 1.0) ** -power  # [U]
    total = float((raw * sizes).sum())
    return raw * (sizes.sum() / total) if total > 0 else raw


def gram_matrix(train: SplitArrays, corpus_size: int, user_weight_power: float = 0.0) -> np.ndarray:
    """XᵀWX of the binary training matrix X [U_train, C] with W = diag(`user_weights`), summed
    over user chunks. [C, C] float32"""
    weights = np.sqrt(user_weights(np.diff(train.indptr), user_weight_power)).astype(np.float32)  # [U]
    gram = np.zeros((corpus_size, corpus_size), np.float32)
    for start in range(0, train.n_users, GRAM_CHUNK_USERS):
        stop = min(start + GRAM_CHUNK_USERS, train.n_users)
        lo, hi = train.indptr[start], train.indptr[stop]
        dense = np.zeros((stop - start, corpus_size), np.float32)  # [chunk, C]
        rows = owners(train.indptr[start : stop + 1])
        dense[rows, train.items[lo:hi]] = weights[start:stop][rows]
        gram += dense.T @ dense
    return gram
