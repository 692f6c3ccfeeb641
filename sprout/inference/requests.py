"""Requests and responses of the inference engine; the same pydantic models are the HTTP schema.

Every field has a description so the service's OpenAPI page documents itself. Inputs forbid
unknown fields and use strict types where lax coercion would hide a client bug (``false`` is not
a weight, ``"5"`` is not an anime id). The profile has no length limit in the schema on purpose:
an oversized profile is `ProfileTooLarge` (HTTP 413), raised by the engine, not a validation error.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, model_validator

from sprout.model.ranking_score import DEFAULT_RATING_WEIGHT

MAX_PROFILE_ENTRIES = 5000
MAX_ANIME_ID = 2**31 - 1  # MAL ids are positive 32-bit integers

AnimeId = Annotated[StrictInt, Field(ge=1, le=MAX_ANIME_ID)]

ListStatus = Literal["watching", "completed", "on_hold", "dropped", "plan_to_watch"]


class ProfileEntry(BaseModel):
    """One show on the user's list, as MyAnimeList reports it."""

    model_config = ConfigDict(extra="forbid")

    anime_id: AnimeId = Field(description="MyAnimeList anime id.")
    score: Annotated[StrictInt, Field(ge=0, le=10)] = Field(
        default=0, description="The user's score 1..10; 0 means unrated."
    )
    status: ListStatus = Field(default="completed", description="List status of the entry.")


class ProfileSource(BaseModel):
    """Whose taste a request is about: the profile itself or a MyAnimeList username."""

    model_config = ConfigDict(extra="forbid")

    profile: list[ProfileEntry] | None = Field(
        default=None,
        description=f"The user's anime list (at most {MAX_PROFILE_ENTRIES} entries; more is answered with 413). "
        "Give this or username.",
    )
    username: str | None = Field(
        default=None,
        description="A MyAnimeList username: the service fetches that public list (404 unknown, 403 private, "
        "503 when MyAnimeList cannot be reached). Give this or profile.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> "ProfileSource":
        if (self.profile is None) == (self.username is None):
            raise ValueError("give exactly one of 'profile' (the list itself) and 'username' (whose public list to fetch)")
        return self


class RankingOptions(ProfileSource):
    """The profile (or whose it is) and the ranking options shared by recommendations and explanations."""

    top_k: Annotated[StrictInt, Field(ge=1, le=500)] = Field(
        default=50, description="Number of recommendations to return (1..500)."
    )
    rating_weight: Annotated[StrictFloat, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = Field(
        default=DEFAULT_RATING_WEIGHT,
        description="w in p · q^(1 - w), p the chance the user watches a show next and q the chance they "
        "rate it at least their own mean: 1 ranks by how likely they are to watch it, 0 by how likely they "
        "are to watch it and like it.",
    )
    exclude: list[AnimeId] = Field(default=[], description="Anime ids never to recommend.")
    media_types: list[str] | None = Field(
        default=None, description="Keep only these media types (e.g. tv, movie, ova); null keeps all."
    )
    genres_excluded: list[str] = Field(default=[], description="Drop shows having any of these genres.")
    hide_unwatched_sequels: StrictBool = Field(
        default=True,
        description="Hide a show when one of its prequels (direct or transitive) is not watched by the user "
        "(watching, completed or on hold; dropped does not count).",
    )
    niche_boost: Annotated[StrictFloat, Field(ge=0.0, allow_inf_nan=False)] = Field(
        default=0.0, description="Favour less popular shows: 0 is off, 0.5 moderate, 1 strong."
    )


class RecommendRequest(RankingOptions):
    """Ask for recommendations for one profile."""

    explain: StrictBool = Field(
        default=False, description="Attach to every recommendation the 3 profile entries it owes most to."
    )


class ExplainRequest(RankingOptions):
    """Ask for recommendations with a leave-one-out explanation of the whole profile."""


class Contributor(BaseModel):
    """A profile entry that a recommendation owes much to."""

    anime_id: int = Field(description="Anime id of the profile entry.")
    title: str = Field(description="Title of the profile entry.")
    score_drop: float = Field(description="How much removing this entry lowers the recommendation's score.")
    share: float = Field(
        description="The share of the recommendation's score this entry accounts for (0..1: 0.4 means the "
        "score would be 40% lower without it)."
    )


class Show(BaseModel):
    """A show of the catalogue, as an answer names it."""

    anime_id: int = Field(description="MyAnimeList anime id.")
    title: str = Field(description="Title of the show.")
    media_type: str | None = Field(default=None, description="Media type (tv, movie, ova, ...), when known.")
    year: int | None = Field(default=None, description="The year the show started, when known.")
    genres: list[str] = Field(default=[], description="The show's genres (empty when unknown).")
    picture: str | None = Field(default=None, description="URL of the show's picture (its cover), when known.")


class ShowFigures(Show):
    """A show with what the model expects of it for this user."""

    probability: float = Field(
        description="The chance that the user's next show is this one, among the shows not in their profile "
        "(the probabilities of all those shows sum to 1; a profile show is predicted with itself held out)."
    )
    predicted_rating: float = Field(description="Predicted score on the user's own 1..10 scale.")


class Recommendation(ShowFigures):
    """One recommended show."""

    score: float = Field(description="Ranking score (after the niche boost); higher ranks first.")
    contributors: list[Contributor] | None = Field(
        default=None, description="The 3 profile entries whose removal lowers the score most (explained only)."
    )


class Ignored(BaseModel):
    """A profile entry that did not take part, and why."""

    anime_id: int = Field(description="Anime id of the ignored entry.")
    reason: str = Field(
        description="not_in_corpus (unknown to the model), rule_dropped (plan to watch, or on hold without "
        "a score), duplicate (listed again: the last listing counts) or, for a requested show to predict, "
        "unknown_show."
    )


class ModelRef(BaseModel):
    """Which model answered."""

    version: str = Field(description="Model version.")
    dataset: str = Field(description="Content hash (or snapshot id) of the dataset the model was trained on.")


class RecommendResponse(BaseModel):
    """Recommendations, best first."""

    model: ModelRef = Field(description="Which model answered.")
    recommendations: list[Recommendation] = Field(description="Recommendations, best first.")
    ignored: list[Ignored] = Field(description="Profile entries that did not take part.")


class Impact(BaseModel):
    """How much a profile entry shapes the recommendations."""

    anime_id: int = Field(description="Anime id of the profile entry.")
    title: str = Field(description="Title of the profile entry.")
    impact: float = Field(
        description="How much removing this entry changes the top-50 recommendations' scores: the mean of "
        "|change| / the larger score, 0..1 (0.1: by 10% on average)."
    )


class Surprise(BaseModel):
    """A rated profile entry the model would have predicted differently."""

    anime_id: int = Field(description="Anime id of the profile entry.")
    title: str = Field(description="Title of the profile entry.")
    actual: float = Field(description="The user's score, 1..10.")
    predicted: float = Field(description="Score predicted with this entry held out, on the user's 1..10 scale.")


class ExplainResponse(BaseModel):
    """Recommendations with a leave-one-out explanation of the profile."""

    model: ModelRef = Field(description="Which model answered.")
    most_impactful: list[Impact] = Field(description="Up to 10 entries that move the top-50 most, largest first.")
    most_surprising: list[Surprise] = Field(
        description="Up to 10 rated entries whose score differs most from the held-out prediction, largest first."
    )
    recommendations: list[Recommendation] = Field(description="Recommendations with contributors, best first.")
    ignored: list[Ignored] = Field(description="Profile entries that did not take part.")


MAX_PREDICTED_SHOWS = 500


class PredictRequest(ProfileSource):
    """Ask what the user would think of named shows, recommended or not."""

    shows: Annotated[list[AnimeId], Field(min_length=1, max_length=MAX_PREDICTED_SHOWS)] = Field(
        description=f"Anime ids to predict (1..{MAX_PREDICTED_SHOWS}); a show of the profile is predicted with "
        "itself held out."
    )


class Prediction(ShowFigures):
    """What the model expects of one show for this user."""

    in_profile: bool = Field(description="The show is in the profile, so it was predicted with itself held out.")


class PredictResponse(BaseModel):
    """Predictions for the requested shows, in the order asked (each show once)."""

    model: ModelRef = Field(description="Which model answered.")
    predictions: list[Prediction] = Field(description="One per requested show the model knows.")
    ignored: list[Ignored] = Field(
        description="Profile entries that did not take part, and requested shows the model does not know "
        "(reason unknown_show)."
    )


class ModelInfo(BaseModel):
    """The model being served."""

    version: str = Field(description="Model version.")
    stage: str | None = Field(description="Registry stage (champion, ...) when known.")
    dataset: str = Field(description="Content hash (or snapshot id) of the training dataset.")
    metrics: dict[str, Any] = Field(description="Evaluation metrics recorded with the model.")
    corpus_size: int = Field(description="Number of shows the model knows.")
    parameters: int = Field(description="Number of model parameters.")
    trained_at: str = Field(description="When the model artifact was created (ISO 8601).")
    item_url: str | None = Field(default=None, description="A show's page, {id} standing for its id.")
