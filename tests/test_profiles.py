"""Profiles from a MAL username (the simulator over HTTP) and from MAL's list export file."""

from __future__ import annotations

import asyncio
import gzip

import pytest

from crawl_helpers import fast_client, public_users
from sprout.malsim.faults import FaultConfig
from sprout.malsim.synthetic_population import synthetic_population
from sprout.malsim.server import SimulatorServer
from sprout.profiles import (
    ExportError,
    InvalidUsername,
    ListFetcher,
    MalUnavailable,
    NoClientId,
    PrivateProfile,
    UnknownUser,
    parse_list_export,
)


@pytest.fixture(scope="module")
def simulator():
    with SimulatorServer(synthetic_population(40, seed=21, n_anime=400, private_fraction=0.1)) as server:
        yield server


def truth_profile(simulator, username: str) -> list[tuple[int, int, str]]:
    return sorted((row["anime_id"], row["score"], row["status"]) for row in simulator.population.truth(username))


def as_tuples(entries) -> list[tuple[int, int, str]]:
    return sorted((e.anime_id, e.score, e.status) for e in entries)


def test_a_username_gives_the_users_whole_list_and_the_cache_answers_again(simulator):
    name = next(u for u in public_users(simulator) if len(simulator.population.truth(u)) > 5)
    fetcher = ListFetcher(lambda: fast_client(simulator), ttl_s=60)

    async def run():
        first = await fetcher.profile(name)
        requests_before = simulator.stats()["requests"]
        again = await fetcher.profile(name.upper())  # names are case-insensitive
        assert simulator.stats()["requests"] == requests_before  # the cache answered: no MAL request
        await fetcher.aclose()
        return first, again

    first, again = asyncio.run(run())
    assert as_tuples(first) == truth_profile(simulator, name) and again == first
    assert fetcher.fetches == 1


def test_concurrent_requests_for_one_name_share_one_fetch(simulator):
    name = public_users(simulator)[0]
    fetcher = ListFetcher(lambda: fast_client(simulator))

    async def run():
        answers = await asyncio.gather(*(fetcher.profile(name) for _ in range(5)))
        await fetcher.aclose()
        return answers

    answers = asyncio.run(run())
    assert fetcher.fetches == 1 and all(answer == answers[0] for answer in answers)


def test_each_failure_is_its_own_typed_error(simulator):
    private = next(u for u in simulator.population.usernames() if simulator.population.is_private(u))

    async def outcome(fetcher: ListFetcher, name: str) -> Exception:
        try:
            await fetcher.profile(name)
        except Exception as error:
            return error
        finally:
            await fetcher.aclose()
        raise AssertionError("no error")

    def fetcher(**options) -> ListFetcher:
        return ListFetcher(lambda: fast_client(simulator, **options), deadline_s=5)

    assert isinstance(asyncio.run(outcome(fetcher(), "no_such_user_42")), UnknownUser)
    error = asyncio.run(outcome(fetcher(), private))
    assert isinstance(error, PrivateProfile) and error.status == 403 and "export" in str(error)
    requests_before = simulator.stats()["requests"]
    error = asyncio.run(outcome(fetcher(), "../../admin"))
    assert isinstance(error, InvalidUsername) and error.status == 400
    assert simulator.stats()["requests"] == requests_before  # refused before anything was sent
    assert isinstance(asyncio.run(outcome(ListFetcher(None), "someone")), NoClientId)

    simulator.set_faults(rate_5xx=1.0)
    try:
        error = asyncio.run(outcome(fetcher(max_attempts=2), public_users(simulator)[1]))
    finally:
        simulator.set_faults()
    assert isinstance(error, MalUnavailable) and error.status == 503 and error.retry_after_s >= 1

    simulator.set_faults(FaultConfig(rate_slow=1.0, slow_s=3.0))
    try:
        slow = ListFetcher(lambda: fast_client(simulator), deadline_s=0.5)
        error = asyncio.run(outcome(slow, public_users(simulator)[2]))
    finally:
        simulator.set_faults()
    assert isinstance(error, MalUnavailable) and "0.5 s" in str(error)


def test_an_unreachable_mal_is_unavailable():
    fetcher = ListFetcher(lambda: fast_client_for("http://127.0.0.1:9/v2"), deadline_s=5)

    async def run():
        try:
            await fetcher.profile("someone")
        finally:
            await fetcher.aclose()

    with pytest.raises(MalUnavailable):
        asyncio.run(run())


def fast_client_for(api_url: str):
    from crawl_helpers import CLIENT_ID
    from sprout.mal.client import MalClient
    from sprout.mal.limiter import Unlimited

    return MalClient(api_url, CLIENT_ID, web_url="http://127.0.0.1:9", limiter=Unlimited(), max_attempts=2,
                     backoff_base_s=0.01, backoff_max_s=0.02)


EXPORT = b"""<?xml version="1.0" encoding="UTF-8" ?>
<myanimelist>
  <myinfo><user_name>someone</user_name></myinfo>
  <anime><series_animedb_id>1</series_animedb_id><series_title><![CDATA[Cowboy Bebop]]></series_title>
    <my_score>9</my_score><my_status>Completed</my_status></anime>
  <anime><series_animedb_id>20</series_animedb_id><my_score>0</my_score><my_status>Plan to Watch</my_status></anime>
  <anime><series_animedb_id>30</series_animedb_id><my_score>4</my_score><my_status>4</my_status></anime>
  <anime><series_animedb_id>40</series_animedb_id><my_score>7</my_score><my_status>On-Hold</my_status></anime>
</myanimelist>
"""


def test_an_export_parses_plain_or_gzipped():
    expected = [(1, 9, "completed"), (20, 0, "plan_to_watch"), (30, 4, "dropped"), (40, 7, "on_hold")]
    assert as_tuples(parse_list_export(EXPORT)) == expected
    assert as_tuples(parse_list_export(gzip.compress(EXPORT))) == expected


@pytest.mark.parametrize("data, message", [
    (b"<myanimelist><anime>", "not well-formed"),
    (b"<html><body>hello</body></html>", "not <myanimelist>"),
    (b"<myanimelist><anime><series_animedb_id>x1</series_animedb_id><my_status>Completed</my_status></anime></myanimelist>",
     "not an anime id"),
    (b"<myanimelist><anime><series_animedb_id>1</series_animedb_id><my_score>11</my_score>"
     b"<my_status>Completed</my_status></anime></myanimelist>", "score"),
    (b"<myanimelist><anime><series_animedb_id>1</series_animedb_id><my_status>Loved</my_status></anime></myanimelist>",
     "unknown status"),
    (b"<myanimelist><anime><my_status>Completed</my_status></anime></myanimelist>", "no <series_animedb_id>"),
    (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
     b"<myanimelist><anime><series_animedb_id>1</series_animedb_id><my_status>&lol2;</my_status></anime></myanimelist>",
     "refused"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><myanimelist>&e;</myanimelist>',
     "refused"),
    (b"\x1f\x8b\x08\x00garbage", "gzip"),
])
def test_a_bad_export_is_a_clear_error(data, message):
    with pytest.raises(ExportError, match=message):
        parse_list_export(data)


def test_an_export_is_size_limited_before_and_after_inflating():
    bomb = gzip.compress(b"<myanimelist>" + b" " * (4 << 20) + b"</myanimelist>")
    assert len(bomb) < 10_000
    with pytest.raises(ExportError, match="inflates to more than"):
        parse_list_export(bomb, max_bytes=1 << 20)
    with pytest.raises(ExportError, match="larger than"):
        parse_list_export(EXPORT, max_bytes=100)
    with pytest.raises(ExportError, match="cut short"):
        parse_list_export(gzip.compress(EXPORT)[:-12])
