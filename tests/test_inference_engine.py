"""The recommender on a real (tiny, random-weight) model artifact: ranking, filters, explanations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from inference_helpers import build_artifacts, genres_of, media_type_of, same_answers

from sprout.dataset.features import denormalise
from sprout.inference.engine import Recommender, candidate_log_normaliser
from sprout.inference.errors import InvalidProfile
from sprout.inference.profile import prepare_profile
from sprout.inference.ranking import log_scores
from sprout.inference.requests import ExplainRequest, PredictRequest, ProfileEntry, RecommendRequest
from sprout.model.artifact import read_model_artifact
from sprout.model.rating_path import RatingPath, log_like

ALL = 500  # top_k that returns every allowed show of the tiny corpus

PROFILE = [
    ProfileEntry(anime_id=101, score=9),
    ProfileEntry(anime_id=104, score=4),
    ProfileEntry(anime_id=106, score=0),
    ProfileEntry(anime_id=108, score=7, status="watching"),
    ProfileEntry(anime_id=111, score=10),
    ProfileEntry(anime_id=115, score=2, status="dropped"),
    ProfileEntry(anime_id=117, score=0, status="plan_to_watch"),
    ProfileEntry(anime_id=999, score=8),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_artifacts(tmp_path_factory.mktemp("inference"))[0]


@pytest.fixture(scope="module")
def recommender(folder) -> Recommender:
    return Recommender.load(folder, warmup=False, stage="champion")


def returned(response) -> list[int]:
    return [r.anime_id for r in response.recommendations]


def test_info_describes_the_artifact(recommender, folder):
    info = recommender.info()
    assert info.version == folder.name == recommender.version
    assert info.stage == "champion" and info.metrics == {"ndcg@100": 0.25}
    assert info.corpus_size == len(recommender.corpus) == 39  # the rx show is not in the corpus
    assert info.dataset == recommender.document["dataset"]["content_sha256"] and len(info.dataset) == 64
    assert info.parameters == recommender.document["parameters"] > 0 and info.trained_at


def test_recommend_equals_a_dense_reference_forward(recommender, folder):
    request = RecommendRequest(profile=PROFILE, top_k=10, rating_weight=0.4, hide_unwatched_sequels=False)
    response = recommender.recommend(request)
    model, _ = read_model_artifact(folder)
    profile = prepare_profile(PROFILE, recommender.corpus)
    dense = model.to_dense(
        jnp.asarray(profile.items)[None], jnp.asarray(profile.values)[None], jnp.ones((1, profile.length), bool)
    )
    logits, ratings = model.forward_dense(dense)
    probability = np.asarray(jax.nn.softmax(logits[0]), np.float64)  # [C]
    head = denormalise(np.asarray(ratings[0], np.float64), profile.mu, profile.sigma)  # [C] the rating head
    predicted = RatingPath.of(model).predict(profile.items, profile.scores, np.arange(len(head)), head)  # [C]
    liked = 1 / (1 + np.exp(-(1.2 * (predicted - profile.mu) - 0.1)))  # the model's like curve
    candidates = np.ones(len(probability), bool)
    candidates[profile.listed] = False
    shown = probability / probability[candidates].sum()  # over the shows not in the profile
    score = shown * liked**0.6
    score[profile.listed] = -np.inf
    expected = np.argsort(-score, kind="stable")[:10]
    assert returned(response) == recommender.corpus.anime_ids[expected].tolist()
    got = response.recommendations
    assert [r.score for r in got] == pytest.approx(score[expected], rel=1e-4)
    assert [r.probability for r in got] == pytest.approx(shown[expected], rel=1e-4)
    assert [r.predicted_rating for r in got] == pytest.approx(predicted[expected], rel=1e-4)
    assert not np.allclose(predicted, head)  # the rating path changed the rating head's answer
    assert got[0].title == recommender.corpus.titles[expected[0]]
    assert all(r.contributors is None for r in got)


def test_outputs_are_finite_and_ratings_on_the_one_to_ten_scale(recommender):
    response = recommender.recommend(RecommendRequest(profile=PROFILE, top_k=ALL, hide_unwatched_sequels=False))
    assert len(response.recommendations) == 39 - 7  # every corpus show but the 7 listed ones
    values = np.array([[r.score, r.probability, r.predicted_rating] for r in response.recommendations])
    assert np.isfinite(values).all() and (values[:, :2] > 0).all()
    assert ((values[:, 2] >= 1) & (values[:, 2] <= 10)).all()
    scores = values[:, 0]
    assert (np.diff(scores) <= 0).all()  # best first


def test_ignored_entries_and_profile_shows(recommender):
    profile = [*PROFILE, ProfileEntry(anime_id=101, score=3), ProfileEntry(anime_id=140, score=9)]  # 140 is rx
    response = recommender.recommend(RecommendRequest(profile=profile, top_k=ALL, hide_unwatched_sequels=False))
    assert [(i.anime_id, i.reason) for i in response.ignored] == [
        (101, "duplicate"), (117, "rule_dropped"), (999, "not_in_corpus"), (140, "not_in_corpus"),
    ]  # fmt: skip
    assert not set(returned(response)) & {e.anime_id for e in profile}  # plan-to-watch included
    with pytest.raises(InvalidProfile, match="no usable entries"):
        recommender.recommend(RecommendRequest(profile=[ProfileEntry(anime_id=117, status="plan_to_watch")]))
    with pytest.raises(InvalidProfile, match="empty"):
        recommender.recommend(RecommendRequest(profile=[]))


def test_filters_media_types_genres_and_exclusions(recommender):
    base = RecommendRequest(profile=PROFILE, top_k=ALL, hide_unwatched_sequels=False)
    everything = set(returned(recommender.recommend(base)))
    movies = returned(recommender.recommend(base.model_copy(update={"media_types": ["movie"]})))
    assert movies and set(movies) == {i for i in everything if media_type_of(i) == "movie"}
    no_comedy = returned(recommender.recommend(base.model_copy(update={"genres_excluded": ["Comedy"]})))
    assert set(no_comedy) == {i for i in everything if "Comedy" not in genres_of(i)} != everything
    excluded = sorted(everything)[:3]
    kept = returned(recommender.recommend(base.model_copy(update={"exclude": [*excluded, 424242]})))
    assert set(kept) == everything - set(excluded)


def test_unwatched_sequels_are_hidden(recommender):
    # 111 completed; 112 follows 111; 113 follows 112; 120 follows 119; 130 and 131 follow each other;
    # 125's prequel is outside the corpus.
    request = RecommendRequest(profile=PROFILE, top_k=ALL)
    hidden = set(returned(recommender.recommend(request)))
    shown = set(returned(recommender.recommend(request.model_copy(update={"hide_unwatched_sequels": False}))))
    assert shown - hidden == {113, 120, 130, 131}
    assert {112, 125} <= hidden
    dropped_prequel = [*PROFILE[:4], ProfileEntry(anime_id=111, score=3, status="dropped")]
    response = recommender.recommend(RecommendRequest(profile=dropped_prequel, top_k=ALL))
    assert not {112, 113} & set(returned(response))  # dropped does not count as watched


def test_niche_boost_multiplies_by_the_formula(recommender):
    plain_request = RecommendRequest(profile=PROFILE, top_k=ALL, hide_unwatched_sequels=False)
    plain = {r.anime_id: r for r in recommender.recommend(plain_request).recommendations}
    boosted = recommender.recommend(plain_request.model_copy(update={"niche_boost": 0.8})).recommendations
    counts = recommender.corpus.counts
    share = dict(zip(recommender.corpus.anime_ids.tolist(), counts / counts.sum(), strict=True))
    strength = 0.5 + 0.3 * np.exp(4.62 * 0.3)
    for r in boosted:
        factor = 1 + strength * np.log1p(plain[r.anime_id].probability / share[r.anime_id])
        assert r.score == pytest.approx(plain[r.anime_id].score * factor, rel=1e-6)
    assert [r.anime_id for r in boosted] != list(plain)  # the order changed


def test_rank_one_hold_out_equals_rerunning_without_the_entry(recommender):
    network = recommender.network
    profile = prepare_profile(PROFILE, recommender.corpus)
    columns = np.array([3, 0, 17, 38, 5], np.int32)
    pre, linear = network.encode(profile.items, profile.values)
    whole, _ = network.outputs(pre[None], linear[None])  # [1, C]
    held_presence, held_ratings, own = network.held_out(pre, linear, whole[0], profile.items, profile.values, columns)
    assert held_presence.shape == held_ratings.shape == (profile.length, 5) and own.shape == (profile.length,)
    for j in (0, 3, profile.length - 1):
        keep = np.arange(profile.length) != j
        rerun_pre, rerun_linear = network.encode(profile.items[keep], profile.values[keep])
        log_presence, ratings = network.outputs(rerun_pre[None], rerun_linear[None])
        np.testing.assert_allclose(held_presence[j], log_presence[0, columns], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(held_ratings[j], ratings[0, columns], rtol=1e-4, atol=1e-5)
        assert own[j] == pytest.approx(ratings[0, profile.items[j]], rel=1e-4, abs=1e-5)
    assert not np.allclose(held_presence[0], whole[0, columns])  # holding out changes something


@pytest.mark.parametrize("exact_head", [0, 8, 10_000], ids=["first order throughout", "exact head", "all exact"])
@pytest.mark.parametrize("curved", [True, False], ids=["presence map", "no map"])
def test_first_order_normaliser_changes_only_the_normaliser_and_stays_below_it(recommender, folder, exact_head, curved):
    """The first-order pass gives the exact logit differences between candidates (only each row's
    normaliser is expanded), through the presence map too; without a map (an offset far above
    every logit makes it a shift), by convexity of log-sum-exp, its normaliser is never above the
    exact one, so its log presence is never below; a head holding every show is exact."""
    import jax.numpy as jnp

    from sprout.inference.network import ServingNetwork
    from sprout.model.artifact import read_model_artifact

    model = read_model_artifact(folder)[0]
    assert model.config.presence_map
    if not curved:
        model.presence_map.value = jnp.asarray([1.0, 1.0, 1000.0], jnp.float32)  # F(l) = l - 1000
    exact_network = ServingNetwork(model)
    network = ServingNetwork(model, normaliser="first_order", exact_head=exact_head)
    profile = prepare_profile(PROFILE, recommender.corpus)
    columns = np.array([3, 0, 17, 38, 5], np.int32)
    pre, linear = network.encode(profile.items, profile.values)
    whole, _ = network.outputs(pre[None], linear[None])
    exact = exact_network.held_out(pre, linear, whole[0], profile.items, profile.values, columns)
    approximate = network.held_out(pre, linear, whole[0], profile.items, profile.values, columns)
    differences = lambda presence: presence - presence[:, :1]  # noqa: E731
    np.testing.assert_allclose(differences(approximate[0]), differences(exact[0]), rtol=1e-4, atol=1e-4)
    if not curved:
        assert np.all(approximate[0] >= exact[0] - 1e-4)
    if exact_head >= len(recommender.corpus):
        np.testing.assert_allclose(approximate[0], exact[0], rtol=1e-4, atol=1e-4)
    else:
        assert np.abs(approximate[0] - exact[0]).max() < 0.5  # second order in the hold-out's change
    for got, want in zip(approximate[1:], exact[1:], strict=True):  # ratings are not approximated
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="normaliser"):
        Recommender.load(folder, warmup=False, explain_normaliser="second_order")


def test_explain_sizes_ordering_and_consistency(recommender):
    long_profile = [ProfileEntry(anime_id=i, score=(i * 7) % 11, status="completed") for i in range(101, 129)]
    request = ExplainRequest(profile=long_profile, top_k=5, hide_unwatched_sequels=False)
    explained = recommender.explain(request)
    plain = recommender.recommend(RecommendRequest(**request.model_dump()))
    assert returned(explained) == returned(plain) and len(explained.recommendations) == 5
    for rec in explained.recommendations:
        drops = [c.score_drop for c in rec.contributors]
        assert 1 <= len(drops) <= 3 and all(d > 0 for d in drops) and drops == sorted(drops, reverse=True)
        assert {c.anime_id for c in rec.contributors} <= {e.anime_id for e in long_profile}
    impacts = [i.impact for i in explained.most_impactful]
    assert len(impacts) == 10 and impacts == sorted(impacts, reverse=True) and impacts[-1] > 0
    surprises = explained.most_surprising
    gaps = [abs(s.actual - s.predicted) for s in surprises]
    assert len(surprises) == 10 and gaps == pytest.approx(sorted(gaps, reverse=True))
    rated = {e.anime_id: e.score for e in long_profile if e.score > 0}
    assert all(s.anime_id in rated and s.actual == rated[s.anime_id] and 1 <= s.predicted <= 10 for s in surprises)
    # recommend(explain=True) attaches the same contributors
    with_contributors = recommender.recommend(RecommendRequest(**request.model_dump(), explain=True))
    assert [r.contributors for r in with_contributors.recommendations] == [
        r.contributors for r in explained.recommendations
    ]


def test_contributor_drop_equals_the_score_without_the_entry(recommender):
    """The drop is the score change with the entry removed and the rest of the profile as it was
    (same normalised values: the whole profile's mu and sigma)."""
    request = ExplainRequest(profile=PROFILE, top_k=3, rating_weight=0.5, hide_unwatched_sequels=False)
    explained = recommender.explain(request)
    profile = prepare_profile(PROFILE, recommender.corpus)
    network, popularity = recommender.network, recommender.catalogue.popularity
    pre, linear = network.encode(profile.items, profile.values)
    whole = network.outputs(pre[None], linear[None])[0][0]  # [C] log presence of the whole profile
    normaliser = candidate_log_normaliser(whole, profile.listed)  # scores use p over the non-profile shows
    for top in explained.recommendations:
        show = int(recommender.corpus.positions(np.array([top.anime_id]))[0])
        for contributor in top.contributors:
            keep = profile.items != recommender.corpus.positions(np.array([contributor.anime_id]))[0]
            pre, linear = network.encode(profile.items[keep], profile.values[keep])  # [H], [C]
            log_presence, ratings = network.outputs(pre[None], linear[None])  # [1, C]
            head = denormalise(ratings[0, show : show + 1], profile.mu, profile.sigma)
            predicted = recommender.rating_path.predict(
                profile.items[keep], profile.scores[keep], np.array([show]), head
            )
            like = log_like(predicted, profile.mu, recommender.like_curve)
            held = log_presence[0, show : show + 1] - normaliser
            rerun = np.exp(log_scores(held, like, 0.5, popularity[show : show + 1], 0.0))[0]
            assert top.score - rerun == pytest.approx(contributor.score_drop, rel=1e-3, abs=1e-6)
            assert contributor.share == pytest.approx(1 - rerun / top.score, rel=1e-3, abs=1e-6)
            assert 0 < contributor.share <= 1


def test_batch_equals_single_requests(recommender):
    requests = [RecommendRequest(profile=PROFILE[:k], top_k=4 + k, rating_weight=k / 10) for k in range(1, 8)] + [
        RecommendRequest(profile=PROFILE, top_k=3, explain=True)
    ]
    batched = recommender.recommend_batch(requests)
    assert same_answers(batched, [recommender.recommend(r) for r in requests])
    outcomes = recommender.recommend_many([requests[0], RecommendRequest(profile=[]), requests[1]])
    assert same_answers([outcomes[0], outcomes[2]], batched[:2]) and isinstance(outcomes[1], InvalidProfile)
    with pytest.raises(InvalidProfile, match="request 1"):
        recommender.recommend_batch([requests[0], RecommendRequest(profile=[])])


def test_no_compilation_after_warm_up_across_lengths(folder):
    warm = Recommender.load(folder)
    assert warm.warmup_compilations > 0 and warm.compilations == 0  # the counter sees compilations
    ids = range(101, 140)
    for length in (1, 5, 16, 17, 33, 39):
        profile = [ProfileEntry(anime_id=i, score=i % 11) for i in list(ids)[:length]]
        warm.recommend(RecommendRequest(profile=profile, top_k=7))
        warm.explain(ExplainRequest(profile=profile, top_k=60))
    warm.recommend_batch([RecommendRequest(profile=PROFILE[: 1 + k % 7]) for k in range(21)])
    assert warm.compilations == 0


def test_the_presence_pass_and_ratings_on_demand_equal_the_full_pass(recommender):
    network = recommender.network
    profile = prepare_profile(PROFILE, recommender.corpus)
    pre, linear = network.encode(profile.items, profile.values)
    log_presence, ratings = network.outputs(pre[None], linear[None])  # [1, C] each
    presence_only, features = network.presence(pre[None], linear[None])  # [1, C], [1, D]
    np.testing.assert_allclose(presence_only, log_presence, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(network.ratings(features[0]), ratings[0], rtol=1e-4, atol=1e-5)
    columns = np.array([4, 0, 11], np.int64)
    np.testing.assert_allclose(network.ratings_at(features[0], columns), ratings[0, columns], rtol=1e-4, atol=1e-5)
    # Both ranking weights answer with the predicted ratings of the full pass.
    for weight in (1.0, 0.3):
        answer = recommender.recommend(RecommendRequest(profile=PROFILE, top_k=5, rating_weight=weight,
                                                        hide_unwatched_sequels=False))
        shows = recommender.corpus.positions(np.array([r.anime_id for r in answer.recommendations]))
        head = denormalise(ratings[0, shows], profile.mu, profile.sigma)
        expected = recommender.rating_path.predict(profile.items, profile.scores, shows, head)
        assert [r.predicted_rating for r in answer.recommendations] == pytest.approx(expected.tolist(), rel=1e-4)


def test_predict_answers_for_named_shows_as_recommend_and_explain_do(recommender):
    """/predict of a show outside the profile is what /recommend says of it; of a profile show,
    what the hold-out of explanations says; probabilities over the non-profile shows sum to 1."""
    everything = recommender.recommend(RecommendRequest(profile=PROFILE, top_k=ALL, hide_unwatched_sequels=False))
    by_id = {r.anime_id: r for r in everything.recommendations}
    outside = list(by_id)
    answer = recommender.predict(PredictRequest(profile=PROFILE, shows=[*outside, outside[0], 424242]))
    assert [p.anime_id for p in answer.predictions] == outside  # in order, each once
    assert [(i.anime_id, i.reason) for i in answer.ignored][-1] == (424242, "unknown_show")
    for prediction in answer.predictions:
        assert not prediction.in_profile
        assert prediction.probability == pytest.approx(by_id[prediction.anime_id].probability, rel=1e-5)
        assert prediction.predicted_rating == pytest.approx(by_id[prediction.anime_id].predicted_rating, rel=1e-5)
    assert sum(p.probability for p in answer.predictions) == pytest.approx(1.0, rel=1e-5)

    explained = recommender.explain(ExplainRequest(profile=PROFILE, top_k=5, hide_unwatched_sequels=False))
    surprising = {s.anime_id: s.predicted for s in explained.most_surprising}  # every rated entry: fewer than 10
    rated = [e.anime_id for e in PROFILE if e.score > 0 and e.anime_id in surprising]
    assert len(rated) >= 4
    own = recommender.predict(PredictRequest(profile=PROFILE, shows=rated))
    for prediction in own.predictions:
        assert prediction.in_profile and 0 < prediction.probability < 1
        assert prediction.predicted_rating == pytest.approx(surprising[prediction.anime_id], rel=1e-4)
    # held out, a profile show is a candidate among the non-profile shows (it is not recommended back)
    assert not {p.anime_id for p in own.predictions} & set(by_id)


def test_predict_refuses_bad_requests():
    with pytest.raises(ValueError, match="at least 1"):
        PredictRequest(profile=PROFILE, shows=[])
    with pytest.raises(ValueError, match="at most 500"):
        PredictRequest(profile=PROFILE, shows=list(range(1, 502)))
    with pytest.raises(ValueError, match="exactly one"):
        PredictRequest(shows=[1])
