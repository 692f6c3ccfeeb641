"""The Sprout HTTP service: recommendations and explanations from the registry's champion.

``POST /recommend`` and ``POST /explain`` take the request's fields as top-level JSON, with the
profile itself or a MyAnimeList ``username`` whose public list the service fetches;
``POST /predict`` answers what the user would think of named shows;
``POST /profile/export`` turns MAL's list export file into that profile; ``GET /model``
describes the model being served; ``GET /`` is the web page (``bentos/static/``). BentoML adds
``/livez``, ``/readyz``, ``/metrics`` and ``/docs.json``. Settings come from ``SPROUT_SERVE_*``
and ``SPROUT_MAL_*`` (see `sprout.config`); start it with ``sprout serve``.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import sys
from pathlib import Path

import bentoml
from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from starlette.responses import FileResponse, JSONResponse

from bentos.cores import pin_to_core, should_pin
from bentos.fair_accept import use_fair_accept
from bentos.hot_swap import ChampionFollower
from bentos.http_limits import AdmissionGate, RequestGuard, RequestTooLarge, quiet_client_errors
from bentos.registry import ModelRecord, ModelRegistry
from sprout.config import ServeSettings, Settings
from sprout.inference.batching import RETRY_AFTER_S, RequestBatcher
from sprout.inference.engine import Recommender
from sprout.inference.errors import InferenceError, Overloaded, ProfileTooLarge
from sprout.inference.requests import (
    ExplainRequest,
    ExplainResponse,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    ProfileSource,
    RecommendRequest,
    RecommendResponse,
)
from sprout.mal.client import MalClient
from sprout.profiles import ExportError, ListFetcher, ListFetcherThread, ProfileLookupError, parse_list_export
from sprout.profiles.export import MAX_EXPORT_BYTES
from sprout.registry import UnknownVersion

STATIC = Path(__file__).parent / "static"
EXPORT_PATH = "/profile/export"
SWITCH_INTERVAL_S = 0.0005
YOUNG_OBJECTS_PER_COLLECTION = 10_000

settings = ServeSettings()
worker_index = bentoml.server_context.worker_index  # 1-based in a BentoML worker, None elsewhere
if worker_index is not None:  # before XLA starts and before uvicorn makes its event loop
    if should_pin(settings.workers, settings.devices, settings.pin_workers):
        pin_to_core(worker_index - 1)
    if settings.workers > 1:
        try:
            use_fair_accept(settings.workers, worker_index - 1, server_pid=os.getppid())
        except OSError as error:  # no shared file: serve all the same, connections spread as they come
            logging.getLogger("bentos").warning("connections are not shared evenly between workers: %s", error)
# The event loop and the batch thread share one Python lock. A thread that wants it back after a
# numpy or XLA call waits until the holder's switch interval runs out: at Python's 5 ms, batches
# sat idle behind request parsing (234 answers/s at 16 clients against 419 at 0.5 ms).
sys.setswitchinterval(SWITCH_INTERVAL_S)
quiet_client_errors()
logging.getLogger("bentos").setLevel(logging.INFO)  # model swaps reach the server log
routes = FastAPI(title="Sprout model routes")
routes.mount("/static", StaticFiles(directory=STATIC), name="static")


def client_error(error: InferenceError | ProfileLookupError | ExportError | Overloaded) -> JSONResponse:
    """A verdict on the request as a 4xx/503 answer with its sentence (BentoML sends a returned
    Response as is)."""
    if isinstance(error, Overloaded):
        return JSONResponse({"error": str(error)}, status_code=503, headers={"Retry-After": str(error.retry_after_s)})
    if isinstance(error, ProfileLookupError):
        headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s else None
        return JSONResponse({"error": str(error)}, status_code=error.status, headers=headers)
    status = 413 if isinstance(error, ProfileTooLarge) else 400
    return JSONResponse({"error": str(error)}, status_code=status)


def settle_heap() -> None:
    """Collect what is garbage now, then put every live object out of the cyclic collector's reach.

    A loaded model and the libraries leave a few hundred thousand long-lived objects, and each
    request allocates hundreds (a profile's entries), so full collections ran often and walked
    them all: 100-200 ms pauses that made the p99 under load. Young collections then run every
    `YOUNG_OBJECTS_PER_COLLECTION` allocations instead of Python's 700: a request's objects are
    nearly all freed by reference counting before that, so most never get walked (16 clients:
    618 against 570 answers/s). Called after each model load; an engine swapped out is collected
    at the next one (at most one such engine waits)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_OBJECTS_PER_COLLECTION, 10, 10)


@functools.cache
def service_metrics():  # -> bentos.metrics.ServiceMetrics
    """This worker's metrics, made on first use: prometheus_client must be imported after BentoML
    has set up its multiprocess folder, which it has by the time a worker serves."""
    from bentos.metrics import ServiceMetrics

    return ServiceMetrics()


def username_lists() -> ListFetcherThread:
    """Lists by username through the platform's MAL client and settings, one cache per worker."""
    mal = Settings()
    factory = (lambda: MalClient.from_settings(mal)) if mal.client_id() else None
    return ListFetcherThread(lambda: ListFetcher(
        factory, deadline_s=settings.username_deadline_s, ttl_s=settings.list_cache_ttl_s,
        cache_size=settings.list_cache_size, on_lookup=service_metrics().username_lookup,
    ))


@bentoml.service(
    name="sprout", workers=settings.workers, threads=settings.threads, traffic={"timeout": 120},
    logging={"access": {"enabled": settings.access_log}},
    tracing={} if settings.tracing else {"excluded_urls": ".*"},
)
@bentoml.asgi_app(routes, path="/")
class Sprout:
    def __init__(self) -> None:
        self.registry = ModelRegistry(settings.store_dir)
        self.models = ChampionFollower(self.registry, self._load, pinned_version=settings.version, poll_s=settings.poll_s)
        self.batcher = RequestBatcher(  # each request runs on the engine current when it arrives
            lambda: self.models.current, max_waiting=settings.max_queue,
            max_waiting_explanations=settings.max_waiting_explanations, observer=service_metrics(),
            max_linger_s=settings.max_linger_ms / 1000,
        )
        self.lists = username_lists()
        self.models.start()

    @staticmethod
    def _load(record: ModelRecord) -> Recommender:
        engine = Recommender.load(
            record.path, devices=settings.devices, warmup=True, stage=record.stage,
            explain_normaliser=settings.explain_normaliser,
        )
        settle_heap()
        service_metrics().serving(engine.version, engine.dataset)
        return engine

    def _with_profile(self, request: ProfileSource) -> ProfileSource:
        """A request that names a username, with that user's list as its profile."""
        if request.username is None:
            return request
        return request.model_copy(update={"profile": self.lists.profile(request.username), "username": None})

    @bentoml.api
    async def recommend(self, request: RecommendRequest, /) -> RecommendResponse:
        """Recommendations for a profile or a username; concurrent requests share forward passes on
        the batch thread while the event loop goes on (no request thread), explained ones take the
        explanation lane so that plain requests never wait for them."""
        try:
            if request.username is not None:  # a fetch that may take seconds: off the event loop
                request = await asyncio.to_thread(self._with_profile, request)
            return await self.batcher.submit_async(request)
        except (InferenceError, ProfileLookupError, Overloaded) as error:
            return client_error(error)

    @bentoml.api
    def explain(self, request: ExplainRequest, /) -> ExplainResponse:
        """Recommendations with contributors, the most impactful and the most surprising entries."""
        try:
            return self.batcher.explain(self._with_profile(request))
        except (InferenceError, ProfileLookupError, Overloaded) as error:
            return client_error(error)

    @bentoml.api
    def predict(self, request: PredictRequest, /) -> PredictResponse:
        """What the user would think of named shows: probability and predicted rating of each, a
        profile show predicted with itself held out."""
        try:
            return self.batcher.predict(self._with_profile(request))
        except (InferenceError, ProfileLookupError, Overloaded) as error:
            return client_error(error)

    @routes.post(EXPORT_PATH)
    async def profile_from_export(self, request: Request) -> JSONResponse:
        """MyAnimeList's list export (XML, plain or gzip, as the request body) as a profile."""
        try:
            entries = await asyncio.to_thread(parse_list_export, await request.body())
        except ExportError as error:
            return client_error(error)
        except RequestTooLarge as error:  # a chunked body that ran past the upload limit
            return JSONResponse({"error": str(error)}, status_code=413)
        return JSONResponse({"profile": [entry.model_dump() for entry in entries]})

    @routes.get("/")
    def page(self) -> FileResponse:
        """The web page: a username or an export in, recommendations with their reasons out."""
        return FileResponse(STATIC / "index.html")

    @routes.get("/model")
    def model(self, response: Response) -> ModelInfo:
        """The model being served, with its registry stage and metrics."""
        engine = self.models.current
        info = engine.info().model_copy(update={"item_url": settings.item_url})
        response.headers["X-Sprout-Compilations"] = str(engine.compilations)
        try:
            record = self.registry.get(info.version)
        except UnknownVersion:  # unreadable this instant: the engine's own view stands
            return info
        return info.model_copy(update={"stage": record.stage, "metrics": record.metadata.get("metrics", info.metrics)})

    @bentoml.on_shutdown
    def stop(self) -> None:
        self.models.stop()
        self.lists.close()
        self.batcher.close()


Sprout.add_asgi_middleware(RequestGuard, max_bytes=settings.max_body_bytes, uploads={EXPORT_PATH: MAX_EXPORT_BYTES})
Sprout.add_asgi_middleware(
    AdmissionGate, max_in_flight=settings.max_queue, retry_after_s=RETRY_AFTER_S,
    on_shed=lambda: service_metrics().shed("gate"),
)
