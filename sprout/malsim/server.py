"""The simulator's HTTP server: the FastAPI app, a background-thread runner and a blocking ``serve``.

Every API error has MAL's shape ``{"error": ..., "message": ...}`` (also for what FastAPI would
answer with its own 422 / 404 bodies).

The ``/sim`` admin routes have no authentication (they delete users and switch faults), so the
server binds loopback only unless ``allow_remote`` says otherwise.
"""

from __future__ import annotations

import ipaddress
import threading
import time

import uvicorn
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request

from sprout.malsim.admin import admin_router
from sprout.malsim.api import ApiError, api_router
from sprout.malsim.faults import FaultConfig, FaultInjector
from sprout.malsim.middleware import RequestStats, SimulatorMiddleware
from sprout.malsim.population import Population
from sprout.malsim.render import error_response

_HTTP_ERRORS = {
    400: "bad_request",
    401: "invalid_client",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
}


class RemoteBindRefused(ValueError):
    """A non-loopback interface was asked for without ``allow_remote``."""


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1); any other name or address is not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, allow_remote: bool) -> None:
    if not allow_remote and not is_loopback(host):
        raise RemoteBindRefused(
            f"refusing to bind {host!r}: the simulator's /sim admin routes are unauthenticated; "
            "bind 127.0.0.1, or pass allow_remote (--allow-remote) on a network you trust"
        )


def create_app(population: Population, faults: FaultConfig | FaultInjector | None = None) -> FastAPI:
    """The simulator as an ASGI app; ``app.state`` holds ``population``, ``faults`` (the live
    injector) and ``stats``."""
    injector = faults if isinstance(faults, FaultInjector) else FaultInjector(faults)
    stats = RequestStats()
    app = FastAPI(
        title="MAL API simulator",
        description="MyAnimeList API v2 over a simulated population, with switchable faults.",
        docs_url="/sim/docs",
        openapi_url="/sim/openapi.json",
        redoc_url=None,
    )
    app.state.population, app.state.faults, app.state.stats = population, injector, stats
    app.include_router(api_router(population))
    app.include_router(admin_router(population, injector, stats))

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return error_response(400, "bad_request", problems)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        return error_response(error.status_code, _HTTP_ERRORS.get(error.status_code, "error"), str(error.detail))

    app.add_middleware(SimulatorMiddleware, faults=injector, stats=stats)
    return app


class SimulatorServer:
    """Runs the simulator on a background thread; use as a context manager.

    ``port=0`` picks a free port; ``.url`` is the website root (``SPROUT_MAL_WEB_URL``) and
    ``.api_url`` the API base (``SPROUT_MAL_API_URL``).
    """

    def __init__(
        self,
        population: Population,
        faults: FaultConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        allow_remote: bool = False,
    ) -> None:
        check_host(host, allow_remote)
        self.population = population
        self._injector = FaultInjector(faults)
        self.app = create_app(population, self._injector)
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def faults(self) -> FaultConfig:
        return self._injector.config

    @faults.setter
    def faults(self, config: FaultConfig) -> None:
        self._injector.configure(config)

    def set_faults(self, config: FaultConfig | None = None, **fields) -> FaultConfig:
        """Switch faults live: a whole config, or fields of one (``set_faults(rate_5xx=0.5)``);
        ``set_faults()`` turns them off."""
        self._injector.configure(config if config is not None else FaultConfig(**fields))
        return self._injector.config

    def stats(self) -> dict:
        return self.app.state.stats.snapshot()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + "/v2"

    def start(self, timeout_s: float = 30.0) -> "SimulatorServer":
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_level="warning", access_log=False, lifespan="off"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="malsim-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError(f"the simulator did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        self.port = server.servers[0].sockets[0].getsockname()[1]
        self._server, self._thread = server, thread
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._server = self._thread = None

    def __enter__(self) -> "SimulatorServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def serve(
    population: Population,
    faults: FaultConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    allow_remote: bool = False,
) -> None:
    """Serve in the foreground until interrupted."""
    check_host(host, allow_remote)
    uvicorn.run(create_app(population, faults), host=host, port=port, log_level="info", access_log=False)
