"""A MAL API v2 simulator: a seeded synthetic (or real-data) population served over loopback HTTP,
with switchable faults. The embedded default for the platform and the crawler's test double.

    from sprout.malsim import SimulatorServer, synthetic
    with SimulatorServer(synthetic(1000, seed=0)) as sim:
        ...  # point SPROUT_MAL_API_URL at sim.api_url, SPROUT_MAL_WEB_URL at sim.url
"""

from sprout.malsim.faults import FaultConfig
from sprout.malsim.population import Population
from sprout.malsim.realdata import from_anime5k
from sprout.malsim.server import SimulatorServer, create_app, serve
from sprout.malsim.synthetic_population import synthetic

__all__ = ["FaultConfig", "Population", "SimulatorServer", "create_app", "from_anime5k", "serve", "synthetic"]
