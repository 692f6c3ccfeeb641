"""The HTTP framework's own cost for `/recommend`'s body: a BentoML service with the same request
and response schemas, workers, logging and tracing as `bentos/service.py`, answering from its
event loop as the service does, whose answer is a
prebuilt response of ``top_k`` recommendations — no model, no ranking. `serving_load.py` loads it
as the same-run floor under what the real service could reach.

    uv run python -m bentoml serve http_floor:Floor --working-dir benchmarks --host 127.0.0.1 --port 3000
"""

from __future__ import annotations

import gc

import bentoml

from sprout.config import ServeSettings
from sprout.inference.requests import ModelRef, Recommendation, RecommendRequest, RecommendResponse

settings = ServeSettings()
ANSWER = RecommendResponse(
    model=ModelRef(version="floor", dataset="floor"),
    recommendations=[
        Recommendation(anime_id=k + 1, title=f"Show {k + 1}", media_type="tv", year=2000, genres=["Drama"],
                       probability=0.01, predicted_rating=7.5, score=0.01)
        for k in range(500)
    ],
    ignored=[],
)


@bentoml.service(
    name="floor", workers=settings.workers, threads=settings.threads, traffic={"timeout": 120},
    logging={"access": {"enabled": settings.access_log}},
    tracing={} if settings.tracing else {"excluded_urls": ".*"},
)
class Floor:
    def __init__(self) -> None:
        gc.collect()
        gc.freeze()  # as the service does after loading its model

    @bentoml.api
    async def recommend(self, request: RecommendRequest, /) -> RecommendResponse:
        """The request parsed and validated like the real one; the first ``top_k`` of a fixed list back."""
        return ANSWER.model_copy(update={"recommendations": ANSWER.recommendations[: request.top_k]})
