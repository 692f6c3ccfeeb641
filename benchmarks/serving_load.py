"""Sustained load on /recommend from a native load generator: 1, 4, 16 and 64 concurrent clients.

`sprout serve` (default settings: one worker per core) is started here twice: with the default
recipe's widths and with the reference widths (55.5M parameters), each with the item-item path
on a 6,000-show synthetic corpus (as in `benchmarks/serving.py`). The load comes from ``hey``
(Debian's package), in its own process, so the figures do not include a Python client's own cost.
Every client posts the same 300-entry profile with ``top_k`` 50 for ``--seconds`` at each level;
the one-client level is the same-run baseline. Recorded per level: answers/s, p50/p99 of the
answered requests, errors (any status but 200 and 503, and requests the server saw that hey never
got an answer to), requests shed (503) and the service's own metrics over the level (mean batch
size, queue wait, forward pass), and how fast ``/livez`` answered meanwhile (probed 4 times a
second from this process: too few requests to load the service, so its own cost is small).

The floor, in the same run: the forward pass of a full batch of 16 in-process (the model's share
of a request at best), and the HTTP framework's own cost for the same body — `http_floor.py`, a
service with the same schemas, settings and answer size but no model — at 16 clients.

    uv run python benchmarks/serving_load.py [--seconds 10] [--workers N]

Writes ``benchmarks/results/serving_load.json``; `benchmarks/readme_tables.py` renders it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import typer

from serving import PROFILE_LENGTH, benchmark_profile, default_model_store

CLIENTS = (1, 4, 16, 64)
TOP_K = 50
GOAL_RATIO, GOAL_P99_MS, GOAL_CLIENTS = 2.5, 50.0, 16
SIZES = {"default": "compact", "reference": "hybrid"}  # README name -> `default_model_store` store
BENCHMARKS = Path(__file__).resolve().parent


def hey(url: str, body: Path, clients: int, seconds: float) -> list[tuple[float, int]]:
    """(latency s, status) of every answered request of ``clients`` hey clients for ``seconds``."""
    command = ["hey", "-z", f"{seconds:g}s", "-c", str(clients), "-m", "POST", "-T", "application/json",
               "-D", str(body), "-t", "120", "-o", "csv", url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rows = csv.DictReader(io.StringIO(output))
    return [(float(row["response-time"]), int(row["status-code"])) for row in rows]


def scrape(url: str) -> dict[str, float]:
    """The samples of /metrics this benchmark reads, summed over labels and workers."""
    wanted = ("sprout_batch_size_sum", "sprout_batch_size_count", "sprout_queue_wait_seconds_sum",
              "sprout_queue_wait_seconds_count", "sprout_forward_seconds_sum", "sprout_forward_seconds_count",
              "sprout_requests_shed_total", "bentoml_service_request_total")
    totals = dict.fromkeys(wanted, 0.0)
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        match = re.fullmatch(r"([a-z_]+)(\{[^}]*\})? (\S+)", line)
        if match and match[1] in totals and (match[1] != "bentoml_service_request_total" or "/recommend" in (match[2] or "")):
            totals[match[1]] += float(match[3])
    return totals


class HealthProbe(threading.Thread):
    """GET /livez every ``every_s`` while a level runs, timing each answer: how fast a health
    check is answered under the level's load (4 requests/s: too few to load the service)."""

    def __init__(self, url: str, every_s: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.url, self.every_s = url, every_s
        self.latencies: list[float] = []
        self.failures = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        # a connection per probe, as an orchestrator's health check opens: none is held across the level
        with httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            while not self.stopped.wait(self.every_s):
                began = time.perf_counter()
                try:
                    ok = client.get(f"{self.url}/livez").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.latencies.append(time.perf_counter() - began)
                self.failures += not ok

    def figures(self) -> dict:
        self.stopped.set()
        self.join()
        latencies = np.array(self.latencies) * 1e3
        return {"livez_probes": len(latencies), "livez_failures": self.failures,
                "livez_p50_ms": round(float(np.percentile(latencies, 50)), 2) if len(latencies) else None,
                "livez_p99_ms": round(float(np.percentile(latencies, 99)), 2) if len(latencies) else None,
                "livez_max_ms": round(float(latencies.max()), 2) if len(latencies) else None}


def connection_split(server_pid: int, port: int) -> list[int]:
    """Clients' connections held by each worker process of the server, most first: every worker
    accepts from one shared socket, and how the clients are spread bounds what each level can
    reach (a worker holding 15 of 16 clients works alone; `bentos/fair_accept.py` evens it)."""
    import psutil

    counts = []
    for process in psutil.Process(server_pid).children(recursive=True):
        try:
            held = [c for c in process.net_connections(kind="tcp") if c.status == "ESTABLISHED" and c.laddr.port == port]
        except psutil.Error:
            continue
        if held:
            counts.append(len(held))
    return sorted(counts, reverse=True)


def level(url: str, body: Path, clients: int, seconds: float, server_pid: int | None = None) -> dict:
    """One load level against a running server, with the service's metrics over it, how fast
    /livez answered meanwhile and how the clients' connections were spread over the workers."""
    before = scrape(url)
    probe = HealthProbe(url)
    started = time.monotonic()
    probe.start()
    split: list[int] = []
    if server_pid is not None:  # halfway through, every client is connected
        port = int(url.rsplit(":", 1)[1])
        sampler = threading.Timer(seconds / 2, lambda: split.extend(connection_split(server_pid, port)))
        sampler.start()
    answers = hey(f"{url}/recommend", body, clients, seconds)
    health = probe.figures()
    elapsed = time.monotonic() - started
    time.sleep(0.5)  # requests hey abandoned at its deadline finish on the server
    after = scrape(url)
    delta = {name: after[name] - before[name] for name in after}
    ok = np.array([latency for latency, status in answers if status == 200])
    statuses: dict[str, int] = {}
    for _, status in answers:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    unanswered = max(0, int(delta["bentoml_service_request_total"]) - len(answers) - clients)  # in flight at the end
    batches = delta["sprout_batch_size_count"]
    figures = {
        "clients": clients, "seconds": round(elapsed, 1), "requests": len(answers), "statuses": statuses,
        "answers_per_s": round(len(ok) / seconds, 1),
        "p50_ms": round(float(np.percentile(ok, 50)) * 1e3, 2) if len(ok) else None,
        "p99_ms": round(float(np.percentile(ok, 99)) * 1e3, 2) if len(ok) else None,
        "errors": sum(n for s, n in statuses.items() if s not in ("200", "503")) + unanswered,
        "shed": statuses.get("503", 0),
        "mean_batch": round(delta["sprout_batch_size_sum"] / batches, 2) if batches else None,
        "mean_queue_wait_ms": round(delta["sprout_queue_wait_seconds_sum"] / delta["sprout_queue_wait_seconds_count"]
                                    * 1e3, 2) if delta["sprout_queue_wait_seconds_count"] else None,
        "mean_forward_ms": round(delta["sprout_forward_seconds_sum"] / batches * 1e3, 2) if batches else None,
        "shed_by_service": int(delta["sprout_requests_shed_total"]),
        "connections_by_worker": split,
        **health,
    }
    print(f"  {clients:>3} clients: {figures['answers_per_s']:>7.1f} answers/s, p50 {figures['p50_ms']} ms, "
          f"p99 {figures['p99_ms']} ms, errors {figures['errors']}, shed {figures['shed']}, "
          f"mean batch {figures['mean_batch']}, /livez p99 {figures['livez_p99_ms']} ms, connections by worker "
          f"{split}", flush=True)
    return figures


def forward_floor(artifact: Path, profile: list[dict]) -> dict:
    """The batched forward pass alone, in-process: ms for a full batch of 16 and the answers/s it bounds."""
    from sprout.inference.batching import DEFAULT_MAX_BATCH
    from sprout.inference.engine import Recommender
    from sprout.inference.requests import RecommendRequest

    engine = Recommender.load(artifact)
    encoded = [engine.encode(RecommendRequest(profile=profile, top_k=TOP_K))] * DEFAULT_MAX_BATCH
    engine.outputs(encoded)
    timings = []
    for _ in range(30):
        started = time.perf_counter()
        engine.outputs(encoded)
        timings.append(time.perf_counter() - started)
    batch_ms = float(np.median(timings)) * 1e3
    return {"batch": DEFAULT_MAX_BATCH, "batch_ms": round(batch_ms, 2),
            "answers_per_s": round(DEFAULT_MAX_BATCH / batch_ms * 1e3, 1)}


def framework_floor(body: Path, seconds: float, log: Path, environment: dict[str, str]) -> dict:
    """`http_floor.py` served like the real service, loaded by 16 clients."""
    from bentos.local_server import LOOPBACK, free_port

    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    command = [sys.executable, "-m", "bentoml", "serve", "http_floor:Floor", "--working-dir", str(BENCHMARKS),
               "--host", LOOPBACK, "--port", str(port)]
    with log.open("ab") as output:
        process = subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the floor service did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        answers = hey(f"{url}/recommend", body, GOAL_CLIENTS, seconds)
    finally:
        os.killpg(process.pid, 15)
        process.wait(30)
    ok = np.array([latency for latency, status in answers if status == 200])
    return {"clients": GOAL_CLIENTS, "answers_per_s": round(len(ok) / seconds, 1),
            "p50_ms": round(float(np.percentile(ok, 50)) * 1e3, 2), "p99_ms": round(float(np.percentile(ok, 99)) * 1e3, 2),
            "errors": len(answers) - len(ok)}


def main(
    seconds: float = typer.Option(10.0, min=1, help="How long each load level lasts."),
    workers: int | None = typer.Option(None, min=1, help="Server worker processes [default: the service's own]."),
    users: int = typer.Option(3000, min=500, help="Synthetic users behind the corpus."),
) -> None:
    from bentos.local_server import LocalServer
    from results import write_result
    from sprout.config import ServeSettings

    if shutil.which("hey") is None:
        raise SystemExit("hey is not installed: apt-get install hey")
    workers = workers or ServeSettings().workers
    load_average = os.getloadavg()[0]  # other jobs on the machine share its cores
    home = Path(tempfile.mkdtemp(prefix="sprout-serving-load-"))
    stores = default_model_store(home, users)
    _, _, artifact = stores["compact"]
    corpus_ids = np.asarray(json.loads((artifact / "corpus.json").read_text())["anime_ids"])
    profile = benchmark_profile(corpus_ids)
    body = home / "body.json"
    body.write_text(json.dumps({"profile": profile, "top_k": TOP_K}))
    sizes, floors = {}, {}
    for size, store in SIZES.items():
        store_dir, _, artifact = stores[store]
        parameters = json.loads((artifact / "model.json").read_text()).get("parameters")
        print(f"{size} size ({parameters:,} parameters), {workers} workers:", flush=True)
        with LocalServer(store_dir, home / f"serve-{size}.log", workers=workers, ready_timeout_s=1200) as server:
            level(server.url, body, 4, 3)  # warm: every worker has answered
            levels = [level(server.url, body, clients, seconds, server.process.pid) for clients in CLIENTS]
        one = levels[0]
        at_goal = next(figures for figures in levels if figures["clients"] == GOAL_CLIENTS)
        sizes[size] = {"parameters": parameters, "levels": levels,
                       "ratio_16_to_1": round(at_goal["answers_per_s"] / one["answers_per_s"], 2)}
        floors[size] = {"forward": forward_floor(artifact, profile)}
    environment = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "OPENBLAS_NUM_THREADS": "1",
                   "SPROUT_SERVE_WORKERS": str(workers), "PYTHONPATH": str(BENCHMARKS.parent)}
    framework = framework_floor(body, seconds, home / "floor.log", environment)
    print(f"floor: framework at 16 clients {framework['answers_per_s']} answers/s; forward "
          + ", ".join(f"{size} {f['forward']['answers_per_s']} answers/s" for size, f in floors.items()), flush=True)
    path = write_result("serving_load", {
        "figures": {size: {k: v for k, v in figures.items() if k != "levels"} | {
            "levels": [f for f in figures["levels"] if f["clients"] != 1]} for size, figures in sizes.items()},
        "baselines": {
            "one_client": {size: figures["levels"][0] for size, figures in sizes.items()},
            "floor": {"framework": framework, **{f"{size}_forward": f["forward"] for size, f in floors.items()}},
        },
        "goals": {"ratio_16_to_1": GOAL_RATIO, "p99_ms_at_16": GOAL_P99_MS, "errors": 0},
        "settings": {"seconds": seconds, "workers": workers, "users": users, "corpus_size": len(corpus_ids),
                     "profile_entries": PROFILE_LENGTH, "top_k": TOP_K, "load_generator": "hey"},
        "notes": {"load_average_at_start": round(load_average, 2)},
    })
    print(f"written to {path}")


if __name__ == "__main__":
    typer.run(main)
