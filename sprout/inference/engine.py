"""The recommender: a model artifact loaded for serving, answering ranking and explanation requests.

A request goes through the training entry rules (`profile.prepare_profile`), one forward pass
(`network.ServingNetwork`), the filters and the ranking score (`filters`, `ranking`); explained
requests add one batched leave-one-out pass over the profile (`explanations`). Every compiled
shape is warmed up at load, and `compilations` counts any compilation after that.

A request is answered in three steps so that a scheduler can share only what is worth sharing:
`encode` (one profile's own work), `outputs` (the forward pass, batched over many profiles) and
`respond` (ranking, and for explained requests the leave-one-out pass, which may be paced).
`recommend_many` chains them for a list of requests.

Held-out entries keep the normalisation (mu, sigma) of the whole profile: holding an entry out is
exactly the rank-1 change of the first layer, and the explanation isolates that entry's effect.
A `Recommender` holds no per-request state: any number of threads may call it at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sprout.dataset.corpus import Corpus
from sprout.dataset.features import denormalise
from sprout.model.autoencoder import Autoencoder
from sprout.model.artifact import CORPUS_FILE, read_model_artifact
from sprout.model.rating_path import RatingPath, like_curve_of, log_like

from . import explanations
from .errors import InferenceError, InvalidProfile
from .filters import CatalogueIndex, allowed_shows
from .network import ServingNetwork
from .profile import PreparedProfile, prepare_profile
from .ranking import log_scores, top_candidates
from .requests import (
    Contributor,
    ExplainRequest,
    ExplainResponse,
    Ignored,
    Impact,
    ModelInfo,
    ModelRef,
    PredictRequest,
    PredictResponse,
    Prediction,
    ProfileSource,
    RankingOptions,
    RecommendRequest,
    RecommendResponse,
    Surprise,
)


@dataclass(frozen=True)
class EncodedProfile:
    """A prepared profile with its first-layer encoding, ready for the (batched) forward pass."""

    profile: PreparedProfile
    pre: np.ndarray  # [H] first layer's pre-activation
    linear: np.ndarray  # [C] the item-item path's x B


@dataclass(frozen=True)
class _Ranked:
    """The best allowed shows of one user, best first, with their outputs."""

    shows: np.ndarray  # [K] corpus index
    log_scores: np.ndarray  # [K] log of the boosted ranking score
    log_probability: np.ndarray  # [K] log presence renormalised over the shows not in the profile
    predicted_ratings: np.ndarray  # [K] on the user's 1..10 scale
    log_normaliser: float  # log Σ p over the shows not in the profile (p over the whole corpus)


def candidate_log_normaliser(log_presence: np.ndarray, listed: np.ndarray) -> float:
    """log Σ p over the shows not in the profile: log_presence [C], listed [m] corpus indices."""
    candidates = np.ones(len(log_presence), bool)
    candidates[listed] = False
    values = np.asarray(log_presence, np.float64)[candidates]
    if not len(values):
        return 0.0
    peak = values.max()
    return float(peak + np.log(np.exp(values - peak).sum()))


class Recommender:
    """A loaded model with its corpus, ready to rank and explain."""

    def __init__(
        self,
        model: Autoencoder,
        document: dict[str, Any],
        corpus: Corpus,
        *,
        devices: int | None = None,
        warmup: bool = True,
        stage: str | None = None,
        explain_normaliser: str = "exact",
    ):
        if model.config.corpus_size != len(corpus):
            raise ValueError(f"the model knows {model.config.corpus_size} shows but the corpus has {len(corpus)}")
        self.document = document
        self.corpus = corpus
        self.stage = stage
        self.version: str = document["version"]
        dataset = document.get("dataset", {})
        self.dataset: str = dataset.get("content_sha256") or dataset.get("snapshot_id") or ""
        self.network = ServingNetwork(model, devices, explain_normaliser)
        self.catalogue = CatalogueIndex.from_corpus(corpus)
        self.rating_path = RatingPath.of(model)  # None: the rating head alone
        self.like_curve = like_curve_of(model)
        self._compilations_at_warm_up = 0
        self.warmup_compilations = 0
        if warmup:
            self.warm_up()

    @classmethod
    def load(
        cls, folder: Path | str, *, devices: int | None = None, warmup: bool = True, stage: str | None = None,
        explain_normaliser: str = "exact",
    ) -> Recommender:
        """Load a model artifact folder (weights.npz, model.json, corpus.json), hashes checked."""
        folder = Path(folder)
        model, document = read_model_artifact(folder)
        corpus = Corpus.from_json((folder / CORPUS_FILE).read_text(encoding="utf-8"))
        return cls(
            model, document, corpus, devices=devices, warmup=warmup, stage=stage, explain_normaliser=explain_normaliser
        )

    # --- lifecycle ---------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Compile every serving shape now, so that requests never wait for a compilation."""
        before = self.network.counter.count
        self.network.warm_up()
        self._compilations_at_warm_up = self.network.counter.count
        self.warmup_compilations = self._compilations_at_warm_up - before

    @property
    def compilations(self) -> int:
        """XLA compilations caused by this recommender since warm-up finished."""
        return self.network.counter.count - self._compilations_at_warm_up

    @property
    def model_ref(self) -> ModelRef:
        return ModelRef(version=self.version, dataset=self.dataset)

    def info(self) -> ModelInfo:
        return ModelInfo(
            version=self.version,
            stage=self.stage,
            dataset=self.dataset,
            metrics=self.document.get("metrics", {}),
            corpus_size=len(self.corpus),
            parameters=int(self.document.get("parameters", 0)),
            trained_at=str(self.document.get("created_at", "")),
        )

    # --- requests ----------------------------------------------------------------------------

    def recommend(self, request: RecommendRequest) -> RecommendResponse:
        """Recommendations for one profile (with contributors when ``request.explain``)."""
        outcome = self.recommend_many([request])[0]
        if isinstance(outcome, InferenceError):
            raise outcome
        return outcome

    def recommend_batch(self, requests: list[RecommendRequest]) -> list[RecommendResponse]:
        """Recommendations for many profiles in one batched forward pass; raises the first bad profile."""
        outcomes = self.recommend_many(requests)
        for position, outcome in enumerate(outcomes):
            if isinstance(outcome, InferenceError):
                raise type(outcome)(f"request {position}: {outcome}") from outcome
        return outcomes  # type: ignore[return-value]

    def recommend_many(self, requests: list[RecommendRequest]) -> list[RecommendResponse | InferenceError]:
        """Like `recommend_batch`, but a bad profile yields its error in place of its response."""
        outcomes: list[RecommendResponse | InferenceError | None] = [None] * len(requests)
        encodings: list[tuple[int, EncodedProfile]] = []
        for position, request in enumerate(requests):
            try:
                encodings.append((position, self.encode(request)))
            except InferenceError as error:
                outcomes[position] = error
        if encodings:
            log_presence, features = self.outputs([e for _, e in encodings])  # [B, C], [B, D]
            for row, (position, encoded) in enumerate(encodings):
                outcomes[position] = self.respond(requests[position], encoded, log_presence[row], features[row])
        return outcomes  # type: ignore[return-value]

    def encode(self, request: ProfileSource) -> EncodedProfile:
        """One request's own part of the forward pass: the profile rules and the first layer.

        Raises `InferenceError` for a profile that cannot be served."""
        return self.encode_prepared([self.prepare(request)])[0]

    def prepare(self, request: ProfileSource) -> PreparedProfile:
        """The request's profile under the training rules; raises `InferenceError` for one that
        cannot be served."""
        if request.profile is None:  # a username is resolved to its list before the engine sees it
            raise InvalidProfile("the request names a username; fetch its list first")
        return prepare_profile(request.profile, self.corpus)

    def encode_prepared(self, profiles: list[PreparedProfile]) -> list[EncodedProfile]:
        """The first layer of many prepared profiles at once (one sparse product each for the
        first layer and ``x B``)."""
        pre, linear = self.network.encode_many([(p.items, p.values) for p in profiles])  # [B, H], [B, C]
        return [EncodedProfile(profile, pre[k], linear[k]) for k, profile in enumerate(profiles)]

    def outputs(self, encoded: list[EncodedProfile]) -> tuple[np.ndarray, np.ndarray]:
        """The shared rest of the forward pass for many profiles at once -> log presence [B, C]
        and rating features [B, D] (each request computes the ratings it needs from its row)."""
        pre = np.stack([e.pre for e in encoded])  # [B, H]
        linear = np.stack([e.linear for e in encoded])  # [B, C]
        return self.network.presence(pre, linear)

    def respond(
        self,
        request: RecommendRequest,
        encoded: EncodedProfile,
        log_presence: np.ndarray,
        features: np.ndarray,
        pace: Callable[[], None] | None = None,
    ) -> RecommendResponse:
        """The answer to ``request`` from its row of `outputs` (log_presence [C], rating features [D]).

        An explained request runs its leave-one-out pass here; ``pace`` is called before each
        chunk of it (a scheduler blocks in it to let other work go first)."""
        profile = encoded.profile
        ranked = self._rank(request, profile, log_presence, features, request.top_k)
        if request.explain:
            explained = self._explained(request, profile, encoded, log_presence, ranked, pace)
            recommendations = explained.recommendations
        else:
            recommendations = self._recommendations(ranked, len(ranked.shows))
        return RecommendResponse.model_validate(
            {"model": self.model_ref, "recommendations": recommendations, "ignored": profile.ignored}
        )

    def explain(self, request: ExplainRequest, pace: Callable[[], None] | None = None) -> ExplainResponse:
        """Recommendations with contributors, the most impactful and the most surprising entries.

        ``pace`` is called before each chunk of the leave-one-out pass (see `respond`)."""
        encoded = self.encode(request)
        log_presence, features = self.outputs([encoded])  # [1, C], [1, D]
        count = max(request.top_k, explanations.IMPACT_CANDIDATES)
        ranked = self._rank(request, encoded.profile, log_presence[0], features[0], count)
        return self._explained(request, encoded.profile, encoded, log_presence[0], ranked, pace)

    def predict(self, request: PredictRequest) -> PredictResponse:
        """The probability and predicted rating of each requested show for this profile, whether
        or not it would be recommended; a show of the profile is predicted with itself held out
        (the rank-1 hold-out of explanations, keeping the profile's mu and sigma)."""
        encoded = self.encode(request)
        profile = encoded.profile
        log_presence, features = (rows[0] for rows in self.outputs([encoded]))  # [C], [D]
        requested = np.asarray(list(dict.fromkeys(request.shows)), np.int64)  # each show once, in order
        shows = self.corpus.positions(requested)  # [S], -1 unknown
        ignored = [Ignored(anime_id=int(a), reason="unknown_show") for a, s in zip(requested, shows) if s < 0]
        shows = shows[shows >= 0]
        entry_of = {int(item): j for j, item in enumerate(profile.items)}
        held = [entry_of[int(s)] for s in shows if int(s) in entry_of]  # profile entries asked about
        outside = np.array([s for s in shows if int(s) not in entry_of], np.int64)
        listed = np.zeros(len(self.corpus), bool)
        listed[profile.listed] = True
        normaliser = candidate_log_normaliser(log_presence, profile.listed)
        found: dict[int, tuple[float, float]] = {}
        if len(outside):  # a listed show that did not count (plan to watch, say) joins the candidates
            log_p = log_presence[outside]
            log_p = log_p - np.where(listed[outside], np.logaddexp(normaliser, log_p), normaliser)
            ratings = self._ratings(profile, self.network.ratings_at(features, outside), outside)
            found.update({int(s): (float(np.exp(lp)), float(r)) for s, lp, r in zip(outside, log_p, ratings)})
        if held:
            keep = np.ones((len(held), profile.length), bool)
            keep[np.arange(len(held)), held] = False  # row r: the profile without entry held[r] (same mu, sigma)
            pre, linear = self.network.encode_many([(profile.items[k], profile.values[k]) for k in keep])
            held_presence, held_features = self.network.presence(pre, linear)  # [R, C], [R, D]
            own = np.array([self.network.ratings_at(f, profile.items[j : j + 1])[0]
                            for j, f in zip(held, held_features)])  # [R]
            ratings = self._own_held_out_ratings(profile, own, np.asarray(held))
            for row, j in enumerate(held):
                show = int(profile.items[j])
                listed[show] = False  # with itself held out, the show is a candidate
                log_p = held_presence[row, show] - candidate_log_normaliser(held_presence[row], np.flatnonzero(listed))
                listed[show] = True
                found[show] = (float(np.exp(log_p)), float(ratings[row]))
        predictions = [
            Prediction(**self._show(int(s)), probability=found[int(s)][0], predicted_rating=found[int(s)][1],
                       in_profile=int(s) in entry_of)
            for s in shows
        ]
        return PredictResponse(model=self.model_ref, predictions=predictions, ignored=[*profile.ignored, *ignored])

    # --- internals ---------------------------------------------------------------------------

    def _rank(
        self,
        request: RankingOptions,
        profile: PreparedProfile,
        log_presence: np.ndarray,
        features: np.ndarray,
        count: int,
    ) -> _Ranked:
        """Filter and rank one user's outputs (log_presence [C], rating features [D]); keep the best
        ``count``. Ratings of every show are computed only when the ranking weighs them (w < 1);
        otherwise only the kept shows' ratings are."""
        excluded = self.corpus.positions(np.asarray(request.exclude, np.int64))  # [e], -1 outside the corpus
        allowed = allowed_shows(
            self.catalogue,
            listed=profile.listed,
            excluded=excluded[excluded >= 0],
            media_types=request.media_types,
            genres_excluded=request.genres_excluded,
            watched=profile.watched if request.hide_unwatched_sequels else None,
        )  # [C]
        # p over the shows not in the profile: what `probability` means, and what the niche boost weighs
        log_normaliser = candidate_log_normaliser(log_presence, profile.listed)
        log_presence = log_presence - log_normaliser
        ratings = like = None
        if request.rating_weight < 1.0:  # the ranking weighs every show's chance of being liked
            ratings = self._ratings(profile, self.network.ratings(features), np.arange(len(self.corpus)))  # [C]
            like = log_like(ratings, profile.mu, self.like_curve)  # [C]
        scores = log_scores(
            log_presence, like if like is not None else np.zeros_like(log_presence), request.rating_weight,
            self.catalogue.popularity, request.niche_boost,
        )  # at w = 1 the like term has weight 0: zeros stand in
        shows = top_candidates(scores, allowed, count)  # [K]
        predicted = ratings[shows] if ratings is not None else self._ratings(
            profile, self.network.ratings_at(features, shows), shows
        )  # [K]
        return _Ranked(shows, scores[shows], log_presence[shows], predicted, log_normaliser)

    def _explained(
        self,
        request: RankingOptions,
        profile: PreparedProfile,
        encoded: EncodedProfile,
        log_presence: np.ndarray,
        ranked: _Ranked,
        pace: Callable[[], None] | None,
    ) -> ExplainResponse:
        """Hold every profile entry out in one batched pass and explain the ranked candidates
        (log_presence [C]: the whole profile's)."""
        shows = ranked.shows  # [K]
        held_presence, held_ratings, own = self.network.held_out(
            encoded.pre, encoded.linear, log_presence, profile.items, profile.values, shows, pace=pace
        )
        popularity = self.catalogue.popularity[shows]  # [K]
        held_like = np.zeros_like(held_presence)
        if request.rating_weight < 1.0:
            held_like = log_like(self._held_out_ratings(profile, held_ratings, shows), profile.mu, self.like_curve)
        held = log_scores(  # each held-out row on the whole profile's scale, so its ratio to the base is p_held / p
            held_presence - ranked.log_normaliser, held_like, request.rating_weight, popularity, request.niche_boost
        )  # [n, K]
        shares = explanations.score_shares(ranked.log_scores, held)  # [n, K]
        drops = np.exp(ranked.log_scores)[None, :] * shares  # [n, K] in score units
        shown = min(request.top_k, len(shows))
        contributors = explanations.top_contributors(shares[:, :shown])
        recommendations = self._recommendations(
            ranked, shown,
            [[self._contributor(profile, j, share, drops[j, k]) for j, share in contributors[k]] for k in range(shown)],
        )
        impacts = explanations.entry_impacts(ranked.log_scores, held)  # [n]
        actual = profile.scores.astype(np.float64)  # [n]
        predicted = np.full(len(actual), np.nan)
        rated = np.flatnonzero(profile.scores > 0)
        predicted[rated] = self._own_held_out_ratings(profile, own[rated], rated)  # [n]
        return ExplainResponse(
            model=self.model_ref,
            most_impactful=[
                Impact(anime_id=self._anime_id(profile, j), title=self._title(profile, j), impact=float(impacts[j]))
                for j in explanations.most_impactful(impacts)
            ],
            most_surprising=[
                Surprise(
                    anime_id=self._anime_id(profile, j),
                    title=self._title(profile, j),
                    actual=float(actual[j]),
                    predicted=float(predicted[j]),
                )
                for j in explanations.most_surprising(actual, predicted, profile.scores > 0)
            ],
            recommendations=recommendations,
            ignored=profile.ignored,
        )

    def _recommendations(
        self, ranked: _Ranked, count: int, contributors: list[list[Contributor]] | None = None
    ) -> list[dict[str, Any]]:
        """The first ``count`` ranked shows as `Recommendation` fields. Plain dicts, validated once
        with the whole answer: pydantic's core checks nested dicts several times faster than
        Python builds models one by one (50 answers: 40 µs against 155 µs, or 260 µs unvalidated)."""
        shows = ranked.shows[:count].tolist()
        scores = np.exp(ranked.log_scores[:count]).tolist()
        probabilities = np.exp(ranked.log_probability[:count]).tolist()
        ratings = ranked.predicted_ratings[:count].astype(np.float64).tolist()
        return [
            {**self._show(show), "score": scores[k], "probability": probabilities[k], "predicted_rating": ratings[k],
             "contributors": None if contributors is None else contributors[k]}
            for k, show in enumerate(shows)
        ]

    def _show(self, show: int) -> dict[str, Any]:
        """What an answer says about corpus show ``show`` besides its figures (fields of `Show`);
        picture and year are None for a corpus written before they were recorded."""
        corpus = self.corpus
        return {
            "anime_id": int(corpus.anime_ids[show]),
            "title": corpus.titles[show],
            "media_type": corpus.media_types[show],
            "year": corpus.years[show] if corpus.years else None,
            "genres": list(corpus.genres[show]),
            "picture": corpus.pictures[show] if corpus.pictures else None,
        }

    def _anime_id(self, profile: PreparedProfile, entry: int) -> int:
        return int(self.corpus.anime_ids[profile.items[entry]])

    def _title(self, profile: PreparedProfile, entry: int) -> str:
        return self.corpus.titles[profile.items[entry]]

    def _contributor(self, profile: PreparedProfile, entry: int, share: float, drop: float) -> Contributor:
        return Contributor(
            anime_id=self._anime_id(profile, entry), title=self._title(profile, entry), score_drop=float(drop),
            share=share,
        )

    # --- predicted ratings -------------------------------------------------------------------

    def _ratings(self, profile: PreparedProfile, deep: np.ndarray, shows: np.ndarray) -> np.ndarray:
        """Scores 1..10 of ``shows`` [T] from the rating head's normalised outputs ``deep`` [T]:
        through the rating path when the model has one."""
        head = denormalise(deep, profile.mu, profile.sigma)
        if self.rating_path is None:
            return head
        return self.rating_path.predict(profile.items, profile.scores, shows, head)

    def _held_out_ratings(self, profile: PreparedProfile, deep: np.ndarray, shows: np.ndarray) -> np.ndarray:
        """Row j: scores of ``shows`` [K] with entry j held out, from the held-out rows' normalised
        rating-head outputs ``deep`` [n, K]. -> [n, K]"""
        head = denormalise(deep, profile.mu, profile.sigma)
        if self.rating_path is None:
            return head
        keep = np.ones(profile.length, bool)
        for j in range(profile.length):
            keep[j] = False
            head[j] = self.rating_path.predict(profile.items[keep], profile.scores[keep], shows, head[j])
            keep[j] = True
        return head

    def _own_held_out_ratings(self, profile: PreparedProfile, own: np.ndarray, entries: np.ndarray) -> np.ndarray:
        """Entries [R] of the profile, each predicted with itself held out, from the rating head's
        held-out outputs at their own shows ``own`` [R]. -> [R] on 1..10"""
        head = denormalise(own, profile.mu, profile.sigma)
        if self.rating_path is None:
            return head
        return self.rating_path.predict_held_out(profile.items, profile.scores, entries, head)
