"""The item co-occurrence (Gram) matrix XᵀX of a split's binary user × show matrix."""

from __future__ import annotations

import numpy as np

from sprout.dataset.features import owners
from sprout.dataset.snapshot_format import SplitArrays

GRAM_CHUNK_USERS = 4096  # dense rows per step while summing XᵀX: bounded memory at any U


def gram_matrix(train: SplitArrays, corpus_size: int) -> np.ndarray:
    """XᵀX of the binary training matrix X [U_train, C], summed over user chunks. [C, C] float32"""
    gram = np.zeros((corpus_size, corpus_size), np.float32)
    for start in range(0, train.n_users, GRAM_CHUNK_USERS):
        stop = min(start + GRAM_CHUNK_USERS, train.n_users)
        lo, hi = train.indptr[start], train.indptr[stop]
        dense = np.zeros((stop - start, corpus_size), np.float32)  # [chunk, C]
        dense[owners(train.indptr[start : stop + 1]), train.items[lo:hi]] = 1.0
        gram += dense.T @ dense
    return gram
