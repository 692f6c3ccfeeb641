"""``sprout serve`` as a child process on loopback: start, wait until ready, stop cleanly.

For tests, benchmarks and smoke checks that need the real service over real HTTP. The child runs
in a session of its own, so stopping it can also make sure that none of BentoML's worker
processes outlives it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


class ServerExited(RuntimeError):
    """The server process ended before it was ready; the message ends with its log."""


class LocalServer:
    """One ``sprout serve`` process bound to 127.0.0.1; a context manager.

    ``extra_env`` adds variables (e.g. ``SPROUT_SERVE_POLL_S``); the log goes to ``log_path``.
    """

    def __init__(
        self,
        store_dir: Path,
        log_path: Path,
        *,
        version: str | None = None,
        workers: int = 1,
        devices: int | None = None,
        extra_env: dict[str, str] | None = None,
        ready_timeout_s: float = 180.0,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.log_path = Path(log_path)
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.ready_timeout_s = ready_timeout_s
        self.command = [sys.executable, "-m", "sprout.cli", "serve", "--host", LOOPBACK, "--port", str(self.port),
                        "--store-dir", str(self.store_dir), "--workers", str(workers)]
        if version:
            self.command += ["--version", version]
        if devices:
            self.command += ["--devices", str(devices)]
        self.env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", **(extra_env or {})}
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, wait: bool = True) -> LocalServer:
        """Start the process; with ``wait``, return once ``/readyz`` answers 200."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        if wait:
            self.wait_ready()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerExited(f"sprout serve exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"sprout serve was not ready within {self.ready_timeout_s} s:\n{self.log()[-4000:]}")

    def session_alive(self) -> bool:
        """Whether any process of the server's session (the server or its workers) is alive."""
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, as a supervisor would send it; SIGKILL for whatever is left after ``timeout_s``.
        Returns the server's exit code (None when it had to be killed)."""
        if self.process is None:
            return None
        code = None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        else:
            code = self.process.returncode
        deadline = time.monotonic() + 5
        while self.session_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.session_alive():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            code = None
        return code
