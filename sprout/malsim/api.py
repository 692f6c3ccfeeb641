"""The MAL API v2 routes the platform uses, plus the website's recently-online users page and
the shows' cover images (generated SVGs, where MAL's CDN would serve pictures).

Handlers read one immutable snapshot (``population.state``) per request and slice its arrays:
no request does work proportional to the whole population, so they run on the event loop
directly (a thread hop would cost more than the work).
"""

from __future__ import annotations

import itertools
import re

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from sprout.malsim.catalogue import MEDIA_TYPES, cover_svg, show_object
from sprout.malsim.lists import STATUS_CODES
from sprout.malsim.population import Population
from sprout.malsim.render import (
    error_response,
    json_response,
    list_items,
    paging,
    parse_fields,
    request_base,
    users_page,
)

LIST_MAX_LIMIT = 1000
RANKING_MAX_LIMIT = 500
LIST_SORTS = ("list_score", "list_updated_at", "anime_title", "anime_start_date", "anime_id")
RANKING_TYPES = ("all", "bypopularity", "favorite", "tv", "ova", "movie", "special")
_PICTURE_NAME = re.compile(r"^([1-9][0-9]{0,9})(l?)\.svg$")  # see catalogue.PICTURE_PATH


class ApiError(Exception):
    """An error answered as MAL does: ``{"error": ..., "message": ...}``."""

    def __init__(self, status: int, error: str, message: str = "") -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status, self.error, self.message = status, error, message

    def response(self) -> Response:
        return error_response(self.status, self.error, self.message)


def _require_client(request: Request) -> None:
    if request.headers.get("x-mal-client-id") or request.headers.get("authorization", "").startswith("Bearer "):
        return
    raise ApiError(401, "invalid_client", "client id is missing: send the X-MAL-CLIENT-ID header")


def _int_param(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, "bad_request", f"invalid {name}") from None
    if value < low or (high is not None and value > high):
        raise ApiError(400, "bad_request", f"invalid {name}")
    return value


def _nsfw(request: Request) -> bool:
    return request.query_params.get("nsfw", "").lower() in ("true", "1")


def api_router(population: Population) -> APIRouter:
    router = APIRouter()
    catalogue = population.catalogue
    # Sort keys per show for the list orders that depend on the show.
    start_keys = np.array([int((d or "0").replace("-", "").ljust(8, "0")) for d in catalogue.start_dates])
    media_types = np.array(catalogue.media_types)
    page_draws = itertools.count()

    @router.get("/v2/users/{username}/animelist")
    async def animelist(request: Request, username: str) -> Response:
        _require_client(request)
        limit = _int_param(request, "limit", 100, 1, LIST_MAX_LIMIT)
        offset = _int_param(request, "offset", 0, 0, None)
        sort = request.query_params.get("sort") or "anime_title"
        status = request.query_params.get("status")
        if sort not in LIST_SORTS:
            raise ApiError(400, "bad_request", "invalid sort")
        if status is not None and status not in STATUS_CODES:
            raise ApiError(400, "bad_request", "invalid status")
        fields = parse_fields(request.query_params.get("fields"))
        state = population.state
        user = state.users.existing(username)
        if user is None:
            raise ApiError(404, "not_found", "invalid q")
        if state.users.private[user]:
            raise ApiError(403, "forbidden", "")
        lists = state.lists
        rows = np.arange(lists.offsets[user], lists.offsets[user + 1])  # [n_user_entries], title order
        keep = np.ones(len(rows), bool)
        if status is not None:
            keep &= lists.status[rows] == STATUS_CODES[status]
        if not _nsfw(request):
            keep &= ~catalogue.is_rx[lists.show[rows]]
        rows = rows[keep]
        ids = catalogue.ids[lists.show[rows]]
        if sort == "list_updated_at":
            rows = rows[np.lexsort((ids, -lists.updated_at[rows]))]
        elif sort == "list_score":
            rows = rows[np.lexsort((ids, -lists.score[rows].astype(np.int64)))]
        elif sort == "anime_start_date":
            rows = rows[np.lexsort((ids, -start_keys[lists.show[rows]]))]
        elif sort == "anime_id":
            rows = rows[np.argsort(ids, kind="stable")]
        page = rows[offset : offset + limit]
        body = {
            "data": list_items(lists, catalogue, state.stats, page, fields, base=request_base(request)),
            "paging": paging(request, offset, limit, len(rows)),
        }
        return json_response(body)

    @router.get("/v2/anime/ranking")
    async def ranking(request: Request) -> Response:
        _require_client(request)
        kind = request.query_params.get("ranking_type")
        if kind not in RANKING_TYPES:
            raise ApiError(400, "bad_request", "invalid ranking_type")
        limit = _int_param(request, "limit", 100, 1, RANKING_MAX_LIMIT)
        offset = _int_param(request, "offset", 0, 0, None)
        fields = parse_fields(request.query_params.get("fields"))
        stats = population.state.stats
        order = stats.by_popularity if kind in ("bypopularity", "favorite") else stats.by_score
        if kind in MEDIA_TYPES:
            order = order[media_types[order] == kind]
        ranks = np.arange(1, len(order) + 1)  # rank within the ranking, rx shows included
        if not _nsfw(request):
            shown = ~catalogue.is_rx[order]
            order, ranks = order[shown], ranks[shown]
        page = slice(offset, offset + limit)
        base = request_base(request)
        data = [
            {"node": show_object(catalogue, stats, show, fields, base=base), "ranking": {"rank": rank}}
            for show, rank in zip(order[page].tolist(), ranks[page].tolist())
        ]
        return json_response({"data": data, "paging": paging(request, offset, limit, len(order))})

    @router.get("/v2/anime/{anime_id}")
    async def anime(request: Request, anime_id: str) -> Response:
        _require_client(request)
        try:
            show = catalogue.index_of.get(int(anime_id))
        except ValueError:
            raise ApiError(400, "bad_request", "invalid anime_id") from None
        if show is None:
            raise ApiError(404, "not_found", "")
        fields = parse_fields(request.query_params.get("fields"))
        body = show_object(catalogue, population.state.stats, show, fields, base=request_base(request))
        return json_response(body)

    @router.get("/images/anime/{name}")
    async def picture(name: str) -> Response:
        """A show's cover, as ``main_picture`` links it: public, like MAL's CDN (no client id)."""
        match = _PICTURE_NAME.match(name)
        show = catalogue.index_of.get(int(match.group(1))) if match else None
        if show is None:
            return Response("not found\n", status_code=404, media_type="text/plain")
        return Response(
            cover_svg(catalogue, show, match.group(2)), media_type="image/svg+xml",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    @router.get("/users.php", response_class=HTMLResponse)
    async def recently_online(request: Request) -> HTMLResponse:
        """20 to 30 living accounts, likelier the more active; changes with every call and with
        the clock, reproducibly for a given population seed."""
        state = population.state
        rng = np.random.default_rng([population.seed, state.now, next(page_draws)])
        living = np.flatnonzero(~state.users.deleted)
        if len(living) == 0:
            return HTMLResponse(users_page([]))
        weight = state.traits.activity[living] + 1e-3
        want = min(int(rng.integers(20, 31)), len(living))
        drawn = rng.choice(living, size=4 * want, p=weight / weight.sum())
        _, first = np.unique(drawn, return_index=True)
        chosen = drawn[np.sort(first)][:want]
        return HTMLResponse(users_page([state.users.names[u] for u in chosen.tolist()]))

    return router
