"""The command line: help everywhere, clear errors for bad settings and input, and a crawl that
survives SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from crawl_helpers import CLIENT_ID, crawl, public_users, stored_rows, truth_rows
from sprout.crawl.job import CrawlRequest
from sprout.malsim.faults import FaultConfig
from sprout.malsim.synthetic_population import synthetic_population
from sprout.malsim.server import SimulatorServer
from sprout.store import Store

COMMANDS = [[], ["crawl"], ["ingest"], ["import"], ["import", "anime-5k"], ["db"], ["db", "info"], ["malsim"], ["malsim", "serve"]]


def sprout(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sprout.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def base_env(home, simulator=None, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPROUT_")}
    env.update(SPROUT_HOME=str(home), SPROUT_MAL_REQUESTS_PER_SECOND="1000", SPROUT_MAL_MAX_IN_FLIGHT="8")
    if simulator is not None:
        env.update(
            SPROUT_MAL_API_URL=simulator.api_url, SPROUT_MAL_WEB_URL=simulator.url, SPROUT_MAL_CLIENT_ID=CLIENT_ID,
            SPROUT_MAL_BACKOFF_BASE_S="0.01", SPROUT_MAL_BACKOFF_MAX_S="0.05",
        )
    env.update(extra)
    return env


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "sprout")
def test_every_command_has_help(command, tmp_path):
    result = sprout(*command, "--help", env=base_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SPROUT_MAL_REQUESTS_PER_SECOND", "fast"), ("SPROUT_MAL_MAX_IN_FLIGHT", "0"), ("SPROUT_MAL_API_URL", "ftp://x")],
)
def test_bad_settings_name_the_variable(tmp_path, variable, value):
    result = sprout("crawl", env=base_env(tmp_path, **{"SPROUT_MAL_CLIENT_ID": "x", variable: value}))
    assert result.returncode == 2
    assert variable in result.stderr and "Traceback" not in result.stderr


def test_missing_client_id_is_a_clear_error(tmp_path):
    result = sprout("crawl", env=base_env(tmp_path))
    assert result.returncode == 2 and "SPROUT_MAL_CLIENT_ID" in result.stderr


def test_bad_seed_list_names_the_line(tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("good_name\n# comment\nnot a valid name!\n")
    result = sprout("crawl", "--usernames", str(seeds), env=base_env(tmp_path, SPROUT_MAL_CLIENT_ID="x"))
    assert result.returncode == 2 and "line 3" in result.stderr
    assert not (tmp_path / "sprout.duckdb").exists()


def test_secret_never_printed_or_stored(tmp_path):
    with SimulatorServer(synthetic_population(8, seed=2, n_anime=300)) as simulator:
        env = base_env(tmp_path, simulator)
        seeds = tmp_path / "seeds.txt"
        seeds.write_text("\n".join(simulator.population.usernames()))
        result = sprout("crawl", "--usernames", str(seeds), "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["crawl"]["users_due"] == 8
    assert CLIENT_ID not in result.stdout + result.stderr
    assert CLIENT_ID.encode() not in (tmp_path / "sprout.duckdb").read_bytes()


def test_second_writer_gets_a_clear_error(tmp_path):
    with Store.open(tmp_path / "sprout.duckdb"):
        result = sprout("crawl", "--all", env=base_env(tmp_path, SPROUT_MAL_CLIENT_ID="x"))
    assert result.returncode == 1 and "another process" in result.stderr


def test_crawl_killed_midway_resumes_to_exactly_the_uninterrupted_result(tmp_path):
    population = synthetic_population(150, seed=21, n_anime=1500)
    with SimulatorServer(population) as simulator:
        seeds = tmp_path / "seeds.txt"
        seeds.write_text("\n".join(population.usernames()))
        # Slow responses stretch the crawl so that the kill lands in the middle of it.
        simulator.set_faults(FaultConfig(rate_slow=1.0, slow_s=0.08))
        killed_home = tmp_path / "killed"
        env = base_env(killed_home, simulator, SPROUT_MAL_MAX_IN_FLIGHT="2")
        process = subprocess.Popen(
            [sys.executable, "-m", "sprout.cli", "crawl", "--usernames", str(seeds), "--no-anime"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while simulator.stats()["requests"].get("animelist", 0) < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        simulator.set_faults()
        with Store.open(killed_home / "sprout.duckdb") as store:
            partial = store.counts()["crawl_state"]
        assert 0 < partial["ok"] < len(population.usernames()), partial

        resumed = sprout("crawl", "--usernames", str(seeds), "--no-anime", "--json", env=env)
        assert resumed.returncode == 0, resumed.stderr
        with Store.open(tmp_path / "straight.duckdb") as straight:
            crawl(straight, simulator, CrawlRequest(only_usernames=population.usernames(), refresh_anime=False))
            expected = straight.connection.execute(
                "SELECT username, anime_id, status, score, num_episodes_watched, updated_at FROM list_entries ORDER BY ALL"
            ).fetchall()
        with Store.open(killed_home / "sprout.duckdb") as store:
            got = store.connection.execute(
                "SELECT username, anime_id, status, score, num_episodes_watched, updated_at FROM list_entries ORDER BY ALL"
            ).fetchall()
            for username in public_users(simulator):
                assert stored_rows(store, username) == truth_rows(simulator, username)
            runs = store.connection.execute("SELECT status FROM crawl_runs ORDER BY started_at").fetchall()
    assert got == expected and len(got) == len(set((r[0], r[1]) for r in got))
    assert runs == [("interrupted",), ("completed",)]


def test_import_anime5k_command(tmp_path, anime5k_dir):
    result = sprout("import", "anime-5k", str(anime5k_dir), "--json", env=base_env(tmp_path))
    assert result.returncode == 0, result.stderr
    info = sprout("db", "info", "--json", env=base_env(tmp_path))
    store = json.loads(info.stdout)["store"]
    assert store["users"] == 5000 and store["list_entries"] == 520_609 and store["anime"] == 7390
    again = sprout("import", "anime-5k", str(anime5k_dir), "--json", env=base_env(tmp_path))
    assert again.returncode == 0
    assert json.loads(sprout("db", "info", "--json", env=base_env(tmp_path)).stdout)["store"] == store


def test_import_of_a_folder_that_is_not_the_data_set(tmp_path):
    (tmp_path / "empty").mkdir()
    result = sprout("import", "anime-5k", str(tmp_path / "empty"), env=base_env(tmp_path))
    assert result.returncode == 2 and "not an anime-5k folder" in result.stderr
