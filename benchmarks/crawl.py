"""Crawl benchmark: profiles/s, requests per user on an unchanged re-crawl, store ingest entries/s.

The simulator runs in its own process (as in production the API is elsewhere) with the rate
limit lifted; the crawler and DuckDB run here. A short crawl into a throwaway store warms both
processes first. Baselines are measured in the same run: a crawl with one request in flight (on
the first tenth of the users, into its own store), and row-by-row INSERTs into DuckDB (on the
first tenth of the lists); like the batched ingest, the row-by-row baseline turns the fetched
lists into rows inside its timed region.

    uv run python benchmarks/crawl.py [--users 2000]

Writes ``benchmarks/results/crawl.json``; `benchmarks/readme_tables.py` renders it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import typer

from sprout.crawl.job import CrawlRequest, run_crawl
from sprout.crawl.policy import CrawlPolicy
from sprout.mal.client import MalClient
from sprout.mal.limiter import Unlimited
from sprout.store import Store, UserListWrite

CLIENT_ID = "benchmark"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_simulator(users: int, seed: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sprout.cli", "malsim", "serve", "--users", str(users), "--seed", str(seed),
         "--port", str(port), "--private-fraction", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/sim/clock", timeout=1).raise_for_status()
            return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the simulator did not start")


async def crawl_once(db: Path, url: str, usernames: list[str], in_flight: int, policy: CrawlPolicy):
    async with MalClient(f"{url}/v2", CLIENT_ID, web_url=url, limiter=Unlimited(), max_in_flight=in_flight) as client:
        with Store.open(db) as store:
            request = CrawlRequest(only_usernames=usernames, refresh_anime=False, policy=policy)
            return await run_crawl(store, client, request)


async def fetch_lists(url: str, usernames: list[str]) -> list[UserListWrite]:
    now = datetime.now(timezone.utc)
    async with MalClient(f"{url}/v2", CLIENT_ID, limiter=Unlimited(), max_in_flight=8) as client:
        lists = await asyncio.gather(*(client.fetch_animelist(u) for u in usernames))
    return [UserListWrite(l.username, l.entries, True, now, now + timedelta(days=1)) for l in lists]


def ingest(db: Path, writes: list[UserListWrite], batch: int = 128) -> float:
    with Store.open(db) as store:
        started = time.perf_counter()
        for i in range(0, len(writes), batch):
            store.write_user_lists(writes[i : i + batch])
        return time.perf_counter() - started


def ingest_row_by_row(db: Path, writes: list[UserListWrite]) -> float:
    """Baseline: one INSERT per entry, as a straightforward implementation would do."""
    with Store.open(db) as store:
        started = time.perf_counter()
        rows = [
            (w.username, e.anime_id, e.status, e.score, e.num_episodes_watched, e.is_rewatching, e.updated_at,
             e.start_date, e.finish_date, w.fetched_at)
            for w in writes for e in w.entries
        ]
        with store.transaction() as sql:
            sql.executemany("INSERT INTO list_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return time.perf_counter() - started


def main(users: int = typer.Option(2000, min=10), seed: int = typer.Option(1)) -> None:
    from results import write_result

    load_average = os.getloadavg()[0]  # other jobs on the machine share its cores
    simulator, url = start_simulator(users, seed)
    try:
        usernames = httpx.get(f"{url}/sim/usernames", params={"limit": users}).json()["usernames"]
        no_full = CrawlPolicy(full_refresh_every=timedelta(days=3650))
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            asyncio.run(crawl_once(tmp / "warm.duckdb", url, usernames[-10:], 8, no_full))  # warm-up, not measured
            sequential = usernames[: max(10, users // 10)]
            base = asyncio.run(crawl_once(tmp / "seq.duckdb", url, sequential, 1, no_full))
            first = asyncio.run(crawl_once(tmp / "crawl.duckdb", url, usernames, 8, no_full))
            again = asyncio.run(crawl_once(tmp / "crawl.duckdb", url, usernames, 8, no_full))
            writes = asyncio.run(fetch_lists(url, usernames))
            entries = sum(len(w.entries) for w in writes)
            batched_s = ingest(tmp / "ingest.duckdb", writes)
            naive_writes = writes[: max(10, len(writes) // 10)]
            naive_s = ingest_row_by_row(tmp / "naive.duckdb", naive_writes)
            naive_entries = sum(len(w.entries) for w in naive_writes)
    finally:
        simulator.terminate()
        simulator.wait(timeout=30)

    changed = again.entries_added + again.entries_changed + again.entries_deleted
    figures = {
        "profiles_per_s": round(first.users_ok / first.duration_s, 1), "in_flight": 8, "users_ok": first.users_ok,
        "crawl_s": round(first.duration_s, 2),
        "recrawl_requests_per_user": round(again.requests / len(usernames), 4), "recrawl_entries_changed": changed,
        "ingest_entries_per_s": round(entries / batched_s), "ingest_batch_users": 128,
        "goals": {"profiles_per_s": 50, "recrawl_requests_per_user": 1.05, "ingest_entries_per_s": 100_000},
    }
    baselines = {
        "one_in_flight": {"profiles_per_s": round(base.users_ok / base.duration_s, 1), "users": len(sequential)},
        "row_by_row_insert": {"entries_per_s": round(naive_entries / naive_s), "users": len(naive_writes),
                              "entries": naive_entries},
    }
    path = write_result("crawl", {
        "figures": figures, "baselines": baselines,
        "settings": {"users": users, "entries": entries, "seed": seed, "simulator": "own process, rate limit lifted"},
        "notes": {"load_average_at_start": round(load_average, 2)},
    })
    print(f"population: {users} users, {entries:,} entries (simulator in its own process, rate limit lifted)")
    print(f"{'figure':44} {'value':>12}  goal")
    print(f"{'crawl profiles/s (8 in flight)':44} {figures['profiles_per_s']:12.1f}  >= 50")
    print(f"{'  baseline: 1 in flight (' + str(len(sequential)) + ' users)':44} "
          f"{baselines['one_in_flight']['profiles_per_s']:12.1f}")
    print(f"{'requests/user, unchanged incremental re-crawl':44} {again.requests / len(usernames):12.3f}  <= 1.05")
    print(f"{'  entries changed by the re-crawl':44} {changed:12d}")
    print(f"{'store ingest entries/s (batches of 128 users)':44} {entries / batched_s:12,.0f}  >= 100,000")
    print(f"{'  baseline: row-by-row INSERT':44} {naive_entries / naive_s:12,.0f}")
    print(f"written to {path}")


if __name__ == "__main__":
    typer.run(main)
