"""What every command shares: consoles, clear failures, settings, opening the store, output."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from sprout.config import Settings
    from sprout.training.presets import Preset
    from sprout.store import Store

console = Console()
err_console = Console(stderr=True)

AsJson = Annotated[bool, typer.Option("--json", help="End by printing one JSON object.")]
ConfigName = Annotated[
    str, typer.Option("--config", help="Named preset: tiny (tests), small (minutes on a CPU) or default (the recipe).")
]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` as an error; raise what this returns to exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def load_settings() -> Settings:
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
def open_store(path: Path, read_only: bool = False) -> Iterator[Store]:
    from sprout.store import Store, StoreError

    try:
        store = Store.open(path, read_only=read_only)
    except StoreError as error:
        raise fail(str(error)) from None
    try:
        yield store
    finally:
        store.close()


def preset_named(name: str) -> Preset:
    from sprout.training.presets import get_preset

    try:
        return get_preset(name)
    except KeyError as error:
        raise fail(str(error.args[0]), 2) from None


def print_counts(counts: dict, title: str) -> None:
    table = Table(title=title)
    table.add_column("what")
    table.add_column("count", justify="right")
    for key, value in counts.items():
        table.add_row(str(key), f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
