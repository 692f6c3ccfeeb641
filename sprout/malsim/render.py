"""Rendering API bodies: list items, paging links, JSON bytes and the recently-online page."""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response

from sprout.mal.models import LIST_STATUSES
from sprout.malsim.catalogue import Catalogue, ShowStats, show_object
from sprout.malsim.lists import Lists, format_packed, iso_times


def dump_json(value) -> bytes:
    """Compact JSON bytes; orjson is several times faster than the standard library on big pages."""
    return orjson.dumps(value)


def json_response(value, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dump_json(value), status_code=status, media_type="application/json; charset=UTF-8", headers=headers)


def error_response(status: int, error: str, message: str = "") -> Response:
    return json_response({"error": error, "message": message}, status)


def parse_fields(text: str | None) -> list[str]:
    """Top-level names of a MAL ``fields`` parameter: ``"list_status{score},mean"`` → both names."""
    if not text:
        return []
    names, depth, current = [], 0, []
    for char in text:
        if char == "{":
            depth += 1
        elif char == "}":
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            names.append("".join(current).strip())
            current = []
        elif depth == 0:
            current.append(char)
    names.append("".join(current).strip())
    return [n for n in names if n]


def request_base(request: Request) -> str:
    """Scheme and host the request came to (``http://127.0.0.1:8765``): the simulator's own
    address as its client sees it, for the URLs it hands out (paging links, pictures)."""
    return str(request.base_url).rstrip("/")


def nodes_for(
    catalogue: Catalogue, stats: ShowStats, shows: Sequence[int], fields: Sequence[str], *, base: str
) -> list[dict]:
    extra = [f for f in fields if f != "list_status"]
    if not extra:
        nodes = catalogue.nodes(base)
        return [nodes[s] for s in shows]
    return [show_object(catalogue, stats, s, extra, base=base) for s in shows]


def list_items(
    lists: Lists, catalogue: Catalogue, stats: ShowStats, rows: np.ndarray, fields: Sequence[str], *, base: str
) -> list[dict]:
    """The ``data`` array of a list page for the given rows (in page order); pictures point at
    the simulator at ``base``."""
    nodes = nodes_for(catalogue, stats, lists.show[rows].tolist(), fields, base=base)
    if "list_status" not in fields:
        return [{"node": node} for node in nodes]
    status = lists.status[rows].tolist()
    score = lists.score[rows].tolist()
    episodes = lists.episodes[rows].tolist()
    rewatching = lists.rewatching[rows].tolist()
    updated = iso_times(lists.updated_at[rows])
    starts = lists.start_date[rows].tolist()
    finishes = lists.finish_date[rows].tolist()
    items = []
    for i, node in enumerate(nodes):
        entry = {
            "status": LIST_STATUSES[status[i]],
            "score": score[i],
            "num_episodes_watched": episodes[i],
            "is_rewatching": rewatching[i],
            "updated_at": updated[i],
        }
        if starts[i]:  # MAL leaves unknown dates out
            entry["start_date"] = format_packed(starts[i])
        if finishes[i]:
            entry["finish_date"] = format_packed(finishes[i])
        items.append({"node": node, "list_status": entry})
    return items


def paging(request: Request, offset: int, limit: int, total: int) -> dict[str, str]:
    """``next`` / ``previous`` as full URLs on the host the request came to; ``{}`` when alone."""
    links = {}
    if offset + limit < total:
        links["next"] = str(request.url.include_query_params(offset=offset + limit, limit=limit))
    if offset > 0:
        links["previous"] = str(request.url.include_query_params(offset=max(offset - limit, 0), limit=limit))
    return links


def users_page(names: Sequence[str]) -> str:
    """The website's "recently online users" page, one profile link per user."""
    cells = "\n".join(
        f'<td class="borderClass" align="center" valign="bottom">'
        f'<div><a href="/profile/{html.escape(n)}">{html.escape(n)}</a></div>'
        f'<small>{minutes} minutes ago</small></td>'
        for minutes, n in enumerate(names, start=1)
    )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Users - MyAnimeList.net</title></head>\n"
        "<body><h1>Recently Online Users</h1>\n<table border=\"0\" cellpadding=\"0\" cellspacing=\"0\">"
        f"<tr>\n{cells}\n</tr></table></body></html>\n"
    )
