"""The Sprout HTTP service: recommendations and explanations from the registry's champion.

``POST /recommend`` and ``POST /explain`` take the request's fields as top-level JSON;
``GET /model`` describes the model being served. BentoML adds ``/livez``, ``/readyz``,
``/metrics`` and ``/docs.json``. Settings come from ``SPROUT_SERVE_*`` (see `sprout.serve`);
start it with ``sprout serve``.
"""

from __future__ import annotations

import logging

import bentoml
from fastapi import FastAPI, Response
from starlette.responses import JSONResponse

from bentos.hot_swap import ChampionFollower
from bentos.http_limits import RequestGuard, quiet_client_errors
from bentos.registry import ModelRecord, ModelRegistry
from sprout.inference.batching import RequestBatcher
from sprout.inference.engine import Recommender
from sprout.inference.errors import InferenceError, ProfileTooLarge
from sprout.inference.requests import ExplainRequest, ExplainResponse, ModelInfo, RecommendRequest, RecommendResponse
from sprout.registry import UnknownVersion
from sprout.serve import ServeSettings

settings = ServeSettings()
quiet_client_errors()
logging.getLogger("bentos").setLevel(logging.INFO)  # model swaps reach the server log
routes = FastAPI(title="Sprout model routes")


def client_error(error: InferenceError) -> JSONResponse:
    """The engine's verdict on a profile as a 4xx answer (BentoML sends a returned Response as is)."""
    status = 413 if isinstance(error, ProfileTooLarge) else 400
    return JSONResponse({"error": str(error)}, status_code=status)


@bentoml.service(name="sprout", workers=settings.workers, threads=settings.threads, traffic={"timeout": 120})
@bentoml.asgi_app(routes, path="/")
class Sprout:
    def __init__(self) -> None:
        self.registry = ModelRegistry(settings.store_dir)
        self.models = ChampionFollower(self.registry, self._load, pinned_version=settings.version, poll_s=settings.poll_s)
        self.batcher = RequestBatcher(lambda: self.models.current)  # each request runs on the engine current then
        self.models.start()

    @staticmethod
    def _load(record: ModelRecord) -> Recommender:
        return Recommender.load(record.path, devices=settings.devices, warmup=True, stage=record.stage)

    @bentoml.api
    def recommend(self, request: RecommendRequest, /) -> RecommendResponse:
        """Recommendations for a profile; concurrent requests share forward passes, explained ones
        take the explanation lane so that plain requests never wait for them."""
        try:
            return self.batcher.submit(request)
        except InferenceError as error:
            return client_error(error)

    @bentoml.api
    def explain(self, request: ExplainRequest, /) -> ExplainResponse:
        """Recommendations with contributors, the most impactful and the most surprising entries."""
        try:
            return self.batcher.explain(request)
        except InferenceError as error:
            return client_error(error)

    @routes.get("/model")
    def model(self, response: Response) -> ModelInfo:
        """The model being served, with its registry stage and metrics."""
        engine = self.models.current
        info = engine.info()
        response.headers["X-Sprout-Compilations"] = str(engine.compilations)
        try:
            record = self.registry.get(info.version)
        except UnknownVersion:  # unreadable this instant (labels being rewritten): the engine's own view stands
            return info
        return info.model_copy(update={"stage": record.stage, "metrics": record.metadata.get("metrics", info.metrics)})

    @bentoml.on_shutdown
    def stop_following(self) -> None:
        self.models.stop()


Sprout.add_asgi_middleware(RequestGuard, max_bytes=settings.max_body_bytes)
