"""``sprout serve``: the HTTP service for the registry's champion (BentoML, ``bentos/service.py``).

The command checks that there is a model to serve, then becomes ``bentoml serve`` (``exec``:
one process tree, and SIGINT/SIGTERM reach BentoML's own shutdown directly). Settings travel to
the service's worker processes as environment variables (`ServeSettings`), so a container can
set the same variables without this command. Nothing here imports BentoML (or `bentos`) until
the command runs, so the library stays importable without it. The settings themselves are
`sprout.config.ServeSettings`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sprout.config import ServeSettings

SERVICE = "bentos.service:Sprout"
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # holds the `bentos` package


def with_host_devices(environment: dict[str, str], devices: int | None) -> dict[str, str]:
    """``environment`` with XLA told to expose ``devices`` CPU devices (read when jax starts)."""
    if devices is None:
        return environment
    flags = [flag for flag in environment.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in flag]
    flags.append(f"--xla_force_host_platform_device_count={devices}")
    return {**environment, "XLA_FLAGS": " ".join(flags)}


def _variable(field: str) -> str:
    """The environment variable behind a `ServeSettings` field."""
    return "SPROUT_MODEL_STORE" if field in ("store_dir", "SPROUT_MODEL_STORE") else f"SPROUT_SERVE_{field.upper()}"


class ServeError(RuntimeError):
    """Nothing can be served with these settings; the message says why."""


def check_servable(settings: ServeSettings) -> str:
    """The version the service will start with, or `ServeError`."""
    from bentos.registry import ModelRegistry
    from sprout.registry import UnknownVersion

    registry = ModelRegistry(settings.store_dir)
    if settings.version:
        try:
            return registry.get(settings.version).version
        except UnknownVersion:
            raise ServeError(f"version {settings.version!r} is not in the model store {registry.store_dir}") from None
    champion = registry.champion()
    if champion is None:
        raise ServeError(
            f"the model store {registry.store_dir} has no champion: promote a model first "
            "(or serve a registered version with --version)"
        )
    return champion.version


def bentoml_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", host, "--port", str(port), "--working-dir", str(PROJECT_ROOT)]


def serve(
    host: Annotated[str, typer.Option(help="Address to bind. Keep loopback; 0.0.0.0 only inside a container.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 3000,
    version: Annotated[str | None, typer.Option(help="Serve this registered version and never swap; default: follow the champion.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes, each loading and warming its own engine [default: one per core].")] = None,
    store_dir: Annotated[Path | None, typer.Option(help="BentoML model store folder; default $BENTOML_HOME/models.", file_okay=False)] = None,
    devices: Annotated[int | None, typer.Option(min=1, help="CPU devices to shard explanations over.")] = None,
) -> None:
    """Serve recommendations over HTTP from the registry's champion (hot-swapped when it changes)."""
    from pydantic import ValidationError

    errors = Console(stderr=True)
    given = {"version": version, "store_dir": store_dir.resolve() if store_dir else None, "workers": workers, "devices": devices}
    try:  # options given on the command line win over SPROUT_SERVE_* variables
        settings = ServeSettings(**{key: value for key, value in given.items() if value is not None})
    except ValidationError as error:
        problems = "; ".join(f"{_variable(str(e['loc'][0]))}: {e['msg']}" for e in error.errors())
        errors.print(f"[bold red]error:[/] invalid serve setting: {problems}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    try:
        serving = check_servable(settings)
    except ServeError as error:
        errors.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    errors.print(f"serving {serving} on http://{host}:{port} (workers {settings.workers})", highlight=False, soft_wrap=True)
    # One BLAS thread: a worker's numpy products are small (a profile's rows), one batch at a time,
    # and a BLAS pool per worker beside XLA's spun on the cores the other worker needed.
    base = {"BENTOML_DO_NOT_TRACK": "True", "OPENBLAS_NUM_THREADS": "1"}
    environment = with_host_devices({**base, **os.environ, **settings.environment()}, settings.devices)
    command = bentoml_command(host, port)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, environment)
