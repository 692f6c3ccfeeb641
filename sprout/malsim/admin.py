"""Admin routes under ``/sim``: inspect and steer the simulation (no faults, no client id)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.responses import Response

from sprout.malsim.faults import FaultConfig, FaultInjector
from sprout.malsim.middleware import RequestStats
from sprout.malsim.population import Population
from sprout.malsim.render import error_response, json_response


class AdvanceRequest(BaseModel):
    days: float = Field(ge=0, description="How far to move the simulated clock.")
    seed: int | None = Field(None, description="Seed of the changes; by default derived from the population's.")


class UsernamesRequest(BaseModel):
    usernames: list[str]


class PrivacyRequest(UsernamesRequest):
    private: bool = True


def _unknown(error: KeyError) -> Response:
    return error_response(404, "not_found", f"unknown user {error.args[0]!r}")


def admin_router(population: Population, faults: FaultInjector, stats: RequestStats) -> APIRouter:
    router = APIRouter(prefix="/sim")

    @router.get("/usernames")
    async def usernames(offset: int = 0, limit: int = 1000) -> Response:
        """Living accounts (private ones included), in creation order."""
        names = population.usernames()
        offset, limit = max(offset, 0), max(limit, 0)
        return json_response({"usernames": names[offset : offset + limit], "total": len(names)})

    @router.post("/advance")
    def advance(body: AdvanceRequest) -> Response:  # sync: runs in a worker thread, off the event loop
        return json_response(population.advance(body.days, body.seed))

    @router.get("/faults")
    async def get_faults() -> Response:
        return json_response(faults.config.model_dump())

    @router.put("/faults")
    async def put_faults(config: FaultConfig) -> Response:
        faults.configure(config)
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
