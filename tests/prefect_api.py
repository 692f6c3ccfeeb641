"""A real ``prefect server start`` on loopback, for tests that need the full server (triggers,
deployments, workers) rather than the in-process test harness."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bentos.local_server import free_port


class PrefectServer:
    """``prefect server start`` on 127.0.0.1 with a private PREFECT_HOME; a context manager."""

    def __init__(self, home: Path, startup_timeout_s: float = 120.0) -> None:
        self.home = Path(home)
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        """The environment for clients (and the server) of this instance."""
        return {**os.environ, "PREFECT_HOME": str(self.home), "PREFECT_API_URL": self.api_url,
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"}

    def __enter__(self) -> PrefectServer:
        self.home.mkdir(parents=True, exist_ok=True)
        prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
        log = (self.home / "server.log").open("ab")
        self.process = subprocess.Popen(
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prefect server exited:\n{(self.home / 'server.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.__exit__()
        raise TimeoutError(f"prefect server not healthy within {self.startup_timeout_s} s")

    def __exit__(self, *exc_info: object) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def drain_prefect_workers(timeout_s: float = 30.0) -> None:
    """Send the events and logs this process queued, and stop the concurrency-slot services.

    Prefect's client-side services are per-process singletons bound to the API they first talked
    to. In-process flows pointed at a test's own server start event and log workers bound to its
    URL; left behind, they would keep retrying a stopped server (and the session's test harness
    drains every worker when it stops, which would then never return). The slot services are
    keyed by limit name only: one started against the session harness would take a test
    server's slots from the harness while releases go to the test server, and the second
    acquisition would wait forever. Call this before switching APIs and after.
    """
    from prefect.concurrency.services import (
        ConcurrencySlotAcquisitionService,
        ConcurrencySlotAcquisitionWithLeaseService,
    )
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (EventsWorker, APILogWorker, ConcurrencySlotAcquisitionService, ConcurrencySlotAcquisitionWithLeaseService):
        service.drain_all(timeout=timeout_s)
