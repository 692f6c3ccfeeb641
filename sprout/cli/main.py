"""The ``sprout`` application: every command group mounted on one Typer app."""

from __future__ import annotations

import typer

from sprout.malsim.cli import app as malsim_app

from .data import crawl, dataset_app, db_app, import_app, ingest
from .models import evaluate, models_app
from .monitor import monitor
from .recommend import recommend
from .serve import serve  # imports no BentoML; the service process does
from .status import status
from .training import train

app = typer.Typer(help="Sprout: crawl MAL profiles, train, evaluate, promote and serve recommendations.", no_args_is_help=True)
app.command()(crawl)
app.command()(ingest)
app.add_typer(import_app, name="import")
app.add_typer(db_app, name="db")
app.add_typer(dataset_app, name="dataset")
app.command()(train)
app.command()(evaluate)
app.add_typer(models_app, name="models")
app.command()(status)
app.command()(monitor)
app.command("serve")(serve)
app.command()(recommend)
app.add_typer(malsim_app, name="malsim", help="The MAL API simulator.")

if __name__ == "__main__":
    app()
