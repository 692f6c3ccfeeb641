"""The full-rank item-item path: a closed-form linear autoencoder with a zero diagonal.

EDLAE (Steck 2020, "Autoencoders that don't overfit towards the identity") fits ``B [C, C]`` to
reconstruct the binary profile ``X`` under input dropout ``p`` with ridge ``λ``:

    P = (XᵀX + λ·I + p/(1-p)·diag(XᵀX))⁻¹,    B = -P / diag(P)  (column-wise),  diag(B) = 0.

With ``p = 0`` it is EASE (Steck 2019). The zero diagonal means no show recommends itself, and
the dropout term is the closed-form expectation of denoising: shows seen by many users get more
ridge. A user's scores are ``x B``: at batch 1 a sum of the profile's rows of ``B`` (``n × C``
reads, not a ``C × C`` product), and holding entry ``j`` out subtracts row ``j`` (rank-1), so
explanations stay exact. The cost depends only on the corpus: one ``C³`` inverse.
"""

from __future__ import annotations

import numpy as np


def edlae_weights(gram: np.ndarray, l2: float, dropout: float) -> np.ndarray:
    """Closed-form B from the Gram matrix XᵀX [C, C]: [C, C] float32 with a zero diagonal.

    ``l2`` > 0 is the ridge λ, ``dropout`` in [0, 1) the emphasised-denoising rate p.
    """
    if l2 <= 0 or not 0 <= dropout < 1:
        raise ValueError(f"need l2 > 0 and 0 <= dropout < 1, got l2={l2}, dropout={dropout}")
    gram = np.asarray(gram, np.float64)
    ridge = l2 + dropout / (1.0 - dropout) * np.diag(gram)  # [C]
    system = gram.copy()
    system[np.diag_indices_from(system)] += ridge
    # float32 inversion halves the time of the C³ step; the ridge keeps the system well conditioned.
    precision = np.linalg.inv(system.astype(np.float32))  # P [C, C]
    weights = -precision / np.diag(precision)[None, :]  # B [C, C]
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


def popularity_discount(weights: np.ndarray, counts: np.ndarray, n_users: int, power: float) -> np.ndarray:
    """``B · diag(share^(−power))``: show j's column divided by its training share ``(count_j + 1) /
    (n_users + 1)`` to the ``power``. [C, C] float32 (any [..., C] whose columns are shows, e.g.
    the scores ``x B``, is discounted alike).

    Each column of ``B`` is the regression that predicts one show, and the popular shows' columns
    are fitted on the most evidence, so ``x B`` leans towards them; the discount, chosen on
    validation users (0 leaves ``B`` as it is), leans back. It is still an item-item matrix with
    a zero diagonal, so serving and explanations see no difference.
    """
    share = (np.asarray(counts, np.float64) + 1.0) / (n_users + 1.0)  # [C]
    return (weights * (share ** -power)[None, :]).astype(np.float32)
