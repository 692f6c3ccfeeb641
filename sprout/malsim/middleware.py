"""ASGI middleware that counts requests per route family and applies faults to ``/v2`` requests
(and list lies to user-list pages).

It is plain ASGI (no ``BaseHTTPMiddleware``) so that the list endpoint's fast path stays fast.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter

from starlette.requests import Request

from sprout.malsim.faults import FaultInjector, tell_list_lies

_ERROR_NAMES = {
    429: ("too_many_requests", "Too many requests, slow down"),
    500: ("internal_server_error", ""),
    502: ("bad_gateway", ""),
    503: ("service_unavailable", ""),
}


def route_family(path: str) -> str:
    """The route family a path belongs to, as counted by ``/sim/stats``."""
    if path.startswith("/v2/"):
        if path.startswith("/v2/users/") and path.endswith("/animelist"):
            return "animelist"
        if path.startswith("/v2/anime/ranking"):
            return "ranking"
        if path.startswith("/v2/anime/"):
            return "anime"
        return "api_other"
    if path == "/users.php":
        return "users_page"
    if path.startswith("/images/"):
        return "images"
    if path.startswith("/sim/"):
        return "admin"
    return "other"


class RequestStats:
    """Responses served, per route family and status code (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, int]] = Counter()

    def record(self, family: str, status: int) -> None:
        with self._lock:
            self._counts[(family, status)] += 1

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def snapshot(self) -> dict:
        with self._lock:
            counts = dict(self._counts)
        routes: dict[str, dict[str, int]] = {}
        status: Counter[str] = Counter()
        for (family, code), n in sorted(counts.items()):
            routes.setdefault(family, {})[str(code)] = n
            status[str(code)] += n
        return {
            "requests": {family: sum(codes.values()) for family, codes in routes.items()},
            "status": dict(sorted(status.items())),
            "routes": routes,
            "total": sum(counts.values()),
        }


async def _send_error(send, status: int, retry_after: str | None) -> None:
    error, message = _ERROR_NAMES.get(status, ("error", ""))
    body = json.dumps({"error": error, "message": message}, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json; charset=UTF-8"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SimulatorMiddleware:
    def __init__(self, app, faults: FaultInjector, stats: RequestStats) -> None:
        self.app = app
        self.faults = faults
        self.stats = stats

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen = {"status": 500}

        async def counting_send(message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            await send(message)

        try:
            if scope["path"].startswith("/v2/"):
                await self._with_faults(scope, receive, counting_send)
            else:
                await self.app(scope, receive, counting_send)
        finally:
            self.stats.record(route_family(scope["path"]), seen["status"])

    async def _with_faults(self, scope, receive, send) -> None:
        fault = self.faults.draw()
        if fault.status is not None:
            retry_after = self.faults.config.retry_after_header if fault.status == 429 else None
            await _send_error(send, fault.status, retry_after)
            return
        if fault.delay_s > 0:
            await asyncio.sleep(fault.delay_s)
        lies = fault.lies if route_family(scope["path"]) == "animelist" else frozenset()
        if not (fault.truncate or lies):
            await self.app(scope, receive, send)
            return
        start: dict = {}
        chunks: list[bytes] = []

        async def rewriting_send(message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            if start.get("status") == 200 and lies:
                body = json.dumps(tell_list_lies(json.loads(body), lies, _next_page_url(scope))).encode()
                if "false_gzip" in lies:
                    headers.append((b"content-encoding", b"gzip"))
            if start.get("status") == 200 and fault.truncate and len(body) > 1:
                body = body[: len(body) // 2]  # a proper prefix of a JSON object never parses
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewriting_send)


def _next_page_url(scope) -> str:
    """The URL of the page after the one ``scope`` asks for (offset moved on by limit)."""
    request = Request(scope)
    try:
        offset = int(request.query_params.get("offset") or 0)
        limit = int(request.query_params.get("limit") or 100)
    except ValueError:
        offset, limit = 0, 100
    return str(request.url.include_query_params(offset=offset + limit, limit=limit))
