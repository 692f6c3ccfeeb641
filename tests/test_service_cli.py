"""`sprout serve` as a command (help, clear errors, workers, clean shutdown) and `bentoml build`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from bentos.cores import usable_cores
from bentos.local_server import LocalServer
from service_helpers import SERVER_ENV, build_model_store, profile_of

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def challenger_store(tmp_path_factory):
    """One registered version, never promoted."""
    return build_model_store(tmp_path_factory.mktemp("cli"), n_models=1, champion=None)


def run_sprout(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sprout.cli", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, "BENTOML_DO_NOT_TRACK": "True", **(env or {})},
    )


def test_serve_help_lists_its_options():
    result = run_sprout("serve", "--help")
    assert result.returncode == 0
    for option in ("--host", "--port", "--version", "--workers", "--store-dir", "--devices"):
        assert option in result.stdout
    assert "127.0.0.1" in result.stdout and "3000" in result.stdout


def test_serve_with_an_empty_store_fails_clearly(tmp_path):
    result = run_sprout("serve", "--store-dir", str(tmp_path / "models"))
    assert result.returncode == 1
    assert "has no champion" in result.stderr and "Traceback" not in result.stderr
    # The default store is $BENTOML_HOME/models.
    result = run_sprout("serve", env={"BENTOML_HOME": str(tmp_path / "home")})
    assert result.returncode == 1 and str(tmp_path / "home" / "models") in result.stderr


def test_serve_an_unknown_version_fails_clearly(challenger_store):
    result = run_sprout("serve", "--store-dir", str(challenger_store.store_dir), "--version", "19990101-000000-nothing")
    assert result.returncode == 1
    assert "19990101-000000-nothing" in result.stderr and "Traceback" not in result.stderr
    assert run_sprout("serve", "--workers", "0").returncode == 2
    bad_setting = run_sprout("serve", env={"SPROUT_SERVE_POLL_S": "-1"})
    assert bad_setting.returncode == 2 and "SPROUT_SERVE_POLL_S" in bad_setting.stderr


def test_two_workers_serve_a_challenger_and_stop_cleanly_on_sigterm(challenger_store, tmp_path):
    store = challenger_store  # a named version needs no champion
    server = LocalServer(store.store_dir, tmp_path / "serve.log", version=store.versions[0], workers=2,
                         extra_env={**SERVER_ENV, "SPROUT_SERVE_PIN_WORKERS": "true"})
    with server:
        deadline = time.monotonic() + 180  # /readyz answers once the first worker is up
        while server.log().count("Service sprout initialized") < 2:
            assert time.monotonic() < deadline, server.log()[-3000:]
            time.sleep(0.5)
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for n in range(8):
                answer = client.post("/recommend", json={"profile": profile_of(store.corpus, 5 + n), "top_k": 3})
                assert answer.status_code == 200 and answer.json()["model"]["version"] == store.versions[0]
            info = client.get("/model").json()
            assert info["stage"] == "challenger"
        # Eight keep-alive clients connecting one after another: the workers share them ...
        workers = [p for p in psutil.Process(server.process.pid).children(recursive=True)
                   if "_bentoml_impl.worker.service" in " ".join(p.cmdline())]
        assert len(workers) == 2
        clients = [httpx.Client(base_url=server.url, timeout=60) for _ in range(8)]
        try:
            for n, client in enumerate(clients):
                assert client.post("/recommend", json={"profile": profile_of(store.corpus, 5 + n), "top_k": 3}).status_code == 200
            held = [sum(c.status == "ESTABLISHED" and c.laddr.port == server.port for c in w.net_connections("tcp"))
                    for w in workers]
            assert sum(held) == 8 and min(held) >= 3, held  # not all to whichever worker woke first
        finally:
            for client in clients:
                client.close()
        # ... and, asked to and with a core for each, each runs on its own.
        if len(usable_cores()) >= 2:
            cores = [set(w.cpu_affinity()) for w in workers]
            assert all(len(c) == 1 for c in cores) and cores[0] != cores[1], cores
        assert server.stop() == 0  # SIGTERM: BentoML's own shutdown, exit code 0 ...
        assert not server.session_alive()  # ... and no worker process left behind


@pytest.mark.slow
def test_bentoml_build_works_offline(tmp_path):
    """`bentoml build` with the project's bentofile into an empty BENTOML_HOME (no resolver runs)."""
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    result = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "-f", "bentos/bentofile.yaml", "--version", "test", "."],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    bento = tmp_path / "bentoml" / "bentos" / "sprout" / "test"
    manifest = yaml.safe_load((bento / "bento.yaml").read_text())
    assert manifest["service"] == "bentos.service:Sprout"
    assert {api["name"] for api in manifest["schema"]["routes"]} >= {"recommend", "explain"}
    assert (bento / "src" / "bentos" / "service.py").is_file()
    assert (bento / "src" / "sprout" / "inference" / "engine.py").is_file()
    assert not (bento / "src" / "tests").exists()
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "jax" in requirements and "bentoml" in requirements
