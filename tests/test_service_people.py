"""The service for people: recommendations by MAL username and from a list export, over real
HTTP against the simulator; `sprout recommend` in the terminal; the web page in a real browser."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import sys

import httpx
import pytest

from bentos.local_server import LocalServer
from service_helpers import SERVER_ENV, SIMULATOR_SEED, SIMULATOR_SHOWS, build_model_store, simulator_env
from sprout.malsim.faults import FaultConfig
from sprout.malsim.server import SimulatorServer
from sprout.malsim.synthetic_population import synthetic_population


@pytest.fixture(scope="module")
def simulator():
    population = synthetic_population(60, seed=SIMULATOR_SEED, n_anime=SIMULATOR_SHOWS, private_fraction=0.2)
    with SimulatorServer(population) as running:
        yield running


@pytest.fixture(scope="module")
def server(simulator, tmp_path_factory):
    # The shows' pictures are the simulator's own covers, as a crawl through it would store them.
    store = build_model_store(tmp_path_factory.mktemp("people"), picture_base=simulator.url)
    env = {**SERVER_ENV, **simulator_env(simulator), "SPROUT_SERVE_USERNAME_DEADLINE_S": "5"}
    with LocalServer(store.store_dir, tmp_path_factory.mktemp("logs") / "serve.log", extra_env=env) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


def users(simulator, private: bool) -> list[str]:
    population = simulator.population
    return [u for u in population.usernames() if population.is_private(u) == private and len(population.truth(u)) >= 5]


def as_profile(simulator, username: str) -> list[dict]:
    return [{"anime_id": r["anime_id"], "score": r["score"], "status": r["status"]} for r in simulator.population.truth(username)]


def comparable(answer: dict) -> dict:
    """An answer up to float rounding (sums over the profile run in the order it came in) and the
    order of the ignored entries."""
    rounded = [
        {k: round(v, 5) if isinstance(v, float) else v for k, v in item.items() if k != "contributors"}
        | {"contributors": [c["anime_id"] for c in item.get("contributors") or []]}
        for item in answer["recommendations"]
    ]
    return {"model": answer["model"], "recommendations": rounded,
            "ignored": sorted((e["anime_id"], e["reason"]) for e in answer["ignored"])}


def export_of(profile: list[dict]) -> bytes:
    statuses = {"watching": "Watching", "completed": "Completed", "on_hold": "On-Hold", "dropped": "Dropped",
                "plan_to_watch": "Plan to Watch"}
    rows = "".join(
        f"<anime><series_animedb_id>{e['anime_id']}</series_animedb_id><my_score>{e['score']}</my_score>"
        f"<my_status>{statuses[e['status']]}</my_status></anime>"
        for e in profile
    )
    return f'<?xml version="1.0" encoding="UTF-8"?><myanimelist>{rows}</myanimelist>'.encode()


def test_a_username_gets_the_same_answer_as_its_list_posted(client, simulator):
    name = users(simulator, private=False)[0]
    by_name = client.post("/recommend", json={"username": name, "top_k": 10, "explain": True})
    assert by_name.status_code == 200, by_name.text
    posted = client.post("/recommend", json={"profile": as_profile(simulator, name), "top_k": 10, "explain": True})
    assert comparable(by_name.json()) == comparable(posted.json())
    explained = client.post("/explain", json={"username": name, "top_k": 10})
    assert explained.status_code == 200 and explained.json()["most_impactful"]


def test_a_cached_list_answers_without_asking_mal(client, simulator):
    name = users(simulator, private=False)[1]
    assert client.post("/recommend", json={"username": name}).status_code == 200
    before = simulator.stats()["requests"]
    hits = cache_lookups(client, "hit")
    assert client.post("/recommend", json={"username": name.upper(), "top_k": 5}).status_code == 200
    assert simulator.stats()["requests"] == before
    assert cache_lookups(client, "hit") == hits + 1  # /metrics counts the cache's answers
    assert cache_lookups(client, "miss") >= 1


def cache_lookups(client, result: str) -> float:
    """sprout_username_cache_total{result=...} from /metrics (0 before the first such lookup)."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("sprout_username_cache_total{") and f'result="{result}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_each_failure_is_its_status_with_a_sentence(client, simulator):
    unknown = client.post("/recommend", json={"username": "nobody_here_42"})
    assert unknown.status_code == 404 and "no user called" in unknown.json()["error"]
    private = client.post("/recommend", json={"username": users(simulator, private=True)[0]})
    assert private.status_code == 403 and "private" in private.json()["error"]
    invalid = client.post("/recommend", json={"username": "a b"})
    assert invalid.status_code == 400 and "not a MyAnimeList username" in invalid.json()["error"]
    simulator.set_faults(FaultConfig(rate_5xx=1.0))
    try:
        down = client.post("/recommend", json={"username": users(simulator, private=False)[2]})
    finally:
        simulator.set_faults()
    assert down.status_code == 503 and int(down.headers["Retry-After"]) >= 1
    assert "cannot be reached" in down.json()["error"]
    simulator.set_faults(FaultConfig(rate_slow=1.0, slow_s=8.0))
    try:
        slow = client.post("/recommend", json={"username": users(simulator, private=False)[3]})
    finally:
        simulator.set_faults()
    assert slow.status_code == 503 and "within 5 s" in slow.json()["error"]
    assert client.get("/readyz").status_code == 200  # and the server is still there


def test_an_export_becomes_the_same_profile(client, simulator):
    profile = as_profile(simulator, users(simulator, private=False)[4])
    for body in (export_of(profile), gzip.compress(export_of(profile))):
        found = client.post("/profile/export", content=body, headers={"content-type": "application/octet-stream"})
        assert found.status_code == 200, found.text
        assert sorted(map(tuple, (e.values() for e in found.json()["profile"]))) == sorted(map(tuple, (e.values() for e in profile)))
    bomb = gzip.compress(b"<myanimelist>" + b" " * (40 << 20) + b"</myanimelist>")
    refused = client.post("/profile/export", content=bomb, headers={"content-type": "application/gzip"})
    assert refused.status_code == 400 and "inflates to more than" in refused.json()["error"]
    entities = b'<!DOCTYPE x [<!ENTITY a "aaaa">]><myanimelist>&a;</myanimelist>'
    assert client.post("/profile/export", content=entities).status_code == 400
    oversize = client.post("/profile/export", content=b" " * (17 << 20))
    assert oversize.status_code == 413


def test_the_command_line_prints_the_recommendations(server, simulator, tmp_path):
    name = users(simulator, private=False)[0]
    command = [sys.executable, "-m", "sprout.cli", "recommend", "--url", server.url, "--top-k", "5"]
    by_name = subprocess.run([*command, "--username", name, "--json"], capture_output=True, text=True, timeout=120)
    assert by_name.returncode == 0, by_name.stderr
    export = tmp_path / "animelist.xml.gz"
    export.write_bytes(gzip.compress(export_of(as_profile(simulator, name))))
    from_file = subprocess.run([*command, "--export", str(export)], capture_output=True, text=True, timeout=120)
    assert from_file.returncode == 0, from_file.stderr
    import json

    first = json.loads(by_name.stdout)["recommendations"][0]["title"]
    assert first and first[:20] in from_file.stdout  # the table shows the same top title
    missing = subprocess.run([*command, "--username", "nobody_here_42"], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "no user called" in missing.stderr


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_web_page_in_a_real_browser(server, simulator, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    name = users(simulator, private=False)[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 420, "height": 900})  # a narrow screen
        page.goto(server.url + "/")
        page.get_by_label("MyAnimeList username").fill(name)
        page.get_by_role("button", name="Recommend").click()
        items = page.locator("#recommendations li")
        expect(items).to_have_count(20, timeout=30_000)
        expect(page.locator("#model")).to_contain_text("Answered by model")
        assert page.locator("#recommendations li a").first.get_attribute("href").startswith("https://myanimelist.net/anime/")
        expect(page.locator("#impactful li").first).to_be_visible()
        page.screenshot(path=tmp_path / "username.png", full_page=True)

        before = items.all_inner_texts()
        slider = page.get_by_label("Rating weight")
        slider.focus()
        for _ in range(20):  # keyboard only: all the way to 0
            page.keyboard.press("ArrowLeft")
        expect(page.locator("#rating_weight_value")).to_have_text("0.00")
        page.wait_for_function("document.querySelector('#status').textContent.includes('recommendations')")
        page.wait_for_timeout(1500)
        assert items.all_inner_texts() != before
        page.screenshot(path=tmp_path / "rating-weight.png", full_page=True)

        page.get_by_label("MyAnimeList username").fill("")
        export = tmp_path / "animelist.xml"
        export.write_bytes(export_of(as_profile(simulator, users(simulator, private=False)[1])))
        page.get_by_label("List export file").set_input_files(str(export))
        page.get_by_role("button", name="Recommend").click()
        expect(page.locator("#status")).to_contain_text("recommendations", timeout=30_000)
        assert items.count() >= 10
        page.screenshot(path=tmp_path / "export.png", full_page=True)

        page.get_by_label("List export file").set_input_files([])
        for username, message in ((users(simulator, private=True)[0], "private"), ("nobody_here_42", "no user called")):
            page.get_by_label("MyAnimeList username").fill(username)
            page.get_by_role("button", name="Recommend").click()
            expect(page.get_by_role("alert")).to_contain_text(message, timeout=30_000)
            page.screenshot(path=tmp_path / f"error-{message.split()[0]}.png", full_page=True)
        browser.close()
    assert len(list(tmp_path.glob("*.png"))) == 5


MEDIA_NAMES = {"tv": "TV", "movie": "Movie", "ova": "OVA", "ona": "ONA", "special": "Special", "music": "Music"}
PERCENT = r"(?:<0\.0001|\d+(?:\.\d+)?)%"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_page_shows_covers_readable_figures_and_predictions(server, simulator, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    catalogue = simulator.population.catalogue
    name = users(simulator, private=False)[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 420, "height": 900})
        page.goto(server.url + "/")
        page.get_by_label("MyAnimeList username").fill(name)
        page.get_by_role("button", name="Recommend").click()
        items = page.locator("#recommendations li")
        expect(items).to_have_count(20, timeout=30_000)

        # Every recommendation has its cover (the simulator's, loaded) or a placeholder: never a broken image.
        assert page.locator("#recommendations li .cover").count() == 20
        first = page.locator("#recommendations li img.cover").first
        expect(first).to_have_attribute("loading", "lazy")
        assert first.get_attribute("alt").startswith("Cover of ")
        page.wait_for_function(
            "() => { const i = document.querySelector('#recommendations img.cover'); return i && i.complete && i.naturalWidth > 0; }"
        )
        for row in items.all():  # lazy covers load as they come into view
            row.scroll_into_view_if_needed()
            row.locator(".cover").evaluate(
                "(c) => c.tagName !== 'IMG' || c.complete ? null"
                " : new Promise((done) => { c.addEventListener('load', done); c.addEventListener('error', done); })"
            )
        loaded = page.evaluate(
            "[...document.querySelectorAll('#recommendations .cover')].map((c) => c.tagName === 'IMG' && c.naturalWidth)"
        )
        assert all(loaded), loaded  # every corpus show has a picture here, and the simulator serves them all

        # Figures: probabilities as readable, differing percentages, predicted ratings out of 10.
        figures = page.locator("#recommendations .figures").all_inner_texts()
        probabilities = [re.search(rf"probability ({PERCENT})", text).group(1) for text in figures]
        assert len(set(probabilities)) > 1 and "0.0%" not in page.locator("main").inner_text()
        assert all(p != "0%" for p in probabilities)
        assert all(re.search(r"predicted rating \d+\.\d/10", text) for text in figures), figures

        # Media type, year and genres of each show, as the corpus (the simulator's catalogue) has them.
        for row in items.all():
            anime_id = int(row.locator("a.title").get_attribute("href").rsplit("/", 1)[1])
            show = catalogue.index_of[anime_id]
            meta = row.locator(".meta").inner_text()
            assert MEDIA_NAMES[catalogue.media_types[show]] in meta
            if catalogue.start_dates[show]:
                assert catalogue.start_dates[show][:4] in meta
            for genre in catalogue.genres[show]:
                assert catalogue.genre_names[genre] in meta

        # Explanations as shares: "because you watched A (41%) ..." and "changes your top 50 by 12% on average".
        because = page.locator("#recommendations .because").first.inner_text()
        assert re.match(rf"because you watched .+ \({PERCENT}\)", because), because
        expect(page.locator("#impactful li").first).to_contain_text(re.compile(rf"changes your top 50 by {PERCENT} on average"))
        page.screenshot(path=tmp_path / "covers.png", full_page=True)

        # What would I think of…? Two recommended shows by id and by title, one of the list, one unknown.
        recommended = [int(a.get_attribute("href").rsplit("/", 1)[1]) for a in page.locator("#recommendations a.title").all()]
        titled = next(catalogue.titles[catalogue.index_of[i]] for i in recommended[1:] if "," not in catalogue.titles[catalogue.index_of[i]])
        own = as_profile(simulator, name)[0]["anime_id"]
        page.route(f"**/images/anime/{own}l.svg", lambda route: route.abort())  # this cover fails to load
        page.get_by_label("Anime ids").fill(f"{recommended[0]}, {titled}, {own}, 2000000000")
        page.get_by_role("button", name="Predict").click()
        predictions = page.locator("#predictions li")
        expect(predictions).to_have_count(3, timeout=30_000)
        expect(page.locator("#predict_status")).to_contain_text("does not know #2000000000")
        texts = predictions.all_inner_texts()
        assert all(re.search(rf"probability {PERCENT} · predicted rating \d+\.\d/10", text) for text in texts), texts
        assert titled in texts[1] and "On your list" in texts[2]
        assert page.locator("#predictions li .cover").count() == 3
        predictions.nth(2).scroll_into_view_if_needed()
        failed = predictions.nth(2).locator(".cover")  # a plain box with the title's first letter instead
        expect(failed).to_have_class(re.compile(r"\bplaceholder\b"))
        expect(failed).to_have_text(catalogue.titles[catalogue.index_of[own]].strip()[0].upper())
        # A recommended show gets the figures its recommendation showed.
        assert re.search(rf"probability ({PERCENT})", texts[0]).group(1) == probabilities[0]
        page.locator("#predict").screenshot(path=tmp_path / "predict.png")
        page.screenshot(path=tmp_path / "page.png", full_page=True)

        # A 4xx answer reads as its sentence, in the box.
        page.get_by_label("MyAnimeList username").fill("nobody_here_42")
        page.get_by_role("button", name="Predict").click()
        expect(page.locator("#predict_error")).to_contain_text("no user called", timeout=30_000)
        page.get_by_label("Anime ids").fill("1, not a show")
        page.get_by_role("button", name="Predict").click()
        expect(page.locator("#predict_error")).to_contain_text("is not an anime id")
        browser.close()
