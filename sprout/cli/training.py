"""``sprout train``: train the autoencoder on a snapshot."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .common import AsJson, ConfigName, console, fail, load_settings, preset_named


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

    preset = preset_named(config)
    settings = load_settings()
    try:
        with training_progress(not as_json) as progress:
            summary = train_model(settings.home, preset, snapshot, track=wandb, progress=progress,
                                  devices=settings.train_devices)
    except (FileNotFoundError, ValueError, NonFiniteLoss) as error:
        raise fail(str(error)) from None
    if as_json:
        print(json.dumps(summary, default=float))
    else:
        console.print_json(json.dumps(summary, default=float))
