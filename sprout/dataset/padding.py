"""Padding helpers for CSR users: bucketed sizes (few compiled shapes) and entry gathering."""

from __future__ import annotations

import numpy as np


def bucket(n: int, minimum: int = 64) -> int:
    """The next power of two ≥ n (and ≥ minimum): a small set of compiled shapes."""
    return max(minimum, 1 << max(0, int(n - 1).bit_length()))


def gather_rows(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry positions of ``rows`` in CSR order and the batch row of each. ([n], [n])"""
    starts, ends = indptr[rows], indptr[rows + 1]
    lengths = ends - starts  # [B]
    row_of_entry = np.repeat(np.arange(len(rows), dtype=np.int32), lengths)  # [n]
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + offsets, row_of_entry
