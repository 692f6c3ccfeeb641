"""The MAL simulator: population realism and determinism, every route over real loopback HTTP,
faults, evolution of the clock, and the real-data backend."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from sprout.mal.models import AnimeDetails, AnimeListItem, AnimeListPage, ListEntry, RankingPage
from sprout.malsim import FaultConfig, SimulatorServer, from_anime5k
from sprout.malsim.synthetic_population import synthetic_population
from sprout.malsim.catalogue import RELATION_INVERSE
from sprout.malsim.faults import FaultInjector
from sprout.malsim.lists import COMPLETED, PLAN_TO_WATCH

ANIME5K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "anime-5k"
HEADERS = {"X-MAL-CLIENT-ID": "test-client"}
FULL_FIELDS = (
    "id,title,main_picture,alternative_titles,start_date,media_type,rating,genres,mean,"
    "popularity,num_list_users,num_episodes,related_anime"
)


@pytest.fixture(scope="module")
def population():
    return synthetic_population(2000, seed=7, n_anime=3000)


@pytest.fixture(scope="module")
def sim(population):
    with SimulatorServer(population) as server:
        yield server


@pytest.fixture(scope="module")
def client():
    with httpx.Client(headers=HEADERS, timeout=10) as c:
        yield c


def fetch_all(client: httpx.Client, url: str, **params) -> list[dict]:
    """Follow ``paging.next`` to the end; returns the items."""
    items, response = [], client.get(url, params=params)
    while True:
        assert response.status_code == 200, response.text
        page = AnimeListPage.model_validate_json(response.content)
        items.extend(response.json()["data"])
        if page.paging.next is None:
            return items
        response = client.get(page.paging.next)


def api_entries(client: httpx.Client, sim: SimulatorServer, name: str, **params) -> list[dict]:
    params = {"fields": "list_status", "limit": 1000, "nsfw": "true", **params}
    items = fetch_all(client, f"{sim.api_url}/users/{name}/animelist", **params)
    return [ListEntry.from_item(AnimeListItem.model_validate(item)).model_dump() for item in items]


TRUTH_KEYS = (
    "anime_id", "status", "score", "num_episodes_watched", "is_rewatching", "updated_at", "start_date", "finish_date"
)  # fmt: skip


def as_row(entry: dict) -> tuple:
    return tuple(entry[k] for k in TRUTH_KEYS)


def same_as_truth(api: list[dict], truth: list[dict]) -> bool:
    return sorted(map(as_row, api)) == sorted(map(as_row, truth))


def user_score_stats(population):
    lists = population.state.lists
    owner, rated = lists.owners(), lists.score > 0
    n = np.bincount(owner[rated], minlength=lists.n_users)
    total = np.bincount(owner[rated], weights=lists.score[rated], minlength=lists.n_users)
    squares = np.bincount(owner[rated], weights=lists.score[rated].astype(float) ** 2, minlength=lists.n_users)
    mean = total / np.maximum(n, 1)
    return n, mean, np.sqrt(np.maximum(squares / np.maximum(n, 1) - mean**2, 0))


# ---- the population ----------------------------------------------------------------------------


def test_synthetic_population_is_deterministic_by_seed():
    a, b, c = (synthetic_population(300, seed=s, n_anime=800) for s in (5, 5, 6))
    assert a.usernames() == b.usernames() and a.usernames() != c.usernames()
    for name, column in a.state.lists.columns().items():
        assert np.array_equal(column, getattr(b.state.lists, name)), name
    assert np.array_equal(a.catalogue.ids, b.catalogue.ids) and a.catalogue.titles == b.catalogue.titles
    assert not np.array_equal(a.state.lists.offsets, c.state.lists.offsets)


def test_profile_sizes_are_long_tailed_around_mal_median(population):
    sizes = population.profile_sizes()
    assert 40 <= np.median(sizes) <= 75
    assert sizes.min() >= 1
    assert np.percentile(sizes, 99) > 8 * np.median(sizes)
    assert sizes.max() > 800


def test_show_popularity_is_long_tailed_and_consistent(population):
    state = population.state
    counts = state.stats.num_list_users
    assert np.array_equal(counts, np.bincount(state.lists.show, minlength=population.catalogue.n_shows))
    ordered = counts[state.stats.by_popularity]
    assert np.all(np.diff(ordered) <= 0) and state.stats.popularity[state.stats.by_popularity[0]] == 1
    top_share = ordered[: len(ordered) // 100].sum() / ordered.sum()
    assert top_share > 0.1  # the top 1% of shows hold over a tenth of all entries
    assert ordered[0] > 20 * np.median(ordered)


def test_rating_schemes_and_statuses_are_all_present(population):
    n_rated, mean, spread = user_score_stats(population)
    lists = population.state.lists
    enough = n_rated >= 20
    assert np.mean(enough & (mean >= 7.7) & (spread < 1.0)) > 0.05  # generous, low spread
    assert np.mean(enough & (mean >= 4.0) & (mean <= 6.0) & (spread > 1.3)) > 0.04  # "objective"
    extremes = np.bincount(lists.owners()[(lists.score == 1) | (lists.score == 10)], minlength=lists.n_users)
    assert np.sum(enough & (extremes == n_rated)) >= 10  # binary 1/10 raters
    assert np.sum((n_rated == 0) & (lists.sizes() >= 20)) >= 20  # users who never rate
    status_share = np.bincount(lists.status, minlength=5) / lists.n_entries
    assert status_share.argmax() == COMPLETED and status_share[COMPLETED] > 0.5
    assert np.all(status_share > 0.01) and status_share[PLAN_TO_WATCH] > 0.05
    assert np.all(lists.score[lists.status == PLAN_TO_WATCH] == 0)


def test_timestamps_span_years_and_dates_have_every_precision(population):
    lists, now = population.state.lists, population.state.now
    years_ago = (now - lists.updated_at) / (365 * 86400)
    assert years_ago.min() >= 0 and np.percentile(years_ago, 90) > 3
    starts = lists.start_date[lists.start_date > 0]
    assert np.any(starts % 100 == 0) and np.any(starts % 10000 == 0) and np.any(starts % 100 > 0)


def test_catalogue_has_rx_shows_and_symmetric_franchise_relations(population):
    catalogue = population.catalogue
    assert 0.01 <= catalogue.is_rx.mean() <= 0.06
    assert set(catalogue.media_types) == {"tv", "movie", "ova", "special", "ona", "music"}
    links = {(a, b, kind) for a, related in enumerate(catalogue.relations) for b, kind in related}
    assert len(links) > catalogue.n_shows // 4
    assert all((b, a, RELATION_INVERSE[kind]) in links for a, b, kind in links)
    assert {kind for _, _, kind in links} == set(RELATION_INVERSE)


def test_usernames_are_valid_varied_and_unique(population):
    names = population.usernames()
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{2,16}", n) for n in names)
    assert len({n.casefold() for n in names}) == len(names)
    assert len({re.sub(r"\d", "", n) for n in names}) > len(names) // 3


def test_hidden_taste_is_learnable_beyond_popularity(population):
    """Item co-occurrence predicts held-out shows much better than popularity does."""
    lists, n_shows = population.state.lists, population.catalogue.n_shows
    x = np.zeros((lists.n_users, n_shows), np.float32)
    x[lists.owners(), lists.show] = 1.0
    rng = np.random.default_rng(0)
    test_users = rng.choice(np.flatnonzero(x.sum(1) >= 20), 200, replace=False)
    train = np.setdiff1d(np.arange(lists.n_users), test_users)
    cooc = x[train].T @ x[train]  # [n_shows, n_shows]
    np.fill_diagonal(cooc, 0)
    cooc /= np.sqrt(np.outer(cooc.sum(1) + 1, cooc.sum(0) + 1))
    popularity = x[train].sum(0)
    hits = {"popularity": 0, "cooccurrence": 0}
    for u in test_users:
        shows = np.flatnonzero(x[u])
        held = rng.random(len(shows)) < 0.2
        fold_in, target = shows[~held], set(shows[held].tolist())
        for name, score in (("popularity", popularity.copy()), ("cooccurrence", cooc[fold_in].sum(0))):
            score[fold_in] = -np.inf
            hits[name] += len(target & set(np.argsort(-score)[:20].tolist()))
    assert hits["cooccurrence"] > 1.3 * hits["popularity"]


# ---- list endpoint -----------------------------------------------------------------------------


def test_paging_through_next_links_reproduces_the_truth(population, sim, client):
    sizes = population.state.lists.sizes()
    public = [u for u in np.argsort(-sizes).tolist() if not population.state.users.private[u]]
    for user in (public[0], public[len(public) // 2]):
        name = population.state.users.names[user]
        truth = population.truth(name)
        assert same_as_truth(api_entries(client, sim, name, limit=37), truth)
    big = population.state.users.names[public[0]]
    assert len(truth := population.truth(big)) > 1000 and same_as_truth(api_entries(client, sim, big), truth)


def test_paging_links_and_last_page(population, sim, client):
    name = next(n for n in population.usernames() if 25 <= len(population.truth(n)) and not population.is_private(n))
    first = client.get(f"{sim.api_url}/users/{name}/animelist", params={"limit": 10, "nsfw": "true"}).json()
    assert first["paging"]["next"].startswith(f"{sim.api_url}/users/{name}/animelist?")
    assert "offset=10" in first["paging"]["next"] and "previous" not in first["paging"]
    second = client.get(first["paging"]["next"]).json()
    assert "offset=0" in second["paging"]["previous"]
    last = client.get(f"{sim.api_url}/users/{name}/animelist", params={"limit": 1000, "nsfw": "true"}).json()
    assert last["paging"] == {}
    assert all(set(item) == {"node"} for item in last["data"])  # no list_status unless asked


def test_sort_by_list_updated_at_is_descending(population, sim, client):
    name = next(n for n in population.usernames() if len(population.truth(n)) > 150 and not population.is_private(n))
    entries = api_entries(client, sim, name, sort="list_updated_at", limit=50)
    stamps = [(e["updated_at"], -e["anime_id"]) for e in entries]
    assert stamps == sorted(stamps, reverse=True) and len(entries) == len(population.truth(name))


def test_status_filter(population, sim, client):
    name = next(n for n in population.usernames() if len(population.truth(n)) > 100 and not population.is_private(n))
    entries = api_entries(client, sim, name, status="plan_to_watch")
    expected = [e for e in population.truth(name) if e["status"] == "plan_to_watch"]
    assert entries and all(e["status"] == "plan_to_watch" for e in entries) and len(entries) == len(expected)


def test_nsfw_false_hides_rx_shows(population, sim, client):
    rx_ids = set(population.catalogue.ids[population.catalogue.is_rx].tolist())
    name = next(
        n for n in population.usernames()
        if not population.is_private(n) and any(e["anime_id"] in rx_ids for e in population.truth(n))
    )  # fmt: skip
    with_rx = api_entries(client, sim, name)
    without = api_entries(client, sim, name, nsfw="false")
    assert any(e["anime_id"] in rx_ids for e in with_rx)
    assert not any(e["anime_id"] in rx_ids for e in without)
    assert len(without) == sum(e["anime_id"] not in rx_ids for e in with_rx)


def test_request_errors_have_mal_shape(population, sim, client):
    name = population.usernames()[0]
    url = f"{sim.api_url}/users/{name}/animelist"
    for params, status in (({"limit": 1001}, 400), ({"limit": 0}, 400), ({"offset": -1}, 400), ({"offset": "x"}, 400)):
        response = client.get(url, params=params)
        assert response.status_code == status and set(response.json()) == {"error", "message"}
    assert client.get(url, params={"limit": 1001}).json() == {"error": "bad_request", "message": "invalid limit"}
    missing_client = httpx.get(url, timeout=10)
    assert missing_client.status_code == 401 and missing_client.json()["error"] == "invalid_client"
    unknown = client.get(f"{sim.api_url}/users/no_such_user_x/animelist")
    assert unknown.status_code == 404 and unknown.json() == {"error": "not_found", "message": "invalid q"}
    private = next(n for n in population.usernames() if population.is_private(n))
    forbidden = client.get(f"{sim.api_url}/users/{private}/animelist")
    assert forbidden.status_code == 403 and forbidden.json() == {"error": "forbidden", "message": ""}
    assert client.get(f"{sim.url}/v2/no/such/route").json()["error"] == "not_found"


def test_usernames_are_case_insensitive(population, sim, client):
    name = next(n for n in population.usernames() if not population.is_private(n) and n != n.upper())
    response = client.get(f"{sim.api_url}/users/{name.upper()}/animelist", params={"limit": 5})
    assert response.status_code == 200


# ---- anime and ranking -------------------------------------------------------------------------


def test_anime_details_have_every_field_and_symmetric_relations(population, sim, client):
    catalogue = population.catalogue
    show = next(i for i, r in enumerate(catalogue.relations) if r)
    response = client.get(f"{sim.api_url}/anime/{catalogue.ids[show]}", params={"fields": FULL_FIELDS})
    details = AnimeDetails.model_validate_json(response.content)
    assert set(response.json()) >= set(FULL_FIELDS.split(",")) - {"mean", "start_date"}
    assert details.popularity == population.state.stats.popularity[show]
    assert details.num_list_users == population.state.stats.num_list_users[show]
    for related in details.related_anime:
        back = client.get(f"{sim.api_url}/anime/{related.node.id}", params={"fields": "related_anime"})
        kinds = {(r.node.id, r.relation_type) for r in AnimeDetails.model_validate_json(back.content).related_anime}
        assert (details.id, RELATION_INVERSE[related.relation_type]) in kinds
    basic = client.get(f"{sim.api_url}/anime/{catalogue.ids[show]}").json()
    assert set(basic) == {"id", "title", "main_picture"}
    assert client.get(f"{sim.api_url}/anime/999999999").status_code == 404


def test_pictures_are_mal_shaped_and_served_by_the_simulator_itself(population, sim, client):
    catalogue = population.catalogue
    show = 5
    anime_id, title = int(catalogue.ids[show]), catalogue.titles[show]
    details = client.get(f"{sim.api_url}/anime/{anime_id}").json()
    assert details["main_picture"] == {
        "medium": f"{sim.url}/images/anime/{anime_id}.svg", "large": f"{sim.url}/images/anime/{anime_id}l.svg"
    }
    assert AnimeDetails.model_validate(details).main_picture.large == details["main_picture"]["large"]
    # List items and related shows carry the same node.
    name = next(n for n in population.usernames() if population.truth(n) and not population.is_private(n))
    page = client.get(f"{sim.api_url}/users/{name}/animelist", params={"limit": 5, "nsfw": "true"}).json()
    for item in page["data"]:
        assert item["node"]["main_picture"]["large"] == f"{sim.url}/images/anime/{item['node']['id']}l.svg"
    # Covers are public (no client id, like MAL's CDN) tiny SVGs with the title's first letter.
    for url, width in ((details["main_picture"]["medium"], 225), (details["main_picture"]["large"], 450)):
        cover = httpx.get(url, timeout=10)
        assert cover.status_code == 200 and cover.headers["content-type"].startswith("image/svg+xml")
        assert cover.text.startswith("<svg") and f'width="{width}"' in cover.text and len(cover.content) < 2000
        assert f">{title[0].upper()}</text>" in cover.text
    for missing in ("999999999.svg", f"{anime_id}.png", f"{anime_id}x.svg", "0.svg"):
        assert httpx.get(f"{sim.url}/images/anime/{missing}", timeout=10).status_code == 404
    assert httpx.get(f"{sim.url}/sim/stats", timeout=10).json()["routes"]["images"]["200"] >= 2
    # The host a request came to is the one its pictures name.
    by_name = client.get(f"{sim.api_url}/anime/{anime_id}", headers={"Host": f"localhost:{sim.port}"}).json()
    assert by_name["main_picture"]["medium"] == f"http://localhost:{sim.port}/images/anime/{anime_id}.svg"


def test_ranking_by_popularity(population, sim, client):
    url = f"{sim.api_url}/anime/ranking"
    params = {"ranking_type": "bypopularity", "limit": 200, "fields": "num_list_users,rating", "nsfw": "true"}
    first = client.get(url, params=params)
    page = RankingPage.model_validate_json(first.content)
    ranks = [item.ranking.rank for item in page.data]
    assert ranks == list(range(1, 201))
    users = [item["node"]["num_list_users"] for item in first.json()["data"]]
    assert users == sorted(users, reverse=True)
    second = RankingPage.model_validate_json(client.get(page.paging.next).content)
    assert second.data[0].ranking.rank == 201
    safe = client.get(url, params={**params, "nsfw": "false", "limit": 500}).json()["data"]
    assert all(item["node"]["rating"] != "rx" for item in safe)
    assert client.get(url, params={**params, "limit": 501}).status_code == 400
    assert client.get(url, params={"ranking_type": "nonsense"}).status_code == 400


def test_users_page_lists_recent_users_and_changes(population, sim):
    pages = [httpx.get(f"{sim.url}/users.php", timeout=10).text for _ in range(3)]
    known = set(population.usernames())
    found = [re.findall(r'<a href="/profile/([A-Za-z0-9_-]+)">\1</a>', page) for page in pages]
    assert all(20 <= len(names) <= 30 and set(names) <= known and len(set(names)) == len(names) for names in found)
    assert found[0] != found[1]


# ---- admin routes ------------------------------------------------------------------------------


def test_admin_routes(population, sim, client):
    listing = httpx.get(f"{sim.url}/sim/usernames", params={"offset": 10, "limit": 5}, timeout=10).json()
    assert listing == {"usernames": population.usernames()[10:15], "total": len(population.usernames())}
    name = population.usernames()[3]
    truth = httpx.get(f"{sim.url}/sim/truth/{name}", timeout=10).json()
    assert [e["anime_id"] for e in truth] == [e["anime_id"] for e in population.truth(name)]
    assert httpx.get(f"{sim.url}/sim/truth/nobody_at_all", timeout=10).status_code == 404
    assert httpx.get(f"{sim.url}/sim/clock", timeout=10).json()["now"] == population.now.isoformat()
    stats = httpx.get(f"{sim.url}/sim/stats", timeout=10).json()
    assert stats["requests"]["animelist"] > 0 and stats["routes"]["animelist"]["200"] > 0
    assert stats["status"]["400"] > 0


# ---- faults ------------------------------------------------------------------------------------


@pytest.fixture()
def faulty(population):
    with SimulatorServer(population) as server:
        yield server


def test_429_bursts_carry_retry_after(population, faulty, client):
    url = f"{faulty.api_url}/users/{population.usernames()[0]}/animelist"
    faulty.set_faults(rate_429=1.0, retry_after_s=0)
    response = client.get(url)
    assert response.status_code == 429 and response.headers["retry-after"] == "0"
    assert response.json()["error"]
    faulty.set_faults(rate_429=1.0, retry_after_s=2.5)
    assert client.get(url).headers["retry-after"] == "3"
    assert httpx.get(f"{faulty.url}/sim/clock", timeout=10).status_code == 200  # admin is never faulted
    injector = FaultInjector(FaultConfig(rate_429=0.1, burst_429=4, seed=1))
    statuses = [injector.draw().status for _ in range(400)]
    starts = [i for i, s in enumerate(statuses) if s == 429 and (i == 0 or statuses[i - 1] != 429)]
    assert starts and all(statuses[i : i + 4] == [429] * 4 for i in starts if i + 4 <= len(statuses))


def test_server_errors_slow_and_truncated_responses(population, faulty, client):
    url = f"{faulty.api_url}/users/{population.usernames()[1]}/animelist"
    faulty.set_faults(rate_5xx=1.0)
    codes = {client.get(url).status_code for _ in range(30)}
    assert codes <= {500, 502, 503} and len(codes) > 1
    faulty.set_faults(rate_slow=1.0, slow_s=0.3)
    started = time.monotonic()
    assert client.get(url).status_code == 200 and time.monotonic() - started >= 0.3
    faulty.set_faults(rate_truncated=1.0)
    response = client.get(url, params={"fields": "list_status", "nsfw": "true"})
    assert response.status_code == 200 and int(response.headers["content-length"]) == len(response.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    faulty.set_faults()
    assert client.get(url).json()["data"] is not None


def test_faults_are_switched_over_http_and_reproducible(population, faulty, client):
    config = {"rate_5xx": 0.5, "seed": 11}
    assert httpx.put(f"{faulty.url}/sim/faults", json=config, timeout=10).json()["rate_5xx"] == 0.5
    url = f"{faulty.api_url}/anime/{population.catalogue.ids[0]}"
    first = [client.get(url).status_code for _ in range(20)]
    httpx.put(f"{faulty.url}/sim/faults", json=config, timeout=10)
    assert [client.get(url).status_code for _ in range(20)] == first and 200 in first and len(set(first)) > 1
    assert httpx.put(f"{faulty.url}/sim/faults", json={"rate_5xx": 2}, timeout=10).status_code == 400
    assert faulty.faults.rate_5xx == 0.5


# ---- evolution ---------------------------------------------------------------------------------


@pytest.fixture()
def evolving():
    population = synthetic_population(500, seed=3, n_anime=1000, private_fraction=0.0)
    with SimulatorServer(population) as server:
        yield server


def test_advance_changes_are_visible_through_the_api(evolving, client):
    population = evolving.population
    before_now = population.now
    before = {n: population.truth(n) for n in population.usernames()}
    counts = httpx.post(f"{evolving.url}/sim/advance", json={"days": 30, "seed": 1}, timeout=30).json()
    assert counts["added"] > 0 and counts["changed"] > 0 and counts["deleted"] > 0
    assert (population.now - before_now).days == 30
    added = changed = deleted = 0
    for name in population.usernames():
        after = api_entries(client, evolving, name)
        assert same_as_truth(after, population.truth(name))
        old = {e["anime_id"]: e for e in before.get(name, [])}
        new = {e["anime_id"]: e for e in after}
        added += len(new.keys() - old.keys())
        deleted += len(old.keys() - new.keys())
        edits = [a for a in new if a in old and as_row(new[a]) != as_row(old[a])]
        changed += len(edits)
        fresh = [new[a] for a in new if a not in old or a in edits]
        assert all(before_now < e["updated_at"] <= population.now for e in fresh)
        assert all(new[a]["updated_at"] == old[a]["updated_at"] for a in new if a in old and a not in edits)
    assert (added, changed, deleted) == (counts["added"], counts["changed"], counts["deleted"])
    assert len(population.usernames()) == 500 + counts["new_users"]


def test_advance_is_deterministic_given_seed():
    a, b = synthetic_population(300, seed=2, n_anime=600), synthetic_population(300, seed=2, n_anime=600)
    assert a.advance(10, seed=5) == b.advance(10, seed=5)
    assert a.usernames() == b.usernames()
    for name, column in a.state.lists.columns().items():
        assert np.array_equal(column, getattr(b.state.lists, name)), name
    assert a.advance(10) == b.advance(10)  # without a seed: derived from the population's


def test_private_and_deleted_users_over_admin_routes(evolving, client):
    first, second = evolving.population.usernames()[:2]
    assert httpx.post(f"{evolving.url}/sim/private", json={"usernames": [first]}, timeout=10).status_code == 200
    assert client.get(f"{evolving.api_url}/users/{first}/animelist").status_code == 403
    assert httpx.post(f"{evolving.url}/sim/delete", json={"usernames": [second]}, timeout=10).status_code == 200
    assert client.get(f"{evolving.api_url}/users/{second}/animelist").status_code == 404
    assert second not in evolving.population.usernames()
    assert httpx.post(f"{evolving.url}/sim/delete", json={"usernames": ["ghost_user"]}, timeout=10).status_code == 404


# ---- real data ---------------------------------------------------------------------------------


def test_anime5k_backend_serves_the_data_set(client):
    if not (ANIME5K / "anime_history.dat").is_file():
        pytest.skip(f"real data not present at {ANIME5K}")
    from sprout.anime5k import read_anime5k, username_for

    data = read_anime5k(ANIME5K)
    population = from_anime5k(ANIME5K)
    assert population.n_users == data.n_users and population.n_entries == len(data.anime_ids)
    assert np.all(population.state.lists.status == COMPLETED)
    user = int(data.user_ids[0])
    mine = data.user_ids == user
    expected = dict(zip(data.anime_ids[mine].tolist(), data.scores[mine].tolist()))
    truth = population.truth(username_for(user))
    assert {e["anime_id"]: e["score"] for e in truth} == expected
    ranks = data.popularity_rank()
    stats, catalogue = population.state.stats, population.catalogue
    top = int(catalogue.ids[stats.by_popularity[0]])
    assert ranks[top] == 1 and stats.num_list_users[stats.by_popularity[0]] == data.shows[top].members
    assert all(catalogue.ratings[catalogue.index_of[i]] == s.rating for i, s in list(data.shows.items())[:500])
    assert from_anime5k(ANIME5K).truth(username_for(user)) == truth  # timestamps are deterministic
    with SimulatorServer(population) as server:
        assert same_as_truth(api_entries(client, server, username_for(user), limit=40), truth)


def test_cli_help_lists_the_serve_options():
    from typer.testing import CliRunner

    from sprout.malsim.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--users", "--seed", "--dataset", "--port", "--rate-429", "--rate-truncated"):
        assert option in result.output


def test_simulator_imports_neither_prefect_nor_bentoml():
    import subprocess
    import sys

    code = "import sys, sprout.malsim, sprout.malsim.cli; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'prefect'" not in loaded and "'bentoml'" not in loaded
