"""Ranking metrics checked by hand."""

import numpy as np
import pytest

from sprout.evaluation.metrics import mean_defined, ndcg_at_k, recall_at_k, top_k


def test_top_k_orders_by_score_and_breaks_ties_by_index():
    scores = np.array([[0.1, 0.9, 0.5, 0.9]])
    assert top_k(scores, 3).tolist() == [[1, 3, 2]]


def test_recall_divides_by_min_of_k_and_held_out_count():
    scores = np.array([[5, 4, 3, 2, 1.0], [5, 4, 3, 2, 1.0]])
    relevant = np.array([[1, 0, 0, 0, 1], [0, 1, 1, 1, 0]], dtype=bool)
    # user 0: top-2 = {0, 1}, one hit of min(2, 2); user 1: top-2 = {0, 1}: one hit of 2
    assert recall_at_k(scores, relevant, 2).tolist() == [0.5, 0.5]
    # fewer held-out items than K: user 0 finds both within top-5
    assert recall_at_k(scores, relevant, 5).tolist() == [1.0, 1.0]


def test_ndcg_by_hand():
    scores = np.array([[3, 2, 1.0]])
    relevant = np.array([[0, 1, 1]], dtype=bool)
    dcg = 1 / np.log2(3) + 1 / np.log2(4)
    ideal = 1 / np.log2(2) + 1 / np.log2(3)
    assert ndcg_at_k(scores, relevant, 3)[0] == pytest.approx(dcg / ideal)
    perfect = np.array([[1, 2, 3.0]])
    assert ndcg_at_k(perfect, relevant, 3)[0] == pytest.approx(1.0)


def test_excluded_items_never_count():
    scores = np.array([[-np.inf, 1.0, 0.5]])
    relevant = np.array([[True, False, True]])
    assert recall_at_k(scores, relevant, 1)[0] == 0.0


def test_users_without_held_out_items_are_skipped():
    scores = np.array([[1.0, 0.0], [1.0, 0.0]])
    relevant = np.array([[False, False], [True, False]])
    values = ndcg_at_k(scores, relevant, 2)
    assert np.isnan(values[0]) and values[1] == 1.0
    assert mean_defined(values) == 1.0
    assert np.isnan(mean_defined(np.array([np.nan])))
