"""``sprout crawl``, ``sprout ingest``, ``sprout import``, ``sprout db`` and ``sprout dataset``: data into the
store and out as snapshots."""

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


SpoolOption = Annotated[
    str | None,
    typer.Option("--spool", metavar="LOCATION", help="The spool: a folder or an object-store URL (default: SPROUT_CRAWL_SPOOL)."),
]


def _seed_list(usernames: Path | None) -> list[str] | None:
    from sprout.mal.discovery import SeedListSource

    if usernames is None:
        return None
    try:
        return asyncio.run(SeedListSource(usernames).discover())
    except ValueError as error:
        raise fail(str(error), 2) from None


def crawl(
    usernames: Annotated[
        Path | None, typer.Option(help="Crawl exactly the users in this file (one username a line).", exists=True, dir_okay=False)
    ] = None,
    online: Annotated[bool, typer.Option(help="Discover users on the recently-online page first.")] = False,
    max_users: Annotated[int, typer.Option(min=1, help="Most users to crawl this run.")] = 1000,
    all_users: Annotated[bool, typer.Option("--all", help="Crawl every known user now, due or not.")] = False,
    full: Annotated[bool, typer.Option(help="List whole profiles (catches deletions) instead of incremental.")] = False,
    anime: Annotated[bool, typer.Option(help="Refresh anime metadata older than 30 days.")] = True,
    spool: SpoolOption = None,
    direct: Annotated[bool, typer.Option("--direct", help="Write the store directly even when SPROUT_CRAWL_SPOOL is set.")] = False,
    worker: Annotated[
        str | None, typer.Option(help="Spool mode: this worker's name; one restarted under the same name resumes its assignment (default: host-pid).")
    ] = None,
    assignment: Annotated[str | None, typer.Option(help="Spool mode: crawl only this assignment.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's figures as one JSON object.")] = False,
) -> None:
    """Crawl due users' lists from the MAL API (or the simulator) into DuckDB.

    With a spool (--spool or SPROUT_CRAWL_SPOOL), crawl the assignments `sprout ingest --assign`
    handed out on the store's host instead, publishing the lists to the spool: this never opens
    the store, so it runs on any host.
    """
    from sprout.crawl.access import StoreFile
    from sprout.crawl.job import CrawlRequest, run_crawl
    from sprout.crawl.policy import CrawlPolicy
    from sprout.store import StoreError
    from sprout.mal.client import MalClient
    from sprout.progress import crawl_progress
    from sprout.mal.discovery import RecentlyOnlineSource
    from sprout.mal.errors import MalError

    settings = load_settings()
    if settings.client_id() is None:
        raise fail("SPROUT_MAL_CLIENT_ID is not set: the MAL API needs a client id (any value for the simulator)", 2)
    location = None if direct else spool or settings.crawl_spool
    if location is not None:
        if usernames is not None or online or all_users or full:
            raise fail("in spool mode the store's host chooses the users: `sprout ingest --assign N` there", 2)
        _crawl_spool(settings, location, worker, assignment, as_json)
        return
    if assignment is not None or worker is not None:
        raise fail("--assignment and --worker belong to spool mode (--spool or SPROUT_CRAWL_SPOOL)", 2)
    only = _seed_list(usernames)

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


def _crawl_spool(settings, location: str, worker: str | None, assignment: str | None, as_json: bool) -> None:
    from sprout.crawl.job import crawl_assignments
    from sprout.crawl.policy import CrawlPolicy
    from sprout.crawl.spool import Spool, SpoolError
    from sprout.mal.client import MalClient
    from sprout.mal.errors import MalError
    from sprout.progress import crawl_progress

    async def run() -> dict:
        async with MalClient.from_settings(settings) as client:
            with crawl_progress(not as_json) as progress:
                stats = await crawl_assignments(
                    Spool(location), client, CrawlPolicy.from_settings(settings), worker=worker,
                    assignment=assignment, progress=progress,
                )
            return stats.as_dict()

    try:
        figures = asyncio.run(run())
    except (MalError, SpoolError, OSError) as error:
        raise fail(str(error)) from None
    if as_json:
        print(json.dumps({"crawl": figures, "spool": location}))
    else:
        print_counts(figures, f"crawl run into the spool {location}")


def ingest(
    spool: SpoolOption = None,
    assign: Annotated[int, typer.Option(min=0, help="Then hand out up to this many due users to crawl workers.")] = 0,
    parts: Annotated[int, typer.Option(min=1, help="Split them into this many assignments (one per worker).")] = 1,
    usernames: Annotated[
        Path | None, typer.Option(help="Hand out exactly the users in this file (one username a line), due or not.", exists=True, dir_okay=False)
    ] = None,
    online: Annotated[bool, typer.Option(help="Discover users on the recently-online page before handing out.")] = False,
    all_users: Annotated[bool, typer.Option("--all", help="Hand out known users due or not (up to --assign).")] = False,
    full: Annotated[bool, typer.Option(help="Have the workers list whole profiles.")] = False,
    claim_hours: Annotated[
        float, typer.Option(min=0.001, help="Hours handed-out users stay with their worker before they can be handed out again.")
    ] = 6.0,
    as_json: AsJson = False,
) -> None:
    """Apply what crawl workers published to the spool (in order, each batch once), then hand out
    the next due users as assignments. Run it on the store's host: it is the store's one writer."""
    from contextlib import AsyncExitStack
    from datetime import timedelta

    from sprout.crawl.access import StoreFile
    from sprout.crawl.ingest import ingest_spool
    from sprout.crawl.job import CrawlRequest, hand_out
    from sprout.crawl.policy import CrawlPolicy
    from sprout.crawl.spool import Spool, SpoolError
    from sprout.mal.client import MalClient
    from sprout.mal.discovery import RecentlyOnlineSource
    from sprout.mal.errors import MalError
    from sprout.store import StoreError

    settings = load_settings()
    location = spool or settings.crawl_spool
    if location is None:
        raise fail("no spool: pass --spool LOCATION or set SPROUT_CRAWL_SPOOL", 2)
    if online and settings.client_id() is None:
        raise fail("SPROUT_MAL_CLIENT_ID is not set: discovery needs a client id", 2)
    only = _seed_list(usernames)
    policy = CrawlPolicy.from_settings(settings)

    async def run() -> tuple[dict, list]:
        the_spool = Spool(location)
        store = StoreFile(settings.db_path, wait_s=30.0)
        stats = await ingest_spool(the_spool, store, policy=policy, group_entries=settings.ingest_group_entries)
        if not assign and only is None:
            return stats.as_dict(), []
        async with AsyncExitStack() as stack:  # MAL is asked only to discover users
            client = await stack.enter_async_context(MalClient.from_settings(settings)) if online else None
            request = CrawlRequest(
                sources=[RecentlyOnlineSource(client)] if client else [], only_usernames=only, max_users=assign,
                ignore_schedule=all_users, force_full=full, policy=policy,
            )
            handed = await hand_out(store, the_spool, request, parts=parts, claim_for=timedelta(hours=claim_hours))
        return stats.as_dict(), [{"name": a.name, "users": len(a.users)} for a in handed]

    try:
        figures, assignments = asyncio.run(run())
    except (MalError, SpoolError, StoreError, OSError) as error:
        raise fail(str(error)) from None
    with open_store(settings.db_path, read_only=True) as store:
        counts = store.counts()
    if as_json:
        print(json.dumps({"ingest": figures, "assignments": assignments, "store": counts}))
    else:
        print_counts(figures, f"ingested from {location}")
        for handed in assignments:
            console.print(f"handed out {handed['users']} users as assignment {handed['name']}")
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
