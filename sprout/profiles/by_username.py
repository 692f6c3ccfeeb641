"""A MAL user's public list as a profile, fetched through the platform's MAL client.

The client brings the crawler's origin rules, rate budget and retries; this adds what a web
request needs on top: a username check before anything is sent, a deadline for the whole
fetch, a bounded per-username cache with a time to live (one fetch serves every request for a
while, and concurrent requests for one name share a fetch), and one typed error per answer a
person can get, each with the HTTP status that says it.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable

import httpx
from cachetools import TTLCache

from sprout.inference.requests import ProfileEntry
from sprout.mal.client import MalClient, UserList
from sprout.mal.errors import MalError, MalRequestError, PrivateList, Throttled, UserNotFound

USERNAME = re.compile(r"[A-Za-z0-9_-]{2,16}")  # MAL's rule for names
DEFAULT_RETRY_AFTER_S = 30


class ProfileLookupError(Exception):
    """A username that gives no profile; ``status`` is the HTTP status that says why."""

    status = 400
    retry_after_s: int | None = None


class InvalidUsername(ProfileLookupError):
    status = 400

    def __init__(self, username: str) -> None:
        super().__init__(f"{username!r} is not a MyAnimeList username (2 to 16 letters, digits, _ or -)")


class UnknownUser(ProfileLookupError):
    status = 404

    def __init__(self, username: str) -> None:
        super().__init__(f"MyAnimeList has no user called {username!r}")


class PrivateProfile(ProfileLookupError):
    status = 403

    def __init__(self, username: str) -> None:
        super().__init__(f"{username}'s anime list is private; export it on MyAnimeList and upload the file instead")


class MalUnavailable(ProfileLookupError):
    status = 503

    def __init__(self, reason: str, retry_after_s: float = DEFAULT_RETRY_AFTER_S) -> None:
        super().__init__(f"MyAnimeList cannot be reached right now ({reason}); try again in a moment")
        self.retry_after_s = max(1, int(retry_after_s + 0.999))


class NoClientId(ProfileLookupError):
    status = 503

    def __init__(self) -> None:
        super().__init__("looking up usernames needs a MAL API client id: set SPROUT_MAL_CLIENT_ID on the server")


def profile_of(user_list: UserList) -> list[ProfileEntry]:
    """The fetched list as the entries a client would have posted."""
    return [ProfileEntry(anime_id=e.anime_id, score=e.score, status=e.status) for e in user_list.entries]


class ListFetcher:
    """Profiles by username, cached for ``ttl_s`` (at most ``cache_size`` names)."""

    def __init__(
        self,
        client_factory: Callable[[], MalClient] | None,
        *,
        deadline_s: float = 10.0,
        ttl_s: float = 600.0,
        cache_size: int = 1024,
        clock: Callable[[], float] = time.monotonic,
        on_lookup: Callable[[bool], None] | None = None,
    ) -> None:
        self._client_factory = client_factory  # None: no client id configured
        self._on_lookup = on_lookup  # told True for a cache hit, False for a miss
        self._client: MalClient | None = None
        self.deadline_s = deadline_s
        self._cache: TTLCache[str, list[ProfileEntry]] = TTLCache(cache_size, ttl_s, timer=clock)
        self._in_flight: dict[str, asyncio.Future[list[ProfileEntry]]] = {}
        self.fetches = 0  # lists fetched from MAL (cache misses that reached it)

    async def profile(self, username: str) -> list[ProfileEntry]:
        """The user's list as profile entries, or a `ProfileLookupError`."""
        if not USERNAME.fullmatch(username):
            raise InvalidUsername(username)
        key = username.lower()  # MAL names are case-insensitive
        cached = self._cache.get(key)
        if self._on_lookup is not None:
            self._on_lookup(cached is not None)
        if cached is not None:
            return cached
        if (pending := self._in_flight.get(key)) is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[list[ProfileEntry]] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            entries = await self._fetch(username)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # marked as retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            self._in_flight.pop(key, None)
        self._cache[key] = entries
        future.set_result(entries)
        return entries

    async def _fetch(self, username: str) -> list[ProfileEntry]:
        if self._client_factory is None:
            raise NoClientId()
        if self._client is None:
            self._client = self._client_factory()
        client = self._client
        self.fetches += 1
        try:
            async with asyncio.timeout(self.deadline_s):
                return profile_of(await client.fetch_animelist(username))
        except TimeoutError:
            raise MalUnavailable(f"no complete answer within {self.deadline_s:g} s") from None
        except UserNotFound:
            raise UnknownUser(username) from None
        except PrivateList:
            raise PrivateProfile(username) from None
        except Throttled:
            raise MalUnavailable("it is throttling requests", client.paused_for_s or DEFAULT_RETRY_AFTER_S) from None
        except MalRequestError as error:
            if error.status == 400:
                raise InvalidUsername(username) from None
            raise MalUnavailable(f"it answered HTTP {error.status}") from None
        except (MalError, httpx.HTTPError) as error:
            raise MalUnavailable(type(error).__name__) from None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None




class ListFetcherThread:
    """A `ListFetcher` on an event loop of its own, for callers that are threads (a server's
    request workers): one MAL client, rate budget and cache for all of them, and a caller never
    blocks anyone's event loop while it waits."""

    def __init__(self, make_fetcher: Callable[[], ListFetcher]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="list-fetcher", daemon=True)
        self._thread.start()
        self.fetcher = self._run(self._made(make_fetcher), None)

    @staticmethod
    async def _made(make_fetcher: Callable[[], ListFetcher]) -> ListFetcher:
        return make_fetcher()  # made on the loop that will use it

    def _run(self, coroutine, timeout_s: float | None):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def profile(self, username: str) -> list[ProfileEntry]:
        """`ListFetcher.profile`, waited for from this thread (the fetcher keeps its own deadline)."""
        return self._run(self.fetcher.profile(username), self.fetcher.deadline_s + 5.0)

    def close(self) -> None:
        self._run(self.fetcher.aclose(), 10.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
