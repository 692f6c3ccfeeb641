"""What the HTTP layer refuses before BentoML parses a request, and how client errors are logged.

BentoML has no body-size setting (``http.max_request_size`` is ignored), answers a
``multipart/form-data`` request without a boundary with a 500, and logs every 400 with a full
traceback. `RequestGuard` answers 413 for bodies over the limit (declared or counted, chunked
too) and 415 for any body that is not JSON, except on upload paths, which take any body up to
their own limit; `AdmissionGate` answers 503 with ``Retry-After`` when a worker already holds as
many POST requests as it may; `quiet_client_errors` turns the tracebacks of client mistakes into
one-line log records.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from bentoml.exceptions import BentoMLException

MAX_BODY_BYTES = 1 << 20  # 1 MiB: a 5,000-entry profile is about 300 KB of JSON
JSON_MEDIA_TYPES = frozenset({"application/json"})
BENTOML_HTTP_LOGGER = "bentoml._internal.server.http_app"


class RequestTooLarge(BentoMLException):
    """A body that grew past the limit while it was read; BentoML answers its ``error_code``."""

    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def _media_type(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"content-type":
            return value.decode("latin-1").split(";")[0].strip().lower()
    return None


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value)  # the HTTP server has already rejected malformed lengths
    return None


class RequestGuard:
    """ASGI middleware: 415 for a body that is not JSON, 413 for one over ``max_bytes``.

    A declared ``Content-Length`` over the limit is answered at once; otherwise the bytes are
    counted as the app reads them, and reading past the limit raises `RequestTooLarge` inside
    the API handler, which BentoML turns into a 413.
    """

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES, uploads: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.uploads = dict(uploads or {})  # path -> its own limit; any content type

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        limit = self.uploads.get(scope["path"])
        media_type = _media_type(headers)
        if limit is None and media_type is not None and media_type not in JSON_MEDIA_TYPES:
            await _reply(send, HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"unsupported content type {media_type!r}; send application/json")
            return
        limit = self.max_bytes if limit is None else limit
        declared = _content_length(headers)
        if declared is not None and declared > limit:
            await _reply(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _too_large(limit))
            return
        await self.app(scope, _counting(receive, limit), send)


class AdmissionGate:
    """ASGI middleware: at most ``max_in_flight`` POST requests in this worker at once.

    The next one is answered 503 with ``Retry-After: retry_after_s`` before its body is read, so a
    burst costs the refused clients a few milliseconds instead of a wait in a queue nobody bounds
    (the request threads' own queue). GET requests — the page, ``/model``, ``/livez``,
    ``/readyz``, ``/metrics`` — never wait here. ``on_shed`` hears of each refusal.
    """

    def __init__(
        self, app: Any, max_in_flight: int, retry_after_s: int = 1, on_shed: Callable[[], None] | None = None
    ) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.retry_after_s = retry_after_s
        self.on_shed = on_shed
        self.in_flight = 0  # touched only on the event loop

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            if self.on_shed is not None:
                self.on_shed()
            await _reply(
                send, HTTPStatus.SERVICE_UNAVAILABLE,
                f"the service is busy ({self.max_in_flight} requests in progress); retry in {self.retry_after_s} s",
                [(b"retry-after", str(self.retry_after_s).encode())],
            )
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


def _too_large(limit: int) -> str:
    return f"request body is larger than {limit:,} bytes"


def _counting(receive: Any, limit: int) -> Any:
    received = 0

    async def counted() -> dict:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise RequestTooLarge(_too_large(limit))
        return message

    return counted


async def _reply(send: Any, status: HTTPStatus, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": int(status),
            "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _is_client_error(error: BaseException | None) -> bool:
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return True
    return isinstance(error, BentoMLException) and 400 <= int(error.error_code) < 500


class ClientErrorFilter(logging.Filter):
    """Logs a client mistake (400, 413...) as one INFO line instead of an ERROR traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if _is_client_error(error):
            record.msg = f"{record.getMessage()}: client error: {type(error).__name__}"
            record.args = ()
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_client_errors() -> None:
    """Install `ClientErrorFilter` on BentoML's HTTP logger (once per process)."""
    logger = logging.getLogger(BENTOML_HTTP_LOGGER)
    if not any(isinstance(existing, ClientErrorFilter) for existing in logger.filters):
        logger.addFilter(ClientErrorFilter())
