"""The ``sprout`` command line."""

from __future__ import annotations

import asyncio
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Iterator

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Sprout: crawl MAL profiles, train, evaluate, promote and serve recommendations.", no_args_is_help=True)
import_app = typer.Typer(help="Load data sets into the store.", no_args_is_help=True)
db_app = typer.Typer(help="Inspect the DuckDB store.", no_args_is_help=True)
dataset_app = typer.Typer(help="Immutable dataset snapshots for training.", no_args_is_help=True)
app.add_typer(import_app, name="import")
app.add_typer(db_app, name="db")
app.add_typer(dataset_app, name="dataset")

console = Console()
err_console = Console(stderr=True)


def _mount_simulator() -> None:
    from sprout.malsim.cli import app as malsim_app

    app.add_typer(malsim_app, name="malsim", help="The MAL API simulator.")


_mount_simulator()


def _mount_serve() -> None:
    from sprout.serve import serve  # imports no BentoML; the service process does

    app.command("serve")(serve)


_mount_serve()


def _mount_models() -> None:
    from sprout.models_cli import evaluate, models_app

    from sprout.status import status

    app.command("evaluate")(evaluate)
    app.add_typer(models_app, name="models")
    app.command("status")(status)


_mount_models()


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def load_settings():
    """Settings from the environment, or a clear message naming the bad variable."""
    from pydantic import ValidationError

    from sprout.config import Settings

    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"SPROUT_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in error.errors()
        )
        raise fail(f"invalid setting: {problems}", code=2) from None


@contextmanager
def open_store(path: Path, read_only: bool = False) -> Iterator["Store"]:  # noqa: F821
    from sprout.store import Store, StoreError

    try:
        store = Store.open(path, read_only=read_only)
    except StoreError as error:
        raise fail(str(error)) from None
    try:
        yield store
    finally:
        store.close()


def print_counts(counts: dict, title: str) -> None:
    table = Table(title=title)
    table.add_column("what")
    table.add_column("count", justify="right")
    for key, value in counts.items():
        table.add_row(str(key), f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)


@app.command()
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
    from sprout.crawl.job import CrawlRequest, run_crawl
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

    async def run(store) -> dict:
        async with MalClient.from_settings(settings) as client:
            sources = [RecentlyOnlineSource(client)] if online else []
            request = CrawlRequest(
                sources=sources, only_usernames=only, max_users=max_users, ignore_schedule=all_users,
                force_full=full, refresh_anime=anime,
            )
            with crawl_progress(not as_json) as progress:
                stats = await run_crawl(store, client, request, progress=progress)
            return stats.as_dict()

    with open_store(settings.db_path) as store:
        try:
            figures = asyncio.run(run(store))
        except MalError as error:
            raise fail(str(error)) from None
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


ConfigName = Annotated[str, typer.Option("--config", help="Named preset: tiny (tests), small (minutes on a CPU) or default (reference model).")]
AsJson = Annotated[bool, typer.Option("--json", help="End by printing one JSON object.")]


def _preset(name: str):
    from sprout.presets import get_preset

    try:
        return get_preset(name)
    except KeyError as error:
        raise fail(str(error.args[0]), 2) from None


@dataset_app.command("build")
def dataset_build(
    config: ConfigName = "default",
    snapshot_date: Annotated[
        str | None, typer.Option("--date", help="Snapshot date YYYY-MM-DD (entries updated later are left out); default today.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Snapshot the store into content-addressed arrays for training."""
    from datetime import date

    from sprout.training.run import build_dataset

    preset = _preset(config)
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
        "path": str(settings.home / "snapshots" / manifest.snapshot_id),
    }
    if as_json:
        print(json.dumps(summary))
    else:
        console.print_json(json.dumps(summary))


@app.command()
def train(
    config: ConfigName = "default",
    snapshot: Annotated[str | None, typer.Option(help="Snapshot id; default the latest built.")] = None,
    wandb: Annotated[bool, typer.Option(help="Log to W&B (offline mode without WANDB_API_KEY).")] = True,
    as_json: AsJson = False,
) -> None:
    """Train the autoencoder on a snapshot; a killed run resumes from its last checkpoint."""
    from sprout.training.loop import NonFiniteLoss
    from sprout.training.run import train_model
    from sprout.progress import training_progress

    preset = _preset(config)
    settings = load_settings()
    try:
        with training_progress(not as_json) as progress:
            summary = train_model(settings.home, preset, snapshot, track=wandb, progress=progress)
    except (FileNotFoundError, ValueError, NonFiniteLoss) as error:
        raise fail(str(error)) from None
    if as_json:
        print(json.dumps(summary, default=float))
    else:
        console.print_json(json.dumps(summary, default=float))


if __name__ == "__main__":
    app()
