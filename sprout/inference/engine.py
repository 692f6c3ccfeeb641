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
    Impact,
    ModelInfo,
    ModelRef,
    RankingOptions,
    Recommendation,
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
    log_presence: np.ndarray  # [K]
    predicted_ratings: np.ndarray  # [K] on the user's 1..10 scale


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

    def encode(self, request: RankingOptions) -> EncodedProfile:
        """One request's own part of the forward pass: the profile rules and the first layer.

        Raises `InferenceError` for a profile that cannot be served."""
        if request.profile is None:  # a username is resolved to its list before the engine sees it
            raise InvalidProfile("the request names a username; fetch its list first")
        profile = prepare_profile(request.profile, self.corpus)
        pre, linear = self.network.encode(profile.items, profile.values)  # [H], [C]
        return EncodedProfile(profile, pre, linear)

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
            recommendations = [self._recommendation(ranked, k) for k in range(len(ranked.shows))]
        return RecommendResponse(model=self.model_ref, recommendations=recommendations, ignored=profile.ignored)

    def explain(self, request: ExplainRequest, pace: Callable[[], None] | None = None) -> ExplainResponse:
        """Recommendations with contributors, the most impactful and the most surprising entries.

        ``pace`` is called before each chunk of the leave-one-out pass (see `respond`)."""
        encoded = self.encode(request)
        log_presence, features = self.outputs([encoded])  # [1, C], [1, D]
        count = max(request.top_k, explanations.IMPACT_CANDIDATES)
        ranked = self._rank(request, encoded.profile, log_presence[0], features[0], count)
        return self._explained(request, encoded.profile, encoded, log_presence[0], ranked, pace)

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
        ratings = self.network.ratings(features) if request.rating_weight < 1.0 else None  # [C]
        scores = log_scores(
            log_presence, ratings if ratings is not None else np.zeros_like(log_presence), request.rating_weight,
            self.catalogue.popularity, request.niche_boost,
        )  # at w = 1 the rating term is ratings^0: zeros stand in
        shows = top_candidates(scores, allowed, count)  # [K]
        kept = ratings[shows] if ratings is not None else self.network.ratings_at(features, shows)  # [K]
        predicted = denormalise(kept, profile.mu, profile.sigma)  # [K]
        return _Ranked(shows, scores[shows], log_presence[shows], predicted)

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
        held = log_scores(held_presence, held_ratings, request.rating_weight, popularity, request.niche_boost)
        drops = explanations.score_drops(np.exp(ranked.log_scores), np.exp(held))  # [n, K]
        shown = min(request.top_k, len(shows))
        contributors = explanations.top_contributors(drops[:, :shown])
        recommendations = [
            self._recommendation(ranked, k, [self._contributor(profile, j, drop) for j, drop in contributors[k]])
            for k in range(shown)
        ]
        impacts = explanations.entry_impacts(drops)  # [n]
        actual = profile.scores.astype(np.float64)  # [n]
        predicted = denormalise(own, profile.mu, profile.sigma)  # [n]
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

    def _recommendation(self, ranked: _Ranked, k: int, contributors: list[Contributor] | None = None) -> Recommendation:
        show = int(ranked.shows[k])
        return Recommendation(
            anime_id=int(self.corpus.anime_ids[show]),
            title=self.corpus.titles[show],
            score=float(np.exp(ranked.log_scores[k])),
            probability=float(np.exp(ranked.log_presence[k])),
            predicted_rating=float(ranked.predicted_ratings[k]),
            contributors=contributors,
        )

    def _anime_id(self, profile: PreparedProfile, entry: int) -> int:
        return int(self.corpus.anime_ids[profile.items[entry]])

    def _title(self, profile: PreparedProfile, entry: int) -> str:
        return self.corpus.titles[profile.items[entry]]

    def _contributor(self, profile: PreparedProfile, entry: int, drop: float) -> Contributor:
        return Contributor(anime_id=self._anime_id(profile, entry), title=self._title(profile, entry), score_drop=drop)
