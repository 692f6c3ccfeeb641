"""Async client of the MAL API v2 (and the one website page used for discovery).

Every request goes through the same gates, in this order: the in-flight semaphore, the throttle
pause, the injected rate budget, then one HTTP attempt. Transient faults are retried by the
backoff policy (`retry.py`); everything else becomes one of the errors in `errors.py`, so a
caller never meets a raw ``httpx`` error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, SecretStr, ValidationError
from tenacity import RetryCallState

from sprout import __version__
from sprout.mal.errors import (
    AnimeNotFound,
    MalRequestError,
    MalResponseError,
    PrivateList,
    RetriesExhausted,
    Throttled,
    UserNotFound,
    redact_url,
)
from sprout.mal.limiter import RateLimiter, RequestLimiter
from sprout.mal.models import AnimeDetails, AnimeListItem, ApiError, ListEntry, RankingPage, RawListPage
from sprout.mal.retry import BackoffPolicy, Sleep, TransientFault, parse_retry_after

if TYPE_CHECKING:
    from sprout.config import Settings

log = logging.getLogger(__name__)

DEFAULT_ANIME_FIELDS = (
    "id,title,main_picture,alternative_titles,start_date,end_date,media_type,rating,genres,"
    "mean,popularity,num_list_users,num_episodes,related_anime"
)
MAX_LIST_PAGE_SIZE = 1000
MAX_RANKING_PAGE_SIZE = 500
# Real lists hold at most a few tens of thousands of entries: tens of pages at 1000 a page.
DEFAULT_MAX_LIST_PAGES = 100
CLIENT_ID_HEADER = "X-MAL-CLIENT-ID"

# Profile links on the recently-online page, relative or absolute.
_PROFILE_LINK = re.compile(r"""href=["'](?:https?://[^/"']+)?/profile/([A-Za-z0-9_-]{2,16})["']""")

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass
class ClientStats:
    """Counters since the client was made; read them with ``snapshot()`` or ``as_dict()``."""

    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0
    status_429: int = 0
    status_5xx: int = 0
    timeouts: int = 0
    transport_errors: int = 0  # refused or dropped connections, other than timeouts
    malformed: int = 0  # 2xx bodies that were not valid JSON or not the documented shape

    def snapshot(self) -> ClientStats:
        return replace(self)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class UserList:
    """A user's list as fetched.

    ``complete`` is True only for a full fetch that kept every item: then entries missing from it
    were deleted by the user. ``requests`` counts the HTTP requests the fetch sent, retries
    included; ``skipped`` the items left out because they broke the documented shape.
    """

    username: str
    entries: list[ListEntry]
    complete: bool
    requests: int
    skipped: int = 0


@dataclass(frozen=True)
class _Reply:
    response: httpx.Response
    data: Any = None  # the decoded JSON of a 2xx JSON reply
    attempts: int = 1

    @property
    def status(self) -> int:
        return self.response.status_code


# Vets a decoded 2xx body inside the retry loop; raises TransientFault for a body worth asking again.
BodyCheck = Callable[[Any], None]


def _require_list_status(data: Any) -> None:
    """A list page was asked for ``list_status``: items without it are a broken answer, not a list
    (stored as one, a full listing of them would delete the user's whole stored list)."""
    items = data.get("data") if isinstance(data, dict) else None
    if isinstance(items, list) and any(isinstance(i, dict) and i.get("list_status") is None for i in items):
        raise TransientFault("list items lack the list_status asked for")


def _checked_next_url(page_url: str, next_url: str) -> str:
    if not next_url.startswith(("http://", "https://")):
        raise MalResponseError(page_url, "paging.next is not an http(s) URL")
    try:
        httpx.URL(next_url)
    except httpx.InvalidURL as exc:
        raise MalResponseError(page_url, f"paging.next is not a valid URL ({exc})") from None
    return next_url


class _ForbiddenStreak:
    """Distinct users answered 403 in a row. Enough of them means throttling, not private lists."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self._users: list[str] = []

    def record(self, username: str) -> list[str] | None:
        """Add a 403; returns the streak's users (and starts a new streak) once it is long enough."""
        if username not in self._users:
            self._users.append(username)
        if len(self._users) < self.threshold:
            return None
        users, self._users = self._users, []
        return users

    def reset(self) -> None:
        self._users.clear()


def _origin(url: str) -> tuple[str, str, int | None]:
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host, parsed.port


def _first_problem(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


class MalClient:
    """Rate-limited, retrying reader of the MAL API v2.

    One shared keep-alive connection pool; at most ``max_in_flight`` requests at once; the
    ``limiter`` is awaited before every attempt (default: 1 request/s, the safe rate for the
    real API; pass ``Unlimited()`` for a local simulator). The client id is sent only to the API's
    own origin and never appears in reprs, logs or errors.
    """

    def __init__(
        self,
        api_url: str,
        client_id: str | None,
        *,
        web_url: str | None = None,
        limiter: RequestLimiter | None = None,
        max_in_flight: int = 4,
        timeout_s: float = 30.0,
        max_attempts: int = 6,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 120.0,
        throttle_403_streak: int = 5,
        throttle_pause_s: float = 300.0,
        max_list_pages: int = DEFAULT_MAX_LIST_PAGES,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        if throttle_403_streak < 2:
            raise ValueError(f"throttle_403_streak must be >= 2, got {throttle_403_streak}")
        if throttle_pause_s < 0 or timeout_s <= 0:
            raise ValueError("throttle_pause_s must be >= 0 and timeout_s > 0")
        if max_list_pages < 1:
            raise ValueError(f"max_list_pages must be >= 1, got {max_list_pages}")
        self.max_list_pages = max_list_pages
        self.api_url = api_url.rstrip("/")
        self.web_url = web_url.rstrip("/") if web_url else None
        self.limiter: RequestLimiter = limiter if limiter is not None else RateLimiter(1.0)
        self.stats = ClientStats()
        self._client_id = SecretStr(client_id) if client_id else None
        self._api_origin = _origin(self.api_url)
        self._sleep: Sleep = sleep or asyncio.sleep
        self._policy = BackoffPolicy(max_attempts, backoff_base_s, backoff_max_s, self._sleep)
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._streak = _ForbiddenStreak(throttle_403_streak)
        self._throttle_pause_s = throttle_pause_s
        self._paused_until = 0.0  # time.monotonic() instant before which nothing is sent
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight),
            headers={"User-Agent": f"sprout/{__version__}"},
            # Not followed: a redirect to another host would carry the client id header there.
            follow_redirects=False,
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        limiter: RequestLimiter | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> MalClient:
        return cls(
            settings.mal_api_url,
            settings.client_id(),
            web_url=settings.mal_web_url,
            limiter=limiter if limiter is not None else RateLimiter(settings.mal_requests_per_second),
            max_in_flight=settings.mal_max_in_flight,
            timeout_s=settings.mal_timeout_s,
            max_attempts=settings.mal_max_attempts,
            backoff_base_s=settings.mal_backoff_base_s,
            backoff_max_s=settings.mal_backoff_max_s,
            throttle_403_streak=settings.mal_throttle_403_streak,
            throttle_pause_s=settings.mal_throttle_pause_s,
            max_list_pages=settings.mal_max_list_pages,
            transport=transport,
        )

    async def __aenter__(self) -> MalClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        client_id = "<set>" if self._client_id else None
        return (
            f"MalClient(api_url={self.api_url!r}, web_url={self.web_url!r}, "
            f"client_id={client_id}, limiter={self.limiter!r})"
        )

    @property
    def paused_for_s(self) -> float:
        """Seconds left of the pause that a 403 streak started (0 when not paused)."""
        return max(0.0, self._paused_until - time.monotonic())

    # ---- endpoints -------------------------------------------------------------------------

    async def fetch_animelist(
        self, username: str, *, since: datetime | None = None, page_size: int = MAX_LIST_PAGE_SIZE
    ) -> UserList:
        """A user's list: every page (``since=None``), or only entries updated after ``since``.

        Incremental mode asks for the list sorted by ``updated_at``, newest first, and stops at
        the first page that reaches ``since``. Of duplicate anime ids the first is kept. Items
        without the ``list_status`` asked for make the page malformed (retried, then
        `RetriesExhausted`); items that break the documented shape otherwise (ids or counts beyond
        32 bits, say) are skipped and counted, and a full fetch that skipped any is not
        ``complete``, so it deletes nothing. More than ``max_list_pages`` pages is a
        `MalResponseError`.
        """
        if not 1 <= page_size <= MAX_LIST_PAGE_SIZE:
            raise ValueError(f"page_size must be in 1..{MAX_LIST_PAGE_SIZE}, got {page_size}")
        mark = None if since is None else (since if since.tzinfo else since.replace(tzinfo=timezone.utc))
        params: dict[str, str | int] = {"fields": "list_status", "limit": page_size, "nsfw": "true"}
        if mark is not None:
            params["sort"] = "list_updated_at"
        url = str(httpx.URL(f"{self.api_url}/users/{quote(username, safe='')}/animelist", params=params))

        entries: dict[int, ListEntry] = {}
        requests = skipped = 0
        read_urls: set[str] = set()
        while True:
            if len(read_urls) == self.max_list_pages:
                raise MalResponseError(url, f"the list runs past {self.max_list_pages} pages")
            read_urls.add(url)
            reply = await self._get_user_page(username, url)
            requests += reply.attempts
            page = self._parse(RawListPage, reply, url)
            reached_mark = False
            for raw in page.data:
                entry = self._list_entry(raw, url)
                if entry is None:
                    skipped += 1
                    continue
                if mark is not None and entry.updated_at <= mark:
                    reached_mark = True
                    continue
                entries.setdefault(entry.anime_id, entry)
            next_url = page.paging.next
            if reached_mark or not next_url:
                break
            next_url = _checked_next_url(url, next_url)
            if next_url in read_urls:
                raise MalResponseError(url, "paging.next points back to a page already read")
            url = next_url  # followed as given: it carries the offset and every parameter
        complete = mark is None and skipped == 0
        return UserList(username, list(entries.values()), complete=complete, requests=requests, skipped=skipped)

    def _list_entry(self, raw: dict[str, Any], url: str) -> ListEntry | None:
        """The entry of one raw list item, or None (logged, counted as malformed) when it is unusable."""
        try:
            entry = ListEntry.from_item(AnimeListItem.model_validate(raw))
        except ValidationError as exc:
            self.stats.malformed += 1
            log.warning("skipping a list item from %s: %s", redact_url(url), _first_problem(exc))
            return None
        return entry

    async def fetch_anime(self, anime_id: int, fields: str = DEFAULT_ANIME_FIELDS) -> AnimeDetails:
        if anime_id < 1:
            raise ValueError(f"anime_id must be positive, got {anime_id}")
        url = str(httpx.URL(f"{self.api_url}/anime/{int(anime_id)}", params={"fields": fields}))
        reply = await self._get(url)
        if reply.status == 404:
            raise AnimeNotFound(anime_id)
        self._raise_unless_success(reply)
        return self._parse(AnimeDetails, reply, url)

    async def fetch_ranking(
        self, *, ranking_type: str = "bypopularity", limit: int = MAX_RANKING_PAGE_SIZE, offset: int = 0
    ) -> RankingPage:
        if not 1 <= limit <= MAX_RANKING_PAGE_SIZE:
            raise ValueError(f"limit must be in 1..{MAX_RANKING_PAGE_SIZE}, got {limit}")
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        params = {"ranking_type": ranking_type, "limit": limit, "offset": offset}
        url = str(httpx.URL(f"{self.api_url}/anime/ranking", params=params))
        reply = await self._get(url)
        self._raise_unless_success(reply)
        return self._parse(RankingPage, reply, url)

    async def fetch_recently_online(self) -> list[str]:
        """Usernames linked from the website's recently-online page, deduplicated, in page order."""
        if self.web_url is None:
            raise ValueError("fetch_recently_online needs the client's web_url")
        reply = await self._get(f"{self.web_url}/users.php", expect_json=False)
        self._raise_unless_success(reply)
        return list(dict.fromkeys(_PROFILE_LINK.findall(reply.response.text)))

    # ---- status handling -------------------------------------------------------------------

    async def _get_user_page(self, username: str, url: str) -> _Reply:
        reply = await self._get(url, check=_require_list_status)
        if reply.status == 403:
            streak = self._streak.record(username)
            if streak is None:
                raise PrivateList(username)
            self._paused_until = max(self._paused_until, time.monotonic() + self._throttle_pause_s)
            log.warning(
                "MAL answered 403 for %d different users in a row: pausing all requests for %.0f s",
                len(streak),
                self._throttle_pause_s,
            )
            raise Throttled(streak)
        if reply.status == 404 or reply.response.is_success:
            self._streak.reset()
        if reply.status == 404:
            raise UserNotFound(username)
        self._raise_unless_success(reply)
        return reply

    def _raise_unless_success(self, reply: _Reply) -> None:
        if reply.response.is_success:
            return
        try:
            error = ApiError.model_validate_json(reply.response.content)
        except ValidationError:  # not the API's JSON error shape (an HTML page, say)
            error = ApiError()
        raise MalRequestError(reply.status, error.error, error.message)

    def _parse(self, model: type[ModelT], reply: _Reply, url: str) -> ModelT:
        try:
            return model.model_validate(reply.data)
        except ValidationError as exc:
            # Valid JSON of the wrong shape will not fix itself: no retry.
            self.stats.malformed += 1
            raise MalResponseError(url, _first_problem(exc)) from None

    # ---- transport -------------------------------------------------------------------------

    async def _get(self, url: str, *, expect_json: bool = True, check: BodyCheck | None = None) -> _Reply:
        """GET with retries on transient faults; returns the first non-transient reply.

        ``check`` vets a decoded 2xx body; a TransientFault it raises is retried like any other.
        """
        headers = self._headers_for(url)
        attempts = 0

        def note_retry(state: RetryCallState) -> None:
            self.stats.retries += 1
            fault = state.outcome.exception() if state.outcome else None
            wait_s = state.next_action.sleep if state.next_action else 0.0
            log.info("retrying %s in %.2f s after %s (attempt %d)", redact_url(url), wait_s, fault, attempts)

        try:
            async for attempt in self._policy.retrying(before_sleep=note_retry):
                with attempt:
                    attempts += 1
                    reply = await self._attempt(url, headers, expect_json)
                    if check is not None and reply.response.is_success:
                        try:
                            check(reply.data)
                        except TransientFault:
                            self.stats.malformed += 1
                            raise
        except TransientFault as fault:
            raise RetriesExhausted(url, fault.status, attempts, fault.reason) from fault
        return replace(reply, attempts=attempts)

    async def _attempt(self, url: str, headers: dict[str, str], expect_json: bool) -> _Reply:
        async with self._in_flight:
            pause_s = self._paused_until - time.monotonic()
            if pause_s > 0:
                await self._sleep(pause_s)
            await self.limiter.acquire()
            self.stats.requests += 1
            try:
                response = await self._http.get(url, headers=headers)
            except httpx.TimeoutException as exc:
                self.stats.timeouts += 1
                raise TransientFault(f"timeout ({type(exc).__name__})") from exc
            except httpx.TransportError as exc:
                self.stats.transport_errors += 1
                raise TransientFault(f"connection error ({type(exc).__name__})") from exc
            except httpx.DecodingError as exc:  # a body that does not match its Content-Encoding
                self.stats.malformed += 1
                raise TransientFault("undecodable body (Content-Encoding)") from exc

        status = response.status_code
        if status in (408, 429) or 500 <= status < 600:
            if status == 429:
                self.stats.status_429 += 1
                reason = "rate limited"
            elif status >= 500:
                self.stats.status_5xx += 1
                reason = "server error"
            else:
                reason = "request timeout"
            retry_after_s = parse_retry_after(response.headers.get("Retry-After"))
            raise TransientFault(reason, status=status, retry_after_s=retry_after_s)
        if not (expect_json and response.is_success):
            return _Reply(response)
        try:
            data = json.loads(response.content)
        except ValueError as exc:  # a truncated body; the next attempt usually gets all of it
            self.stats.malformed += 1
            raise TransientFault("invalid JSON body", status=status) from exc
        return _Reply(response, data)

    def _headers_for(self, url: str) -> dict[str, str]:
        # Only the API's own origin gets the client id (paging links are followed as given).
        if self._client_id is None or _origin(url) != self._api_origin:
            return {}
        return {CLIENT_ID_HEADER: self._client_id.get_secret_value()}
