"""Pure ranking, filter, sequel and explanation functions of the inference engine, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sprout.dataset.corpus import Corpus
from sprout.inference.explanations import (
    entry_impacts,
    most_impactful,
    most_surprising,
    score_shares,
    top_contributors,
)
from sprout.inference.filters import CatalogueIndex, allowed_shows
from sprout.inference.network import length_buckets, row_chunks, sizes_up_to, smallest_fitting
from sprout.inference.ranking import log_scores, niche_strength, popularity_shares, top_candidates
from sprout.inference.sequels import ancestor_table, direct_predecessors, hidden_sequels


def test_niche_strength_is_linear_to_one_half_then_exponential():
    assert niche_strength(0.0) == 0.0
    assert niche_strength(0.3) == pytest.approx(0.3)
    assert niche_strength(0.5) == pytest.approx(0.5)
    assert niche_strength(1.0) == pytest.approx(0.5 + 0.5 * math.exp(4.62 * 0.5))  # 5.537
    assert niche_strength(0.75) == pytest.approx(0.5 + 0.25 * math.exp(4.62 * 0.25))


def test_ranking_score_by_hand():
    popularity = np.array([0.1, 0.5])
    log_p = np.log([0.2, 0.05])
    log_q = np.log([0.9, 0.2])  # the chance the user likes each show
    plain = np.exp(log_scores(log_p, log_q, 0.3, popularity, 0.0))
    assert plain == pytest.approx([0.2 * 0.9**0.7, 0.05 * 0.2**0.7])
    boosted = np.exp(log_scores(log_p, log_q, 0.3, popularity, 0.5))
    assert boosted == pytest.approx(plain * (1 + 0.5 * np.log1p(np.array([0.2 / 0.1, 0.05 / 0.5]))))
    # w = 1 ranks by probability alone, w = 0 by the chance of watching and liking: p · q
    assert np.exp(log_scores(log_p, log_q, 1.0, popularity, 0.0)) == pytest.approx([0.2, 0.05])
    assert np.exp(log_scores(log_p, log_q, 0.0, popularity, 0.0)) == pytest.approx([0.18, 0.01])


def test_popularity_shares_sum_to_one_and_never_zero():
    shares = popularity_shares(np.array([6, 3, 1, 0]))
    assert shares == pytest.approx([0.6, 0.3, 0.1, 0.1])


def test_top_candidates_skip_disallowed_and_break_ties_by_index():
    scores = np.array([0.5, 0.9, 0.9, 0.1, 0.9, 0.7])
    allowed = np.array([True, True, False, True, True, True])
    assert top_candidates(scores, allowed, 3).tolist() == [1, 4, 5]
    assert top_candidates(scores, allowed, 1).tolist() == [1]
    assert top_candidates(scores, allowed, 10).tolist() == [1, 4, 5, 0, 3]
    assert top_candidates(scores, np.zeros(6, bool), 3).tolist() == []


def test_ancestors_follow_chains_and_survive_cycles():
    # 0 <- 1 <- 2 (chain), 3 <-> 4 (cycle), 5 follows 2 and 3
    table = ancestor_table([[], [0], [1], [4], [3], [2, 3]])
    ancestors = [table.ancestors[table.indptr[i] : table.indptr[i + 1]].tolist() for i in range(6)]
    assert ancestors == [[], [0], [0, 1], [4], [3], [0, 1, 2, 3, 4]]
    watched = np.array([True, False, False, True, True, False])
    assert hidden_sequels(table, watched).tolist() == [False, False, True, False, False, True]
    assert not hidden_sequels(table, np.ones(6, bool)).any()
    assert hidden_sequels(table, np.zeros(6, bool)).tolist() == [False, True, True, True, True, True]


def test_direct_predecessors_keep_corpus_shows_only():
    corpus = _corpus()
    mapped = direct_predecessors(corpus.predecessors, corpus.positions)
    assert [m.tolist() for m in mapped] == [[], [0], [1], [], [], []]  # 999 is outside the corpus


def _corpus() -> Corpus:
    return Corpus(
        anime_ids=np.array([10, 11, 12, 13, 14, 15]),
        counts=np.array([50, 40, 30, 20, 10, 5]),
        titles=tuple(f"show {i}" for i in range(6)),
        media_types=("tv", "TV", "movie", None, "ova", "tv"),
        genres=(("Action",), ("Comedy", "action"), (), ("Horror",), ("Romance",), ("Comedy",)),
        predecessors=((), (10,), (11,), (999,), (), ()),
    )


def test_allowed_shows_apply_every_filter():
    index = CatalogueIndex.from_corpus(_corpus())
    nothing = np.zeros(0, np.int64)
    everything = {"listed": nothing, "excluded": nothing, "media_types": None, "genres_excluded": [], "watched": None}
    assert allowed_shows(index, **everything).all()
    assert allowed_shows(index, **everything | {"listed": np.array([0]), "excluded": np.array([4])}).tolist() == [
        False, True, True, True, False, True,
    ]  # fmt: skip
    # media types match case-insensitively; an unknown media type never matches a filter
    assert allowed_shows(index, **everything | {"media_types": ["tv"]}).tolist() == [
        True, True, False, False, False, True,
    ]  # fmt: skip
    assert allowed_shows(index, **everything | {"genres_excluded": ["ACTION", "horror", "unknown"]}).tolist() == [
        False, False, True, False, True, True,
    ]  # fmt: skip
    watched = np.array([True, False, False, False, False, False])
    assert allowed_shows(index, **everything | {"watched": watched}).tolist() == [
        True, True, False, True, True, True,
    ]  # fmt: skip  # 12 follows the unwatched 11; 13's prequel 999 is not in the corpus


def test_corpus_without_predecessors_hides_nothing():
    corpus = _corpus()
    older = Corpus(corpus.anime_ids, corpus.counts, corpus.titles, corpus.media_types, corpus.genres)
    index = CatalogueIndex.from_corpus(older)
    nothing = np.zeros(0, np.int64)
    allowed = allowed_shows(
        index, listed=nothing, excluded=nothing, media_types=None, genres_excluded=[], watched=np.zeros(6, bool)
    )
    assert allowed.all()


def test_contributors_are_the_largest_shares_of_the_score():
    base = np.log([1.0, 2.0])
    held = np.log([[0.7, 2.5], [0.9, 1.0], [0.7, 2.0], [1.2, 1.5]])  # 4 entries, 2 candidates
    shares = score_shares(base, held)  # 1 - held / base
    assert shares == pytest.approx(np.array([[0.3, -0.25], [0.1, 0.5], [0.3, 0.0], [-0.2, 0.25]]))
    contributors = top_contributors(shares)
    assert [[j for j, _ in c] for c in contributors] == [[0, 2, 1], [1, 3]]  # tie 0/2: earlier first
    assert contributors[1][0][1] == pytest.approx(0.5)  # without entry 1 the second score halves
    # impact: mean over candidates of |held - base| / max(held, base)
    assert entry_impacts(base, held).tolist() == pytest.approx([(0.3 + 0.5 / 2.5) / 2, (0.1 + 0.5) / 2,
                                                               0.3 / 2, (0.2 / 1.2 + 0.25) / 2])
    assert entry_impacts(base, held, candidates=1).tolist() == pytest.approx([0.3, 0.1, 0.3, 0.2 / 1.2])
    assert most_impactful(entry_impacts(base, held), count=3).tolist() == [1, 0, 3]
    assert (entry_impacts(base, held) <= 1).all()


def test_most_surprising_ranks_rated_entries_by_gap():
    actual = np.array([9.0, 0.0, 2.0, 7.0, 5.0])
    predicted = np.array([6.0, 9.0, 6.0, 7.5, 8.0])
    rated = actual > 0
    assert most_surprising(actual, predicted, rated).tolist() == [2, 0, 4, 3]  # the unrated entry never
    assert most_surprising(actual, predicted, rated, count=2).tolist() == [2, 0]  # tie 0/4 at 3: earlier first


def test_buckets_and_chunks():
    assert length_buckets(6000) == (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 5000)
    assert length_buckets(39) == (16, 32, 39)
    assert smallest_fitting(17, (16, 32, 39)) == 32
    with pytest.raises(ValueError):
        smallest_fitting(40, (16, 32, 39))
    assert row_chunks(300, (32, 64, 128, 256)) == [(0, 256), (256, 64)]
    assert row_chunks(512, (32, 64, 128, 256)) == [(0, 256), (256, 256)]
    assert row_chunks(3, (32, 64, 128, 256)) == [(0, 32)]
    # no executable for shapes a small corpus can never need
    assert sizes_up_to((32, 64, 128, 256), 39) == (32, 64)
    assert sizes_up_to((32, 64, 128, 256), 5000) == (32, 64, 128, 256)
    assert sizes_up_to((64, 512), 39) == (64,) and sizes_up_to((64, 512), 6000) == (64, 512)
