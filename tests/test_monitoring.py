"""Model health over time: fresh-data quality on a hand-built store, drift statistics, the live
service's figures, the degraded verdict, and the whole check and flow on a simulated population
whose people went on watching after the champion's snapshot."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from sprout.dataset.config import DatasetConfig
from sprout.dataset.snapshot import build_snapshot, load_snapshot
from sprout.evaluation.baselines import PopularityEvaluator
from sprout.mal.models import ListEntry
from sprout.monitoring.drift import SIZE_EDGES, Histograms, outside_corpus, population_stability_index, shares
from sprout.monitoring.fresh_data import fresh_users
from sprout.monitoring.health import Champion, HealthCheck, HealthRules, judge, should_announce
from sprout.monitoring.report import headline, trend_rows
from sprout.monitoring.service import quantile, service_figures, totals
from sprout.store import Store, UserListWrite

SNAPSHOT_DAY = date(2025, 6, 30)
BEFORE = datetime(2025, 6, 1, tzinfo=UTC)
AFTER = datetime(2025, 7, 15, tzinfo=UTC)

# Lists as of the snapshot day: show 1 is on 6 lists, 2 on 5, 3 on 4, 4 on 3, 5 on 2 (distinct
# popularity, so the popularity ranking is known by hand).
LISTS_THEN = {
    "u0": [1, 2, 3], "u1": [1, 2, 3, 5], "u2": [1, 2, 3, 4], "u3": [1, 2, 4], "u4": [1, 2, 3], "u5": [1, 4, 5],
}
# What happened after the snapshot day: (anime_id, status, score) per user.
CHANGES = {
    "u0": [(4, "completed", 8)],  # a new show of the corpus: a target
    "u1": [(2, "completed", 3), (6, "completed", 7)],  # a re-rating (not new) and a show outside the corpus
    "u2": [(5, "plan_to_watch", 0)],  # planned only: does not count
    "u3": [(5, "watching", 0)],  # a target
    "u4": [(5, "on_hold", 0)],  # on hold without a score: does not count
    "u5": [(2, "completed", 9)],  # then the list goes private: left out
}


def _entry(anime_id: int, status: str, score: int, at: datetime) -> ListEntry:
    return ListEntry(anime_id=anime_id, status=status, score=score, num_episodes_watched=1, is_rewatching=False,
                     updated_at=at)


def _write(store: Store, lists: dict[str, list[ListEntry]], at: datetime) -> None:
    store.write_user_lists([UserListWrite(name, entries, True, at, at + timedelta(days=1))
                            for name, entries in lists.items()])


@pytest.fixture
def hand_built(tmp_path):
    """A store whose snapshot was cut on SNAPSHOT_DAY, and the CHANGES written after it."""
    config = DatasetConfig(corpus_size=100, min_counted_entries=1, min_evaluation_entries=0,
                           n_validation_users=0, n_test_users=0)
    with Store.open(tmp_path / "sprout.duckdb") as store:
        then = {name: [_entry(a, "completed", 7, BEFORE) for a in shows] for name, shows in LISTS_THEN.items()}
        _write(store, then, BEFORE + timedelta(days=1))
        manifest = build_snapshot(store, tmp_path / "snapshots", config, SNAPSHOT_DAY)
        now = {}
        for name, entries in then.items():
            changed = {a: _entry(a, status, score, AFTER) for a, status, score in CHANGES.get(name, [])}
            now[name] = [changed.pop(e.anime_id, e) for e in entries] + list(changed.values())
        _write(store, now, AFTER + timedelta(days=1))
        store.connection.execute("UPDATE crawl_state SET state = 'private', withdrawn_at = ? WHERE username = 'u5'",
                                 [AFTER])
    snapshot = load_snapshot(tmp_path / "snapshots" / manifest.snapshot_id)
    return tmp_path / "sprout.duckdb", snapshot


def test_fresh_data_users_are_the_snapshot_lists_and_what_was_added_since(hand_built):
    path, snapshot = hand_built
    train = snapshot.split("train")
    with Store.open(path, read_only=True) as store, store.transaction() as connection:
        fresh = fresh_users(connection, snapshot, train)
        outside = outside_corpus(connection, snapshot.corpus, SNAPSHOT_DAY)
    users = fresh.users
    assert users.split.usernames == ("u0", "u3")
    corpus = snapshot.corpus
    shows = lambda mask: sorted(int(a) for a in corpus.anime_ids[np.flatnonzero(mask)])  # noqa: E731
    assert [shows(users.fold_in[i]) for i in range(2)] == [[1, 2, 3], [1, 2, 4]]  # the lists as of the snapshot
    assert [shows(users.held_out[i]) for i in range(2)] == [[4], [5]]  # what they added since
    assert fresh.figures() == {
        "fresh_users": 2.0, "fresh_users_with_additions": 2.0, "fresh_targets": 2.0, "snapshot_users": 6.0,
        "withdrawn_users": 1.0, "withdrawn_share": 1 / 6,
    }
    # By hand: u0's unseen shows rank 4 (3 lists) then 5 (2): the target first, NDCG 1; u3's rank
    # 3 (4 lists) then 5: the target second, NDCG 1 / log2(3).
    figures = PopularityEvaluator().evaluate(users)
    assert figures["ndcg@100"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert figures["recall@20"] == 1.0
    assert users.rated_scores.tolist() == [8.0]  # u0's new rating; u3's show is unrated
    # Counted entries updated since (u5's are gone with their list): u0's 4, u1's 2 and 6, u3's 5.
    assert outside["updated_entries"] == 4 and outside["outside_corpus_entries"] == 1
    assert outside["outside_corpus_share"] == 0.25
    assert outside["top_outside_corpus"] == [{"anime_id": 6, "title": "#6", "entries": 1}]


def test_fresh_data_sampling_keeps_at_most_max_users(hand_built):
    path, snapshot = hand_built
    with Store.open(path, read_only=True) as store, store.transaction() as connection:
        fresh = fresh_users(connection, snapshot, snapshot.split("train"), max_users=1)
    assert fresh.users.n_users == 1 and fresh.sampled_from == 2
    assert fresh.users.split.usernames[0] in ("u0", "u3")


def test_population_stability_index_on_hand_built_distributions():
    assert population_stability_index([0.5, 0.5], [0.5, 0.5]) == 0.0
    # (0.25 − 0.5)·ln(0.25/0.5) + (0.75 − 0.5)·ln(0.75/0.5)
    assert population_stability_index([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    # An empty bin is floored, not infinite.
    assert math.isfinite(population_stability_index([1.0, 0.0], [0.5, 0.5]))
    assert population_stability_index([1.0, 0.0], [0.5, 0.5]) > 0.25
    assert shares([0, 0, 1, 1.5], np.array([0, 1, 2])).tolist() == [0.5, 0.5]

    histograms = Histograms()
    histograms.add(np.array([0, 1, 3, 6, 10, 18, 18]), np.zeros(18))  # sizes 1, 2, 3, 4, 8, and an empty list
    assert histograms.sizes[:4].tolist() == [1, 2, 1, 1] and histograms.sizes.sum() == 5
    assert len(SIZE_EDGES) - 1 == len(histograms.sizes)
    assert histograms.ratings[5] == 18  # 0.0 falls in the bin [0, 0.5)


METRICS_TEXT = """\
# HELP bentoml_service_request_total Total number of HTTP requests
# TYPE bentoml_service_request_total counter
bentoml_service_request_total{endpoint="/recommend",http_response_code="200",service_name="sprout"} 90.0
bentoml_service_request_total{endpoint="/recommend",http_response_code="503",service_name="sprout"} 6.0
bentoml_service_request_total{endpoint="/recommend",http_response_code="400",service_name="sprout"} 4.0
bentoml_service_request_total{endpoint="/livez",http_response_code="200",service_name="sprout"} 500.0
# HELP bentoml_service_request_duration_seconds Request duration
# TYPE bentoml_service_request_duration_seconds histogram
bentoml_service_request_duration_seconds_bucket{endpoint="/recommend",le="0.01",service_name="sprout"} 50.0
bentoml_service_request_duration_seconds_bucket{endpoint="/recommend",le="0.1",service_name="sprout"} 98.0
bentoml_service_request_duration_seconds_bucket{endpoint="/recommend",le="+Inf",service_name="sprout"} 100.0
bentoml_service_request_duration_seconds_count{endpoint="/recommend",service_name="sprout"} 100.0
bentoml_service_request_duration_seconds_sum{endpoint="/recommend",service_name="sprout"} 2.0
bentoml_service_request_duration_seconds_bucket{endpoint="/livez",le="0.01",service_name="sprout"} 500.0
bentoml_service_request_duration_seconds_bucket{endpoint="/livez",le="+Inf",service_name="sprout"} 500.0
# HELP sprout_requests_shed_total Requests refused
# TYPE sprout_requests_shed_total counter
sprout_requests_shed_total{lane="gate"} 6.0
"""


def test_service_figures_from_the_prometheus_text():
    found = totals(METRICS_TEXT)
    assert (found["requests"], found["errors"], found["shed"]) == (100.0, 6.0, 6.0)  # health checks left out
    assert found["le"] == [0.01, 0.1, math.inf] and found["cumulative"] == [50.0, 98.0, 100.0]
    # Half the requests took at most 10 ms: the median is the bucket's bound; the 99th lies past
    # the last finite bound, which is what a histogram can tell.
    assert quantile(0.5, found["le"], found["cumulative"]) == pytest.approx(0.01)
    assert quantile(0.75, found["le"], found["cumulative"]) == pytest.approx(0.01 + 0.09 * (25 / 48))
    assert quantile(0.99, found["le"], found["cumulative"]) == 0.1
    assert quantile(0.5, found["le"], [0, 0, 0]) is None

    at = datetime(2026, 1, 2, tzinfo=UTC)
    since_start = service_figures(found, at)
    assert since_start["requests_per_s"] is None and since_start["window"] == "since the service started"
    assert since_start["p50_ms"] == pytest.approx(10.0) and since_start["error_share"] == 0.06
    earlier = {**found, "requests": 40.0, "errors": 0.0, "shed": 0.0, "cumulative": [40.0, 40.0, 40.0],
               "at": (at - timedelta(seconds=600)).isoformat()}
    between = service_figures(found, at, earlier)
    assert between["requests"] == 60.0 and between["requests_per_s"] == pytest.approx(0.1)
    assert between["errors"] == 6.0 and between["shed"] == 6.0
    # Of the 60 between: 10 fast, 48 medium, 2 slow; the 30th lies 20 into the 48 medium ones.
    assert between["p50_ms"] == pytest.approx(10 + 90 * (20 / 48))
    restarted = {**earlier, "requests": 1e6}  # a counter went down: another process since
    assert service_figures(found, at, restarted)["requests_per_s"] is None


def _figures(model: float, ease: float, promoted: float, promoted_ease: float, users: int = 100) -> dict:
    return {"counts": {"fresh_users": users}, "at_promotion": {"ndcg@100": promoted, "ease_ndcg@100": promoted_ease},
            "fresh": {"model": {"ndcg@100": model}, "ease": {"ndcg@100": ease}, "popularity": {"ndcg@100": 0.1}}}


def test_degraded_below_ease_or_after_losing_ground_on_it_and_never_on_too_few_users():
    rules = HealthRules(max_ndcg_drop=0.1, ease_tolerance=0.01, min_fresh_users=50)
    # Fresh figures far below the promotion ones are not a decay by themselves: another task.
    assert judge(_figures(0.15, 0.15, 0.45, 0.45), rules) == (False, [
        "fresh NDCG@100 0.1500 at or above EASE's 0.1500 (tolerance 0.01)",
        "NDCG@100 100% of EASE's now, 100% at promotion (not more than 10% lower)"])
    assert judge(_figures(0.145, 0.15, 0.45, 0.45), rules)[0] is False  # within the tolerance
    degraded, reasons = judge(_figures(0.13, 0.15, 0.45, 0.45), rules)
    assert degraded and "below EASE" in reasons[0]
    # 130% of EASE's at promotion, 110% now: twenty points lost.
    degraded, reasons = judge(_figures(0.165, 0.15, 0.52, 0.40), rules)
    assert degraded and "(more than 10% lower)" in reasons[1] and "at or above" in reasons[0]
    assert judge(_figures(0.182, 0.15, 0.52, 0.40), rules)[0] is False  # 121% now: nine points
    degraded, reasons = judge(_figures(0.0, 0.30, 0.35, 0.3, users=49), rules)
    assert not degraded and "too few" in reasons[0]


def test_a_degraded_champion_announces_once_a_day():
    def check(at: datetime, degraded: bool) -> HealthCheck:
        return HealthCheck(str(at), at, "v1", "s1", degraded, [], {})

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    assert should_announce(check(t0, True), [])
    assert not should_announce(check(t0, False), [])
    earlier = [check(t0, True).row()]
    assert not should_announce(check(t0 + timedelta(hours=1), True), earlier)
    assert should_announce(check(t0 + timedelta(days=1), True), earlier)
    assert should_announce(check(t0 + timedelta(hours=1), True), [check(t0, False).row()])


# --- the whole check on a simulated population --------------------------------------------------

DAYS_LATER = 30


@pytest.fixture(scope="module")
def evolved(tmp_path_factory):
    """A trained home whose simulated people went on adding and rating shows for 30 days after
    the snapshot, crawled over real HTTP into the store."""
    from crawl_helpers import crawl, later_clock
    from promotion_helpers import make_trained_home
    from sprout.crawl.job import CrawlRequest
    from sprout.malsim.server import SimulatorServer
    from sprout.malsim.synthetic_population import synthetic_population

    home = make_trained_home(tmp_path_factory.mktemp("evolved"))
    population = synthetic_population(500, seed=11, n_anime=300)  # the population the home was trained on
    changes = population.advance(DAYS_LATER)
    assert changes["added"] > 100
    request = CrawlRequest(only_usernames=population.usernames(), refresh_anime=False, force_full=True)
    with SimulatorServer(population) as simulator, Store.open(home.home / "sprout.duckdb") as store:
        stats = crawl(store, simulator, request, clock=later_clock(1))
    assert stats.users_failed == 0 and stats.entries_added > 100
    return home


def _check(home, version: str, **options):
    from sprout.monitoring.health import check_model_health
    from sprout.workspace import Workspace

    champion = Champion(version, Workspace(home.home).model(version), {"ndcg@100": 0.4, "ease_ndcg@100": 0.4})
    return check_model_health(home.home / "sprout.duckdb", home.home, champion, **options)


def test_a_trained_model_predicts_what_people_watched_next_better_than_popularity(evolved):
    check = _check(evolved, evolved.trained[0], rules=HealthRules(min_fresh_users=20))
    figures = check.figures
    assert figures["counts"]["fresh_users"] >= 20 and figures["counts"]["fresh_targets"] >= figures["counts"]["fresh_users"]
    fresh = figures["fresh"]
    assert fresh["model"]["ndcg@100"] > fresh["popularity"]["ndcg@100"] + 0.03
    assert fresh["model"]["recall@20"] > fresh["popularity"]["recall@20"]
    assert fresh["ease"]["ndcg@100"] > fresh["popularity"]["ndcg@100"]
    assert 1 <= fresh["model"]["rating_mae"] < 3  # ratings on the 1..10 scale, not normalised units
    drift = figures["drift"]
    # Thirty days of the same people keep the lists' shape: sizes and ratings barely move.
    assert 0 <= drift["profile_size_psi"] < 0.1 and 0 <= drift["rating_psi"] < 0.1
    assert 0 < drift["outside_corpus_share"] < 1 and drift["updated_entries"] > drift["outside_corpus_entries"]
    assert figures["at_promotion"] == {"ndcg@100": 0.4, "ease_ndcg@100": 0.4}
    assert DAYS_LATER - 1 <= figures["days_since_snapshot"] <= DAYS_LATER  # by the data, not the wall clock


def test_random_weights_are_degraded_on_fresh_data(evolved):
    check = _check(evolved, evolved.random, rules=HealthRules(min_fresh_users=20))
    assert check.degraded and any("below EASE" in reason for reason in check.reasons)
    row = headline(check.row().figures)
    assert row["fresh_ndcg@100"] < row["ease_ndcg@100"]
    assert trend_rows([check.row()])[0]["degraded"] is True


def test_an_unreachable_service_is_reported_not_raised(evolved):
    from bentos.local_server import free_port

    check = _check(evolved, evolved.trained[0], service_url=f"http://127.0.0.1:{free_port()}",
                   rules=HealthRules(min_fresh_users=20))
    assert "did not answer" in check.figures["service"]["error"]
    assert "fresh" in check.figures and check.figures["fresh"]["model"]["ndcg@100"] > 0


def test_a_missing_snapshot_is_a_clear_error(evolved, tmp_path):
    import shutil

    from sprout.monitoring.health import HealthCheckError

    copy = tmp_path / "home"
    shutil.copytree(evolved.home, copy)
    shutil.rmtree(copy / "snapshots")
    home = type(evolved)(copy, evolved.trained, evolved.random)
    with pytest.raises(HealthCheckError, match="sprout dataset build --date"):
        _check(home, evolved.trained[0])


# --- the monitor flow under a Prefect server ----------------------------------------------------


def _promote(home, version: str) -> None:
    from bentos.registry import ModelRegistry
    from sprout.registry.promotion import register_version

    registry = ModelRegistry(home.home.parent / "model-store", events=home.home / "sprout.duckdb")
    register_version(version, home=home.home, registry=registry,
                     metrics={"ndcg@100": 0.4, "recall@20": 0.5, "ease_ndcg@100": 0.4})
    registry.promote(version, "test")


def _degraded_events() -> list:
    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    from flows.monitor import MODEL_DEGRADED

    async def read():
        async with get_client() as client:
            return await client.read_events(EventFilter(event=EventNameFilter(name=[MODEL_DEGRADED])), limit=50)

    return asyncio.run(read()).events


def test_the_monitor_flow_records_publishes_and_announces_a_degraded_champion(
    prefect_server, evolved, tmp_path, monkeypatch
):
    from prefect import get_client

    from flows.monitor import MonitorParameters, monitor_flow
    from promotion_helpers import private_home
    from wandb_reader import read_offline_run

    home = private_home(evolved, tmp_path, monkeypatch)
    monkeypatch.setenv("SPROUT_MONITOR_MIN_FRESH_USERS", "20")
    monkeypatch.setenv("SPROUT_MONITOR_EASE_TOLERANCE", "0.05")  # the trained model is well within it
    monkeypatch.setenv("SPROUT_MONITOR_MAX_NDCG_DROP", "1")
    assert monitor_flow(MonitorParameters())["skipped"]  # no champion yet
    events_before = len(_degraded_events())

    _promote(home, home.trained[0])
    healthy = monitor_flow(MonitorParameters())
    assert not healthy["degraded"] and not healthy["announced"]
    assert healthy["figures"]["fresh_ndcg@100"] > healthy["figures"]["popularity_ndcg@100"]

    _promote(home, home.random)  # a champion that has lost it
    degraded = monitor_flow(MonitorParameters())
    again = monitor_flow(MonitorParameters())
    assert degraded["degraded"] and degraded["announced"]
    assert again["degraded"] and not again["announced"]  # once a day, not on every crawl
    events = _degraded_events()
    assert len(events) == events_before + 1
    assert events[0].payload["model_version"] == home.random
    assert events[0].resource.id == f"sprout.model.{home.random}"

    with Store.open(home.home / "sprout.duckdb", read_only=True) as store:
        checks = store.health_checks()
    assert [c.model_version for c in checks] == [home.random, home.random, home.trained[0]]
    assert [c.degraded for c in checks] == [True, True, False]

    async def artifact():
        async with get_client() as client:
            found = [a for a in await client.read_artifacts(limit=100) if a.key == "model-health"]
            return max(found, key=lambda a: a.created)

    table = asyncio.run(artifact())
    assert "DEGRADED" in table.description and home.random in str(table.data)
    assert str(table.data).count(home.random) == 2  # the trend: both checks of this champion

    runs = sorted((home.home / "wandb" / "wandb").glob(f"offline-run-*-{again['wandb_run_id']}"))
    logged = read_offline_run(runs[-1])
    assert logged["summary"]["degraded"] == 1 and "below EASE" in logged["summary"]["reasons"]
    history = logged["history"]
    assert len(history) == 2 and all(step["fresh_ndcg@100"] < step["ease_ndcg@100"] for step in history)


def test_monitor_cli_prints_json_and_status_shows_the_last_check(evolved, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from promotion_helpers import private_home
    from sprout.cli.main import app

    home = private_home(evolved, tmp_path, monkeypatch)
    monkeypatch.setenv("SPROUT_MONITOR_MIN_FRESH_USERS", "20")
    runner = CliRunner()
    refused = runner.invoke(app, ["monitor"])
    assert refused.exit_code == 1 and "no champion" in refused.output
    _promote(home, home.trained[0])
    done = runner.invoke(app, ["monitor", "--json"])
    assert done.exit_code == 0, done.output
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["model_version"] == home.trained[0] and found["fresh"]["model"]["ndcg@100"] > 0
    assert set(found["fresh"]) == {"model", "popularity", "ease"}
    shown = runner.invoke(app, ["monitor"])
    assert shown.exit_code == 0 and "NDCG@100" in shown.output and "drift" in shown.output
    status = runner.invoke(app, ["status", "--json"])
    last = json.loads(status.stdout.strip().splitlines()[-1])["last_health_check"]
    assert last["version"] == home.trained[0] and last["figures"]["fresh_ndcg@100"] == found["fresh"]["model"]["ndcg@100"]
