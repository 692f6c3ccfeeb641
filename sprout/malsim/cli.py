"""Command line of the simulator (mounted as ``sprout malsim``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Run the MAL API v2 simulator on loopback.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """MAL API v2 simulator: a synthetic or real-data population served over HTTP."""


@app.command()
def serve(
    users: Annotated[int, typer.Option(min=0, help="Synthetic users to generate.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the population (and of the faults).")] = 0,
    anime: Annotated[int, typer.Option(min=1, help="Shows in the synthetic catalogue.")] = 8000,
    dataset: Annotated[
        Path | None, typer.Option(exists=True, file_okay=False, help="Serve an anime-5k folder instead.")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to bind (loopback only without --allow-remote).")] = "127.0.0.1",
    allow_remote: Annotated[
        bool,
        typer.Option(help="Allow a non-loopback --host: whoever reaches it can use the unauthenticated /sim admin routes."),
    ] = False,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to bind.")] = 8765,
    private_fraction: Annotated[
        float | None, typer.Option(min=0, max=1, help="Share of private lists [default: 0.02, real data 0].")
    ] = None,
    rate_429: Annotated[float, typer.Option(min=0, max=1, help="Chance a request starts a 429 burst.")] = 0.0,
    burst_429: Annotated[int, typer.Option(min=1, help="Length of a 429 burst.")] = 1,
    retry_after: Annotated[float, typer.Option(min=0, help="Retry-After of a 429, seconds.")] = 1.0,
    rate_5xx: Annotated[float, typer.Option(min=0, max=1, help="Chance of a 500/502/503.")] = 0.0,
    rate_slow: Annotated[float, typer.Option(min=0, max=1, help="Chance of a slow response.")] = 0.0,
    slow_s: Annotated[float, typer.Option(min=0, help="Delay of a slow response, seconds.")] = 1.0,
    rate_truncated: Annotated[float, typer.Option(min=0, max=1, help="Chance of a truncated body.")] = 0.0,
) -> None:
    """Generate (or load) a population and serve it until interrupted."""
    from sprout.malsim.faults import FaultConfig
    from sprout.malsim.realdata import from_anime5k
    from sprout.malsim.server import RemoteBindRefused, check_host
    from sprout.malsim.server import serve as serve_forever
    from sprout.malsim.synthetic_population import synthetic_population

    try:
        check_host(host, allow_remote)  # before minutes of generating a population
    except RemoteBindRefused as error:
        raise typer.BadParameter(str(error), param_hint="'--host'") from None

    faults = FaultConfig(
        rate_429=rate_429,
        burst_429=burst_429,
        retry_after_s=retry_after,
        rate_5xx=rate_5xx,
        rate_slow=rate_slow,
        slow_s=slow_s,
        rate_truncated=rate_truncated,
        seed=seed,
    )
    if dataset is not None:
        population = from_anime5k(dataset, seed=seed, private_fraction=private_fraction or 0.0)
    else:
        private = 0.02 if private_fraction is None else private_fraction
        population = synthetic_population(users, seed, anime, private_fraction=private)
    url = f"http://{host}:{port}"
    typer.echo(f"{population.n_users} users, {population.n_entries} list entries, {population.catalogue.n_shows} shows")
    typer.echo(f"SPROUT_MAL_API_URL={url}/v2")
    typer.echo(f"SPROUT_MAL_WEB_URL={url}")
    typer.echo(f"admin: {url}/sim/docs")
    serve_forever(population, faults, host, port, allow_remote=allow_remote)


if __name__ == "__main__":
    app()
