"""A MAL API v2 simulator: a seeded synthetic (or real-data) population served over loopback HTTP,
with switchable faults. The embedded default for the platform and the crawler's test double.

    from sprout.malsim import SimulatorServer
    from sprout.malsim.synthetic_population import synthetic_population
    with SimulatorServer(synthetic_population(1000, seed=0)) as sim:
        ...  # point SPROUT_MAL_API_URL at sim.api_url, SPROUT_MAL_WEB_URL at sim.url
"""

from importlib import import_module

# Loaded on first use, so that `sprout --help` does not pay for FastAPI and the generators.
_EXPORTS = {
    "FaultConfig": "sprout.malsim.faults",
    "Population": "sprout.malsim.population",
    "from_anime5k": "sprout.malsim.realdata",
    "SimulatorServer": "sprout.malsim.server",
    "create_app": "sprout.malsim.server",
    "serve": "sprout.malsim.server",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sprout.malsim' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
