"""Admin routes under ``/sim``: inspect and steer the simulation (no faults, no client id).

They have no authentication (the server binds loopback unless told otherwise), and every
parameter is bounded so that one request cannot exhaust memory or wedge the server: an
out-of-range value is a 400 whose message names the field.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, StringConstraints
from starlette.responses import Response

from sprout.malsim.faults import FaultConfig, FaultInjector
from sprout.malsim.middleware import RequestStats
from sprout.malsim.population import Population
from sprout.malsim.render import error_response, json_response


MAX_ADVANCE_DAYS = 3650  # ten years of evolution in one request; the work grows with the days
MAX_USERNAMES_PER_REQUEST = 10_000
MAX_PAGE = 100_000  # usernames one GET /sim/usernames returns
MAX_SEED = 2**63 - 1  # numpy seeds must be non-negative
Username = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class AdvanceRequest(BaseModel):
    days: float = Field(gt=0, le=MAX_ADVANCE_DAYS, description="How far to move the simulated clock.")
    seed: int | None = Field(
        None, ge=0, le=MAX_SEED, description="Seed of the changes; by default derived from the population's."
    )


class UsernamesRequest(BaseModel):
    usernames: list[Username] = Field(max_length=MAX_USERNAMES_PER_REQUEST)


class BoundedFaultConfig(FaultConfig):
    """`FaultConfig` as the admin route accepts it: delays and bursts a server can live with."""

    burst_429: int = Field(1, ge=1, le=100_000, description="Requests answered 429 in a row once a burst starts.")
    retry_after_s: float = Field(1.0, ge=0, le=86_400, description="Sent as Retry-After, rounded up to whole seconds.")
    slow_s: float = Field(1.0, ge=0, le=600, description="Delay of a slow response.")
    retry_after_date: str | None = Field(
        None, max_length=200, description="Sent as Retry-After instead of retry_after_s when set."
    )
    seed: int | None = Field(
        0, ge=0, le=MAX_SEED, description="Seed of the fault draws; None draws from fresh entropy."
    )


class PrivacyRequest(UsernamesRequest):
    private: bool = True


def _unknown(error: KeyError) -> Response:
    return error_response(404, "not_found", f"unknown user {error.args[0]!r}")


def admin_router(population: Population, faults: FaultInjector, stats: RequestStats) -> APIRouter:
    router = APIRouter(prefix="/sim")

    @router.get("/usernames")
    async def usernames(
        offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 1000
    ) -> Response:
        """Living accounts (private ones included), in creation order."""
        names = population.usernames()
        return json_response({"usernames": names[offset : offset + limit], "total": len(names)})

    @router.post("/advance")
    def advance(body: AdvanceRequest) -> Response:  # sync: runs in a worker thread, off the event loop
        return json_response(population.advance(body.days, body.seed))

    @router.get("/faults")
    async def get_faults() -> Response:
        return json_response(faults.config.model_dump())

    @router.put("/faults")
    async def put_faults(config: BoundedFaultConfig) -> Response:
        faults.configure(FaultConfig(**config.model_dump()))
        return json_response(faults.config.model_dump())

    @router.get("/stats")
    async def get_stats() -> Response:
        return json_response(stats.snapshot())

    @router.delete("/stats")
    async def reset_stats() -> Response:
        stats.reset()
        return json_response(stats.snapshot())

    @router.get("/truth/{username}")
    async def truth(username: str) -> Response:
        try:
            rows = population.truth(username)
        except KeyError as error:
            return _unknown(error)
        return json_response([{**row, "updated_at": row["updated_at"].isoformat()} for row in rows])

    @router.get("/clock")
    async def clock() -> Response:
        now = population.now
        return json_response({"now": now.isoformat(), "epoch_s": int(now.timestamp())})

    @router.get("/info")
    async def info() -> Response:
        return json_response(
            {
                "now": population.now.isoformat(),
                "users": population.n_users,
                "entries": population.n_entries,
                "shows": population.catalogue.n_shows,
                "seed": population.seed,
            }
        )

    @router.post("/private")
    def set_private(body: PrivacyRequest) -> Response:
        try:
            population.set_private(body.usernames, body.private)
        except KeyError as error:
            return _unknown(error)
        return json_response({"updated": len(body.usernames)})

    @router.post("/delete")
    def delete(body: UsernamesRequest) -> Response:
        try:
            population.delete_user(body.usernames)
        except KeyError as error:
            return _unknown(error)
        return json_response({"deleted": len(body.usernames)})

    return router
