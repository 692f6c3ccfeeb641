"""Incoming profiles: the training entry rules, ignored reasons, duplicates, and the contract."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from sprout.dataset.corpus import Corpus
from sprout.dataset.features import normalise, user_stats
from sprout.inference.errors import InferenceError, InvalidProfile, ProfileTooLarge
from sprout.inference.profile import prepare_profile
from sprout.inference.requests import MAX_PROFILE_ENTRIES, ExplainRequest, ProfileEntry, RecommendRequest

CORPUS = Corpus(
    anime_ids=np.array([10, 11, 12, 13, 14]),
    counts=np.array([5, 4, 3, 2, 1]),
    titles=("a", "b", "c", "d", "e"),
    media_types=("tv",) * 5,
    genres=((),) * 5,
)


def entry(anime_id: int, score: int = 0, status: str = "completed") -> ProfileEntry:
    return ProfileEntry(anime_id=anime_id, score=score, status=status)


def test_rules_reasons_and_normalisation_match_training():
    profile = prepare_profile(
        [
            entry(12, 8),
            entry(99, 9),  # unknown to the model
            entry(13, 0, "plan_to_watch"),
            entry(14, 0, "on_hold"),  # on hold without a score: dropped by the rule
            entry(10, 6, "on_hold"),  # on hold with a score counts
            entry(11, 0, "dropped"),
        ],
        CORPUS,
    )
    assert profile.items.tolist() == [2, 0, 1]  # input order kept
    assert [(i.anime_id, i.reason) for i in profile.ignored] == [
        (99, "not_in_corpus"), (13, "rule_dropped"), (14, "rule_dropped"),
    ]  # fmt: skip
    mu, sigma = user_stats(np.array([0, 2]), np.array([8, 6]))
    assert (profile.mu, profile.sigma) == pytest.approx((mu[0], sigma[0]))
    assert profile.values[:2] == pytest.approx(normalise(np.array([8.0, 6.0]), mu[0], sigma[0]))
    assert profile.values[2] == pytest.approx(normalise(mu[0] - 1.5 * sigma[0], mu[0], sigma[0]))  # dropped fill
    assert profile.scores.tolist() == [8, 6, 0]
    assert profile.listed.tolist() == [0, 1, 2, 3, 4]  # every listed corpus show, plan-to-watch included
    assert profile.watched.tolist() == [True, False, True, False, True]  # dropped and plan-to-watch are not


def test_duplicates_keep_the_last_listing_deterministically():
    listings = [entry(10, 3), entry(11, 7), entry(10, 9, "dropped"), entry(10, 5, "watching")]
    first, again = prepare_profile(listings, CORPUS), prepare_profile(listings, CORPUS)
    assert first.items.tolist() == again.items.tolist() == [1, 0]
    assert first.scores.tolist() == [7, 5]  # the last listing of show 10 wins
    assert [(i.anime_id, i.reason) for i in first.ignored] == [(10, "duplicate"), (10, "duplicate")]
    assert first.watched[0]  # the last listing (watching) decides


def test_unusable_profiles_are_refused_with_reasons():
    with pytest.raises(InvalidProfile, match="empty"):
        prepare_profile([], CORPUS)
    with pytest.raises(InvalidProfile, match=r"1 rule_dropped, 2 not_in_corpus"):
        prepare_profile([entry(13, 0, "plan_to_watch"), entry(98), entry(99)], CORPUS)
    too_many = [entry(10)] * (MAX_PROFILE_ENTRIES + 1)
    with pytest.raises(ProfileTooLarge, match="5001"):
        prepare_profile(too_many, CORPUS)
    assert issubclass(ProfileTooLarge, InvalidProfile) and issubclass(InvalidProfile, InferenceError)
    assert issubclass(InferenceError, ValueError)
    assert len(prepare_profile([entry(10)] * MAX_PROFILE_ENTRIES, CORPUS).ignored) == MAX_PROFILE_ENTRIES - 1


def test_requests_are_strict():
    ok = RecommendRequest.model_validate_json('{"profile": [{"anime_id": 1}], "rating_weight": 1, "top_k": 5}')
    assert ok.rating_weight == 1.0 and ok.profile[0].score == 0 and ok.profile[0].status == "completed"
    assert ok.hide_unwatched_sequels and not ok.explain and ok.media_types is None
    bad = [
        '{"profile": [], "rating_weight": false}',
        '{"profile": [], "rating_weight": 1.5}',
        '{"profile": [], "niche_boost": -0.1}',
        '{"profile": [], "top_k": 0}',
        '{"profile": [], "top_k": 501}',
        '{"profile": [], "top_k": "5"}',
        '{"profile": [], "hide_unwatched_sequels": 1}',
        '{"profile": [], "unknown": 1}',
        '{"profile": [{"anime_id": "1"}]}',
        '{"profile": [{"anime_id": 1, "score": 11}]}',
        '{"profile": [{"anime_id": 1, "status": "reading"}]}',
        '{"profile": [{"anime_id": 1, "extra": 0}]}',
        '{"profile": [{"anime_id": 99999999999}]}',
    ]
    for text in bad:
        with pytest.raises(ValidationError):
            RecommendRequest.model_validate_json(text)
    with pytest.raises(ValidationError):
        ExplainRequest.model_validate_json('{"profile": [], "explain": true}')  # explain has no such field
    # the schema itself accepts any profile length: the engine answers 413 for too many
    big = RecommendRequest(profile=[entry(1)] * (MAX_PROFILE_ENTRIES + 1))
    assert len(big.profile) == MAX_PROFILE_ENTRIES + 1
    assert all("description" in f for f in RecommendRequest.model_json_schema()["properties"].values())
