"""Terminal progress bars for long steps (crawl, training), as the callbacks those steps take."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

_console = Console(stderr=True)


@contextmanager
def crawl_progress(enabled: bool = True) -> Iterator:
    """A ``(done, total)`` callback drawing a profiles bar; None when disabled."""
    if not enabled:
        yield None
        return
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=_console) as bar:
        task = bar.add_task("profiles", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@contextmanager
def training_progress(enabled: bool = True) -> Iterator:
    """A ``(step, total, figures)`` callback drawing a steps bar with the loss; None when disabled."""
    if not enabled:
        yield None
        return
    columns = ("steps", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[loss]}"))
    with Progress(*columns, console=_console) as bar:
        task = bar.add_task("steps", total=None, loss="")

        def update(done: int, total: int, figures: dict) -> None:
            bar.update(task, completed=done, total=total, loss=f"loss {figures.get('train/loss', float('nan')):.4f}")

        yield update
