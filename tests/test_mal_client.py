"""Unit tests of the MAL client against in-process mock transports (no network)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest

from sprout.config import Settings
from sprout.mal import (
    AnimeNotFound,
    MalClient,
    MalRequestError,
    MalResponseError,
    PrivateList,
    RateLimiter,
    RecentlyOnlineSource,
    RetriesExhausted,
    SeedListSource,
    Throttled,
    Unlimited,
    UserNotFound,
    parse_seed_list,
)
from sprout.mal.retry import parse_retry_after

API = "http://mal.test/v2"
WEB = "http://web.test"
SECRET = "s3cr3t-client-id-0123456789"
T0 = datetime(2024, 6, 1, tzinfo=timezone.utc)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_client(handler: Callable, **overrides) -> MalClient:
    options = dict(
        web_url=WEB,
        limiter=Unlimited(),
        max_attempts=4,
        backoff_base_s=0.0,
        backoff_max_s=0.0,
        throttle_pause_s=0.0,
        transport=httpx.MockTransport(handler),
    )
    options.update(overrides)
    return MalClient(API, SECRET, **options)


def item(anime_id: int, updated_at: datetime | str, **status) -> dict:
    stamp = updated_at.isoformat() if isinstance(updated_at, datetime) else updated_at
    list_status = {"status": "completed", "score": 7, "num_episodes_watched": 12, "is_rewatching": False}
    list_status.update(status, updated_at=stamp)
    return {"node": {"id": anime_id, "title": f"Show {anime_id}"}, "list_status": list_status}


def paged_list(items: list[dict], page_size: int) -> Callable[[httpx.Request], httpx.Response]:
    """A user-list endpoint serving ``items`` (sorted newest first when asked) in pages with next links."""

    def handler(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        rows = items
        if params.get("sort") == "list_updated_at":
            rows = sorted(items, key=lambda i: i["list_status"]["updated_at"], reverse=True)
        offset = int(params.get("offset", 0))
        paging = {}
        if offset + page_size < len(rows):
            paging["next"] = str(request.url.copy_set_param("offset", offset + page_size))
        return httpx.Response(200, json={"data": rows[offset : offset + page_size], "paging": paging})

    return handler


def ok_anime(anime_id: int = 1) -> httpx.Response:
    return httpx.Response(200, json={"id": anime_id, "title": f"Show {anime_id}"})


# ---- user lists -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_full_fetch_follows_next_links_and_sends_the_documented_query():
    items = [item(i, T0 + timedelta(hours=i)) for i in range(1, 8)]
    seen: list[httpx.URL] = []
    serve = paged_list(items, page_size=3)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return serve(request)

    async with make_client(handler) as client:
        result = await client.fetch_animelist("Some_User")

    assert [e.anime_id for e in result.entries] == list(range(1, 8))
    assert result.complete and result.requests == 3 and client.stats.requests == 3
    first = seen[0]
    assert first.path == "/v2/users/Some_User/animelist"
    assert dict(first.params) == {"fields": "list_status", "limit": "1000", "nsfw": "true"}
    assert [u.params.get("offset") for u in seen] == [None, "3", "6"]


@pytest.mark.anyio
async def test_incremental_fetch_stops_at_the_high_water_mark():
    items = [item(i, T0 + timedelta(hours=i)) for i in range(1, 11)]  # updated_at grows with id
    async with make_client(paged_list(items, page_size=3)) as client:
        full = await client.fetch_animelist("u1")
        since = T0 + timedelta(hours=6)
        recent = await client.fetch_animelist("u1", since=since)

    # Newest first: ids 10, 9, 8 | 7, 6, 5 — page 2 reaches the mark, so no page 3 or 4.
    assert [e.anime_id for e in recent.entries] == [10, 9, 8, 7]
    assert all(e.updated_at > since for e in recent.entries)
    assert not recent.complete
    assert recent.requests == 2 < full.requests == 4


@pytest.mark.anyio
async def test_incremental_mark_may_be_naive_utc():
    items = [item(i, T0 + timedelta(hours=i)) for i in range(1, 4)]
    async with make_client(paged_list(items, page_size=10)) as client:
        recent = await client.fetch_animelist("u1", since=(T0 + timedelta(hours=1)).replace(tzinfo=None))
    assert [e.anime_id for e in recent.entries] == [3, 2]


@pytest.mark.anyio
async def test_duplicates_keep_the_first_and_extra_fields_pass():
    rows = [
        item(2, T0, score=9, start_date="2019", finish_date="2019-05", priority=2),
        item(2, T0, score=3),
        item(3, "2024-06-01T10:00:00+09:00", start_date="2019-05-17", status="dropped"),
    ]
    rows[0]["node"]["num_episodes"] = 24
    body = {"data": rows, "paging": {"previous": "x"}, "season": "spring"}

    async with make_client(lambda r: httpx.Response(200, json=body)) as client:
        result = await client.fetch_animelist("u1")

    by_id = {e.anime_id: e for e in result.entries}
    assert list(by_id) == [2, 3]
    assert by_id[2].score == 9
    assert (by_id[2].start_date, by_id[2].finish_date) == ("2019", "2019-05")
    assert by_id[3].start_date == "2019-05-17"
    assert by_id[3].updated_at == datetime(2024, 6, 1, 1, tzinfo=timezone.utc)
    assert result.complete and result.skipped == 0


@pytest.mark.anyio
async def test_items_without_the_list_status_asked_for_are_retried_then_an_error():
    bare = httpx.Response(200, json={"data": [{"node": {"id": 1, "title": "No status"}}, item(2, T0)]})
    async with make_client(scripted(bare, httpx.Response(200, json={"data": [item(1, T0)]}))) as client:
        result = await client.fetch_animelist("u1")
    assert [e.anime_id for e in result.entries] == [1] and result.requests == 2 and client.stats.malformed == 1

    async with make_client(scripted(bare), max_attempts=3) as client:
        with pytest.raises(RetriesExhausted) as caught:
            await client.fetch_animelist("u1")
    assert caught.value.attempts == 3 and "list_status" in str(caught.value)


@pytest.mark.anyio
async def test_items_of_the_wrong_shape_are_skipped_counted_and_make_the_list_incomplete():
    huge = 2**40
    rows = [
        item(1, T0),
        item(huge, T0),  # an id beyond 32 bits
        item(3, T0, num_episodes_watched=huge),
        item(4, T0, status="binge_watching"),
        {"node": {"id": 5}, "list_status": {"status": "completed", "updated_at": "never"}},
        item(6, T0),
    ]
    async with make_client(lambda r: httpx.Response(200, json={"data": rows})) as client:
        full = await client.fetch_animelist("u1")
        incremental = await client.fetch_animelist("u1", since=T0 - timedelta(days=1))
    assert [e.anime_id for e in full.entries] == [1, 6] and full.skipped == 4
    assert not full.complete  # a skipped item must not read as deleted
    assert incremental.skipped == 4 and not incremental.complete
    assert client.stats.malformed == 8 and client.stats.requests == 2


@pytest.mark.anyio
async def test_a_page_without_paging_or_next_is_the_last():
    for body in ({"data": [item(1, T0)]}, {"data": [item(1, T0)], "paging": {}}):
        async with make_client(lambda r, b=body: httpx.Response(200, json=b)) as client:
            result = await client.fetch_animelist("u1")
        assert [e.anime_id for e in result.entries] == [1] and result.requests == 1


@pytest.mark.anyio
async def test_username_is_url_encoded_in_the_path():
    seen = []

    def handler(request):
        seen.append(request.url.raw_path)
        return httpx.Response(200, json={"data": []})

    async with make_client(handler) as client:
        await client.fetch_animelist("a b/c")
    assert seen[0].startswith(b"/v2/users/a%20b%2Fc/animelist?")


# ---- retries ----------------------------------------------------------------------------------


def scripted(*responses) -> Callable[[httpx.Request], httpx.Response]:
    """Answers with each response (or raises each exception) in turn, then repeats the last."""
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler


@pytest.mark.anyio
async def test_429_waits_at_least_retry_after():
    handler = scripted(httpx.Response(429, headers={"Retry-After": "0.2"}), ok_anime())
    async with make_client(handler, backoff_max_s=1.0) as client:
        started = time.monotonic()
        anime = await client.fetch_anime(1)
        elapsed = time.monotonic() - started
    assert anime.id == 1
    assert elapsed >= 0.2
    assert client.stats.status_429 == 1 and client.stats.retries == 1 and client.stats.requests == 2


@pytest.mark.anyio
async def test_5xx_is_retried_then_succeeds():
    handler = scripted(httpx.Response(500), httpx.Response(503), ok_anime())
    async with make_client(handler) as client:
        assert (await client.fetch_anime(1)).id == 1
    assert client.stats.status_5xx == 2 and client.stats.retries == 2


@pytest.mark.anyio
async def test_retries_exhausted_reports_status_and_attempts():
    async with make_client(scripted(httpx.Response(503)), max_attempts=3) as client:
        with pytest.raises(RetriesExhausted) as caught:
            await client.fetch_animelist("u1")
    assert caught.value.last_status == 503 and caught.value.attempts == 3
    assert "/users/u1/animelist" in caught.value.url
    assert client.stats.requests == 3 and client.stats.retries == 2


@pytest.mark.anyio
async def test_timeouts_are_retried():
    handler = scripted(httpx.ReadTimeout("slow"), httpx.ConnectError("refused"), ok_anime())
    async with make_client(handler) as client:
        assert (await client.fetch_anime(1)).id == 1
    assert client.stats.timeouts == 1 and client.stats.transport_errors == 1


@pytest.mark.anyio
async def test_timeouts_exhausted_have_no_status():
    async with make_client(scripted(httpx.ReadTimeout("slow")), max_attempts=2) as client:
        with pytest.raises(RetriesExhausted) as caught:
            await client.fetch_anime(1)
    assert caught.value.last_status is None and "timeout" in str(caught.value)


@pytest.mark.anyio
async def test_truncated_json_is_retried():
    truncated = httpx.Response(200, content=b'{"data": [{"node": {"id": 1')
    handler = scripted(truncated, httpx.Response(200, json={"data": [item(1, T0)]}))
    async with make_client(handler) as client:
        result = await client.fetch_animelist("u1")
    assert [e.anime_id for e in result.entries] == [1]
    assert result.requests == 2 and client.stats.malformed == 1


@pytest.mark.anyio
async def test_wrong_shape_is_a_response_error_without_retry():
    body = {"id": 1, "title": "Show", "start_date": "never"}
    async with make_client(lambda r: httpx.Response(200, json=body)) as client:
        with pytest.raises(MalResponseError) as caught:
            await client.fetch_anime(1)
        with pytest.raises(MalResponseError) as list_caught:
            await client.fetch_animelist("u1", since=T0)  # the page itself lacks data
    assert "start_date" in str(caught.value) and "data" in str(list_caught.value)
    assert client.stats.requests == 2


@pytest.mark.anyio
async def test_a_body_that_lies_about_its_encoding_is_retried():
    lying = httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b'{"data": []}'))
    async with make_client(scripted(lying, httpx.Response(200, json={"data": [item(1, T0)]}))) as client:
        result = await client.fetch_animelist("u1")
    assert [e.anime_id for e in result.entries] == [1] and result.requests == 2 and client.stats.malformed == 1


@pytest.mark.anyio
async def test_next_links_that_are_not_urls_are_response_errors():
    for link in ("http://[::1/v2/next", "ftp://mal.test/next"):
        body = {"data": [item(1, T0)], "paging": {"next": link}}
        async with make_client(lambda r, b=body: httpx.Response(200, json=b)) as client:
            with pytest.raises(MalResponseError, match="paging.next"):
                await client.fetch_animelist("u1")


@pytest.mark.anyio
async def test_paging_stops_at_the_page_cap():
    def endless(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params.get("offset", 0))
        next_url = str(request.url.copy_set_param("offset", offset + 1))
        return httpx.Response(200, json={"data": [item(offset + 1, T0)], "paging": {"next": next_url}})

    async with make_client(endless, max_list_pages=5) as client:
        with pytest.raises(MalResponseError, match="past 5 pages"):
            await client.fetch_animelist("u1")
    assert client.stats.requests == 5
    with pytest.raises(ValueError):
        make_client(endless, max_list_pages=0)


def test_retry_after_parses_seconds_and_http_dates():
    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("3", now=now) == 3.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now) == 90.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=5), usegmt=True), now=now) == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None


# ---- status codes -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_404_and_client_errors():
    def handler(request: httpx.Request) -> httpx.Response:
        if "/users/" in request.url.path:
            return httpx.Response(404, json={"error": "not_found", "message": ""})
        if request.url.path.endswith("/anime/2"):
            return httpx.Response(404, json={"error": "not_found", "message": ""})
        return httpx.Response(401, json={"error": "invalid_client", "message": "bad id"})

    async with make_client(handler) as client:
        with pytest.raises(UserNotFound):
            await client.fetch_animelist("ghost")
        with pytest.raises(AnimeNotFound):
            await client.fetch_anime(2)
        with pytest.raises(MalRequestError) as caught:
            await client.fetch_ranking()
    assert caught.value.status == 401 and "invalid_client" in str(caught.value) and "bad id" in str(caught.value)
    assert client.stats.requests == 3 and client.stats.retries == 0


@pytest.mark.anyio
async def test_a_single_403_is_a_private_list():
    async with make_client(lambda r: httpx.Response(403, json={"error": "forbidden"})) as client:
        with pytest.raises(PrivateList) as caught:
            await client.fetch_animelist("hidden")
    assert caught.value.username == "hidden"


@pytest.mark.anyio
async def test_403_streak_across_users_throttles_and_pauses():
    forbidden = {"a1", "b2", "c3", "d4"}

    def handler(request: httpx.Request) -> httpx.Response:
        user = request.url.path.split("/")[3]
        return httpx.Response(403) if user in forbidden else httpx.Response(200, json={"data": []})

    async with make_client(handler, throttle_403_streak=3, throttle_pause_s=0.3) as client:
        # A success in between breaks the streak.
        for user in ("a1", "b2"):
            with pytest.raises(PrivateList):
                await client.fetch_animelist(user)
        await client.fetch_animelist("fine")
        for user in ("a1", "b2"):  # the same user twice counts once
            with pytest.raises(PrivateList):
                await client.fetch_animelist(user)
        with pytest.raises(PrivateList):
            await client.fetch_animelist("b2")
        with pytest.raises(Throttled) as caught:
            await client.fetch_animelist("c3")
        assert caught.value.usernames == ["a1", "b2", "c3"]
        assert client.paused_for_s > 0.2

        started = time.monotonic()
        await client.fetch_animelist("fine")
        assert time.monotonic() - started >= 0.25
        with pytest.raises(PrivateList):  # a new streak starts from scratch
            await client.fetch_animelist("d4")


# ---- concurrency and budgets ------------------------------------------------------------------


@pytest.mark.anyio
async def test_in_flight_limit_is_respected():
    active = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.02)
        active -= 1
        return ok_anime(int(request.url.path.rsplit("/", 1)[1]))

    async with make_client(handler, max_in_flight=3) as client:
        results = await asyncio.gather(*(client.fetch_anime(i) for i in range(1, 13)))
    assert [a.id for a in results] == list(range(1, 13))
    assert peak == 3


@pytest.mark.anyio
async def test_rate_limiter_spaces_requests():
    async with make_client(lambda r: ok_anime(), limiter=RateLimiter(20.0)) as client:
        started = time.monotonic()
        await asyncio.gather(*(client.fetch_anime(1) for _ in range(10)))
        elapsed = time.monotonic() - started
    assert elapsed >= 0.4


@pytest.mark.anyio
async def test_retries_spend_the_budget_too():
    class Counting(Unlimited):
        calls = 0

        async def acquire(self) -> None:
            Counting.calls += 1

    async with make_client(scripted(httpx.Response(502), ok_anime()), limiter=Counting()) as client:
        await client.fetch_anime(1)
    assert Counting.calls == 2


# ---- the secret -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_client_id_goes_only_to_the_api_and_never_into_text():
    headers: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        headers[request.url.host] = request.headers.get("X-MAL-CLIENT-ID")
        if request.url.host == "web.test":
            return httpx.Response(200, text='<a href="/profile/Abc">Abc</a>')
        return httpx.Response(503)

    async with make_client(handler, max_attempts=2) as client:
        with pytest.raises(RetriesExhausted) as caught:
            await client.fetch_anime(1)
        await client.fetch_recently_online()
    assert headers == {"mal.test": SECRET, "web.test": None}
    texts = [repr(client), str(client), str(caught.value), repr(caught.value), repr(client.stats)]
    assert not any(SECRET in text for text in texts)


def test_from_settings_reads_the_mal_fields():
    settings = Settings(
        mal_api_url="http://sim.test/v2/",
        mal_web_url="http://sim.test",
        mal_client_id=SECRET,
        mal_requests_per_second=5.0,
        mal_max_in_flight=2,
        _env_file=None,
    )
    client = MalClient.from_settings(settings)
    assert client.api_url == "http://sim.test/v2" and client.web_url == "http://sim.test"
    assert isinstance(client.limiter, RateLimiter) and client.limiter.requests_per_second == 5.0
    assert SECRET not in repr(client)
    asyncio.run(client.aclose())


# ---- other endpoints --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_ranking_and_anime_details():
    ranking = {"data": [{"node": {"id": 5, "title": "Top"}, "ranking": {"rank": 1}}], "paging": {}}
    details = {
        "id": 5,
        "title": "Top",
        "start_date": "2001-04",
        "rating": "pg_13",
        "genres": [{"id": 1, "name": "Action"}],
        "related_anime": [{"node": {"id": 6, "title": "Top 2"}, "relation_type": "sequel"}],
        "studios": [{"id": 9, "name": "Extra"}],
    }
    seen = []

    def handler(request):
        seen.append(request.url)
        return httpx.Response(200, json=ranking if request.url.path.endswith("ranking") else details)

    async with make_client(handler) as client:
        page = await client.fetch_ranking(limit=500, offset=500)
        anime = await client.fetch_anime(5)
        with pytest.raises(ValueError):
            await client.fetch_ranking(limit=501)
    assert page.data[0].node.id == 5
    assert dict(seen[0].params) == {"ranking_type": "bypopularity", "limit": "500", "offset": "500"}
    assert seen[1].params["fields"].startswith("id,title,main_picture")
    assert anime.related_anime[0].relation_type == "sequel" and anime.genres[0].name == "Action"


@pytest.mark.anyio
async def test_recently_online_extracts_profile_links():
    html = """<table>
      <a href="/profile/Alpha">Alpha</a><a href="/profile/beta_2"><img></a>
      <a href="https://myanimelist.net/profile/Gamma-3">x</a><a href="/profile/Alpha">again</a>
      <a href="/animelist/Delta">not a profile</a></table>"""
    async with make_client(lambda r: httpx.Response(200, text=html)) as client:
        assert await RecentlyOnlineSource(client).discover() == ["Alpha", "beta_2", "Gamma-3"]
    async with MalClient(API, None, limiter=Unlimited()) as client:
        with pytest.raises(ValueError, match="web_url"):
            await client.fetch_recently_online()


# ---- seed lists -------------------------------------------------------------------------------


def test_seed_list_parsing(tmp_path):
    text = "# seed users\nAlpha\n\n  beta_2  # a friend\nAlpha\nGamma-3\n"
    assert parse_seed_list(text) == ["Alpha", "beta_2", "Gamma-3"]
    with pytest.raises(ValueError, match="line 3"):
        parse_seed_list("ok_name\n\nbad name!\n")
    with pytest.raises(ValueError, match="line 1"):
        parse_seed_list("x\n")  # too short

    path = tmp_path / "seeds.txt"
    path.write_text(text)
    source = SeedListSource(path)
    assert source.name == "seed_list"
    assert asyncio.run(source.discover()) == ["Alpha", "beta_2", "Gamma-3"]


@pytest.mark.anyio
async def test_backoff_is_full_jitter_capped_and_raised_to_retry_after():
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    handler = scripted(
        httpx.Response(503),
        httpx.Response(503),
        httpx.Response(503),
        httpx.Response(429, headers={"Retry-After": "10"}),
        ok_anime(),
    )
    client = make_client(handler, max_attempts=5, backoff_base_s=1.0, backoff_max_s=20.0, sleep=record)
    async with client:
        await client.fetch_anime(1)
    assert len(slept) == 4
    assert 0 <= slept[0] <= 1.0 and 0 <= slept[1] <= 2.0 and 0 <= slept[2] <= 4.0  # doubling, with jitter
    assert slept[3] == 10.0  # the header outranks the jitter

    slept.clear()
    handler = scripted(httpx.Response(503), httpx.Response(503), ok_anime())
    client = make_client(handler, max_attempts=5, backoff_base_s=1.0, backoff_max_s=1.5, sleep=record)
    async with client:
        await client.fetch_anime(1)
    assert 0 <= slept[1] <= 1.5  # capped at max_s


@pytest.mark.anyio
async def test_retry_after_is_capped_at_the_backoff_maximum():
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    far = httpx.Response(429, headers={"Retry-After": "Thu, 01 Jan 2099 00:00:00 GMT"})
    huge = httpx.Response(503, headers={"Retry-After": "1e12"})
    client = make_client(scripted(far, huge, ok_anime()), backoff_base_s=0.5, backoff_max_s=7.0, sleep=record)
    async with client:
        assert (await client.fetch_anime(1)).id == 1
    assert slept == [7.0, 7.0]


def test_redact_url_hides_secret_query_values():
    from sprout.mal.errors import redact_url

    assert redact_url("http://x/v2/a?offset=3&client_id=abc") == "http://x/v2/a?offset=3&client_id=***"
    assert redact_url("http://x/v2/a") == "http://x/v2/a"
