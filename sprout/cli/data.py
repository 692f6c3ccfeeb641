"""``sprout crawl``, ``sprout import``, ``sprout db`` and ``sprout dataset``: data into the store and out as snapshots."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from .common import AsJson, ConfigName, console, fail, load_settings, open_store, preset_named, print_counts

import_app = typer.Typer(help="Load data sets into the store.", no_args_is_help=True)
db_app = typer.Typer(help="Inspect and maintain the DuckDB store.", no_args_is_help=True)
dataset_app = typer.Typer(help="Immutable dataset snapshots for training.", no_args_is_help=True)


def crawl(
    usernames: Annotated[
        Path | None, typer.Option(help="Crawl exactly the users in this file (one username a line).", exists=True, dir_okay=False)
    ] = None,
    online: Annotated[bool, typer.Option(help="Discover users on the recently-online page first.")] = False,
    max_users: Annotated[int, typer.Option(min=1, help="Most users to crawl this run.")] = 1000,
    all_users: Annotated[bool, typer.Option("--all", help="Crawl every known user now, due or not.")] = False,
    full: Annotated[bool, typer.Option(help="List whole profiles (catches deletions) instead of incremental.")] = False,
    anime: Annotated[bool, typer.Option(help="Refresh anime metadata older than 30 days.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's figures as one JSON object.")] = False,
) -> None:
    """Crawl due users' lists from the MAL API (or the simulator) into DuckDB."""
    from sprout.crawl.access import StoreFile
    from sprout.crawl.job import CrawlRequest, run_crawl
    from sprout.crawl.policy import CrawlPolicy
    from sprout.store import StoreError
    from sprout.mal.client import MalClient
    from sprout.progress import crawl_progress
    from sprout.mal.discovery import RecentlyOnlineSource, SeedListSource
    from sprout.mal.errors import MalError

    settings = load_settings()
    if settings.client_id() is None:
        raise fail("SPROUT_MAL_CLIENT_ID is not set: the MAL API needs a client id (any value for the simulator)", 2)
    only = None
    if usernames is not None:
        try:
            only = asyncio.run(SeedListSource(usernames).discover())
        except ValueError as error:
            raise fail(str(error), 2) from None

    async def run() -> dict:
        async with MalClient.from_settings(settings) as client:
            sources = [RecentlyOnlineSource(client)] if online else []
            request = CrawlRequest(
                sources=sources, only_usernames=only, max_users=max_users, ignore_schedule=all_users,
                force_full=full, refresh_anime=anime, policy=CrawlPolicy.from_settings(settings),
            )
            with crawl_progress(not as_json) as progress:  # the file is opened per transaction only
                stats = await run_crawl(StoreFile(settings.db_path, wait_s=30.0), client, request, progress=progress)
            return stats.as_dict()

    try:
        figures = asyncio.run(run())
    except (MalError, StoreError) as error:
        raise fail(str(error)) from None
    with open_store(settings.db_path, read_only=True) as store:
        counts = store.counts()
    if as_json:
        print(json.dumps({"crawl": figures, "store": counts}))
    else:
        print_counts(figures, "crawl run")
        print_counts(counts, f"store {settings.db_path}")


@import_app.command("anime-5k")
def import_anime5k(
    directory: Annotated[Path, typer.Argument(help="Folder with anime_history.dat, anime_ratings.dat, anime_info.dat.", exists=True, file_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Load the anime-5k data set (real MAL data) into the store."""
    from sprout.crawl.job import utc_now
    from sprout.store.importer import import_anime5k as run_import

    settings = load_settings()
    with open_store(settings.db_path) as store:
        try:
            counts = run_import(store, directory, now=utc_now())
        except (FileNotFoundError, ValueError) as error:
            raise fail(str(error), 2) from None
    if as_json:
        print(json.dumps(counts))
    else:
        print_counts(counts, f"imported {directory}")


@db_app.command("info")
def db_info(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """Schema version, table counts and the last crawl run."""
    settings = load_settings()
    if not settings.db_path.exists():
        raise fail(f"no database at {settings.db_path} yet (run `sprout crawl` or `sprout import`)")
    with open_store(settings.db_path, read_only=True) as store:
        info = {"path": str(settings.db_path), "schema_version": store.schema_version(), **store.counts()}
        last = store.last_crawl_run()
    if as_json:
        print(json.dumps({"store": info, "last_crawl_run": last}, default=str))
    else:
        print_counts(info, "store")
        if last:
            console.print(f"last crawl run: {json.dumps(last, default=str)}")


@db_app.command("purge")
def db_purge(
    retention_days: Annotated[
        float | None,
        typer.Option(min=0, help="Keep entries this many days after a user went private or was deleted "
                     "[default: SPROUT_WITHDRAWN_RETENTION_DAYS]."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Delete the list entries of users private or gone for longer than the retention period."""
    from datetime import UTC, datetime, timedelta

    from sprout.store.retention import purge_withdrawn_users

    settings = load_settings()
    if not settings.db_path.exists():
        raise fail(f"no database at {settings.db_path} yet (run `sprout crawl` or `sprout import`)")
    days = settings.withdrawn_retention_days if retention_days is None else retention_days
    with open_store(settings.db_path) as store:
        counts = purge_withdrawn_users(store, datetime.now(UTC), timedelta(days=days)).as_dict()
    if as_json:
        print(json.dumps({**counts, "retention_days": days}))
    else:
        print_counts({**counts, "retention_days": days}, "purged withdrawn users")


@dataset_app.command("build")
def dataset_build(
    config: ConfigName = "default",
    snapshot_date: Annotated[
        str | None, typer.Option("--date", help="Snapshot date YYYY-MM-DD (entries updated later are left out); default the newest entry's day.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Snapshot the store into content-addressed arrays for training."""
    from datetime import date

    from sprout.training.run import build_dataset

    preset = preset_named(config)
    settings = load_settings()
    try:
        day = date.fromisoformat(snapshot_date) if snapshot_date else None
    except ValueError:
        raise fail(f"--date must be YYYY-MM-DD, got {snapshot_date!r}", 2) from None
    try:
        manifest = build_dataset(settings.home, settings.db_path, preset, day)
    except (FileNotFoundError, ValueError) as error:
        raise fail(str(error)) from None
    summary = {
        "snapshot_id": manifest.snapshot_id,
        "snapshot_date": manifest.snapshot_date,
        "corpus_size": manifest.corpus_size,
        "splits": {name: counts.model_dump() for name, counts in manifest.splits.items()},
        "path": str(settings.workspace.snapshot(manifest.snapshot_id)),
    }
    if as_json:
        print(json.dumps(summary))
    else:
        console.print_json(json.dumps(summary))
