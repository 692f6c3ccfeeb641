"""Serving latency and throughput over HTTP at the default model size (55.5M parameters).

Setup (not timed): a synthetic population → DuckDB → snapshot (6,000-show corpus) → a
random-weight reference-width model with the item-item path (a random zero-diagonal B), registered
and promoted in a temporary model store, served by `sprout serve` on 127.0.0.1. A 300-entry
profile is sent to /recommend and /explain.

Measured in the same run:
- the same model without the item-item path (the deep network alone): /recommend and /explain
  p50/p99 over HTTP, the cost the item-item path adds;
- /recommend and /explain p50/p99 over HTTP, one client at a time;
- /recommend throughput and p50/p99 with 8 concurrent clients;
- XLA compilations after warm-up (the ``X-Sprout-Compilations`` header of GET /model);
- a naive engine written here, in-process (no HTTP): the dense ``[1, 2C]`` input (12,000 wide)
  and one full forward pass per question — per request, and per held-out entry for explanations —
  with the same profile rules and ranking;
- the engine in-process, and its explanations with 1 and 2 CPU devices (a child process with
  ``--xla_force_host_platform_device_count=2``).

Goals: /recommend p50 <= 15 ms; /explain p50 <= 150 ms and >= 2.5x faster than naive.

    uv run python benchmarks/serving.py [--requests 200] [--explains 30] [--users 3000]

Writes ``benchmarks/results/serving.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import typer

HERE = Path(__file__).resolve()
PROFILE_LENGTH = 300
DATASET_HASH = "be" * 32


def default_model_store(home: Path, users: int = 3000, seed: int = 0) -> dict[str, tuple[Path, str, Path]]:
    """Three model stores on one 6,000-show synthetic corpus, each with one promoted model: the
    reference widths with the item-item path ("hybrid") and without it ("deep", same deep
    weights), and the compact widths the default recipe trains below 20,000 users, with the
    item-item path ("compact").

    Returns {name: (store folder, version, artifact folder in the store)}.
    """
    import jax.numpy as jnp
    from flax import nnx

    from bentos.registry import ModelRegistry
    from sprout.dataset.snapshot import load_snapshot
    from sprout.malsim.store_loader import load_population
    from sprout.malsim.synthetic_population import synthetic_population
    from sprout.model.autoencoder import Autoencoder
    from sprout.model.config import ModelConfig
    from sprout.training.presets import COMPACT_WIDTHS, get_preset
    from sprout.store import Store
    from sprout.model.artifact import write_model_artifact
    from sprout.training.run import build_dataset

    population = synthetic_population(users, seed=seed, n_anime=7000)
    with Store.open(home / "sprout.duckdb") as store:
        load_population(store, population, population.now)
    build_dataset(home, home / "sprout.duckdb", get_preset("default"), population.now.date())
    snapshot = load_snapshot(next(p for p in (home / "snapshots").iterdir() if p.is_dir()))
    size = len(snapshot.corpus.anime_ids)
    stores = {}
    variants = {"deep": ({}, False), "hybrid": ({}, True), "compact": (COMPACT_WIDTHS, True)}
    for name, (widths, item_item) in variants.items():
        model = Autoencoder(ModelConfig(corpus_size=size, item_item=item_item, **widths), nnx.Rngs(seed))
        if item_item:
            weights = np.random.default_rng(seed).normal(0.0, 0.01, (size, size)).astype(np.float32)
            np.fill_diagonal(weights, 0.0)
            model.item_item.value = jnp.asarray(weights)
            model.linear_scale.value = jnp.asarray(1.0, jnp.float32)
        _, folder = write_model_artifact(home / f"models-{name}", model, snapshot, {"metrics": {}})
        registry = ModelRegistry(home / f"bentoml-{name}" / "models")
        version = registry.register(folder, dataset_hash=DATASET_HASH, wandb_run_id=None, metrics={})
        registry.promote(version, "benchmark")
        stores[name] = (registry.store_dir, version, registry.artifact_path(version))
    return stores


def benchmark_profile(corpus_ids: np.ndarray, length: int = PROFILE_LENGTH, seed: int = 1) -> list[dict]:
    """``length`` entries, popular shows more likely, 80% rated, a few dropped."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(corpus_ids) + 1) ** 0.8
    shows = rng.choice(len(corpus_ids), size=length, replace=False, p=weights / weights.sum())
    statuses = rng.choice(["completed", "watching", "dropped"], size=length, p=[0.85, 0.1, 0.05])
    return [
        {"anime_id": int(corpus_ids[s]), "score": int(rng.integers(1, 11)) if rng.random() < 0.8 else 0, "status": str(st)}
        for s, st in zip(shows, statuses, strict=True)
    ]


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    values = np.asarray(samples_s) * 1000
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def time_calls(call, n: int, warm: int = 3) -> list[float]:
    for _ in range(warm):
        call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def concurrent_load(url: str, body: dict, clients: int, seconds: float) -> tuple[int, int, list[float], float]:
    """(requests answered 200, other outcomes, latencies, elapsed s) of ``clients`` threads."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def loop() -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                try:
                    ok = http.post("/recommend", json=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                with lock:
                    if ok:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors[0] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies), errors[0], latencies, time.monotonic() - started


class NaiveEngine:
    """The original serving path: the dense ``[1, 2C]`` input through the whole network for
    every question, one held-out entry at a time. Profile rules and ranking are the engine's."""

    def __init__(self, artifact: Path):
        import jax
        from flax import nnx

        from sprout.dataset.corpus import Corpus
        from sprout.model.artifact import CORPUS_FILE, read_model_artifact

        model, _ = read_model_artifact(artifact)
        self.corpus = Corpus.from_json((artifact / CORPUS_FILE).read_text())
        self.size = len(self.corpus)
        self.popularity = self.corpus.counts / self.corpus.counts.sum()
        graphdef, state = nnx.split(model)

        @jax.jit
        def forward(state, x):  # x [1, 2C] -> log presence [1, C], ratings [1, C]
            logits, ratings = nnx.merge(graphdef, state).forward_dense(x)
            return jax.nn.log_softmax(logits, axis=-1), ratings

        self._forward = lambda x: tuple(np.asarray(a)[0] for a in forward(state, x))
        self._forward_rows = lambda x: tuple(np.asarray(a) for a in forward(state, x))  # [R, 2C] -> [R, C] each

    def _scores(self, log_presence, ratings, request, columns=slice(None)):
        from sprout.inference.ranking import log_scores

        popularity = self.popularity[columns]
        return log_scores(log_presence[columns], ratings[columns], request.rating_weight, popularity, request.niche_boost)

    def _dense(self, profile) -> np.ndarray:
        x = np.zeros((1, 2 * self.size), np.float32)  # [1, 2C]
        x[0, profile.items] = 1.0
        x[0, self.size + profile.items] = profile.values
        return x

    def _ranked(self, request, profile, x, count):
        from sprout.inference.ranking import top_candidates

        log_presence, ratings = self._forward(x)
        scores = self._scores(log_presence, ratings, request)  # [C]
        allowed = np.ones(self.size, bool)
        allowed[profile.listed] = False
        return scores, top_candidates(scores, allowed, count)

    def recommend(self, request) -> list[int]:
        from sprout.inference.profile import prepare_profile

        profile = prepare_profile(request.profile, self.corpus)
        _, shows = self._ranked(request, profile, self._dense(profile), request.top_k)
        return self.corpus.anime_ids[shows].tolist()

    def explain(self, request) -> dict:
        from sprout.inference import explanations
        from sprout.inference.profile import prepare_profile

        profile = prepare_profile(request.profile, self.corpus)
        x = self._dense(profile)
        scores, shows = self._ranked(request, profile, x, max(request.top_k, explanations.IMPACT_CANDIDATES))
        held = np.empty((profile.length, len(shows)))  # [n, K]
        own = np.empty(profile.length)  # [n]
        for j, item in enumerate(profile.items):
            x_held = x.copy()
            x_held[0, [item, self.size + item]] = 0.0
            log_presence, ratings = self._forward(x_held)
            held[j] = self._scores(log_presence, ratings, request, shows)
            own[j] = ratings[item]
        return self._explained(request, profile, scores, shows, held, own)

    def explain_batched(self, request, rows: int = 64) -> dict:
        """The fair dense baseline: every hold-out as a row of one dense batch ([rows, 2C] at a time)."""
        from sprout.inference import explanations
        from sprout.inference.profile import prepare_profile

        profile = prepare_profile(request.profile, self.corpus)
        x = self._dense(profile)
        scores, shows = self._ranked(request, profile, x, max(request.top_k, explanations.IMPACT_CANDIDATES))
        held = np.empty((profile.length, len(shows)))  # [n, K]
        own = np.empty(profile.length)  # [n]
        for start in range(0, profile.length, rows):
            items = profile.items[start : start + rows]
            batch = np.repeat(x, len(items), axis=0)  # [r, 2C]
            batch[np.arange(len(items)), items] = 0.0
            batch[np.arange(len(items)), self.size + items] = 0.0
            log_presence, ratings = self._forward_rows(batch)
            for r in range(len(items)):
                held[start + r] = self._scores(log_presence[r], ratings[r], request, shows)
            own[start : start + len(items)] = ratings[np.arange(len(items)), items]
        return self._explained(request, profile, scores, shows, held, own)

    def _explained(self, request, profile, scores, shows, held, own) -> dict:
        from sprout.dataset.features import denormalise
        from sprout.inference import explanations

        shares = explanations.score_shares(scores[shows], held)  # [n, K] from log scores
        impacts = explanations.entry_impacts(scores[shows], held)
        predicted = denormalise(own, profile.mu, profile.sigma)
        return {
            "contributors": explanations.top_contributors(shares[:, : request.top_k]),
            "impactful": explanations.most_impactful(impacts).tolist(),
            "surprising": explanations.most_surprising(profile.scores.astype(float), predicted, profile.scores > 0).tolist(),
        }


def machine_floors() -> dict[str, float]:
    """This machine's memory-copy bandwidth (GB/s) and float32 matrix-product peak (GFLOP/s), best
    of several tries: the floors every figure is compared with."""
    source = np.ones(64 << 20, np.float32)  # 256 MB: far past the caches
    target = np.empty_like(source)
    copy_s = min(time_calls(lambda: np.copyto(target, source), 5, warm=1))
    import jax
    import jax.numpy as jnp

    size = 4096
    a = np.random.default_rng(0).standard_normal((size, size), np.float32)
    on_device = jnp.asarray(a)
    product = jax.jit(lambda x: x @ x)
    numpy_s = min(time_calls(lambda: a @ a, 5, warm=1))
    xla_s = min(time_calls(lambda: product(on_device).block_until_ready(), 5, warm=1))
    return {"copy_gb_per_s": 2 * source.nbytes / copy_s / 1e9,
            "sgemm_gflop_per_s": 2 * size**3 / min(numpy_s, xla_s) / 1e9}  # the faster of numpy and XLA


def head_macs(config, columns: int) -> int:
    """Multiply-adds of one decoder head from the bottleneck to ``columns`` outputs."""
    widths = (config.bottleneck, *config.decoder_hidden)
    return sum(a * b for a, b in zip(widths[:-1], widths[1:])) + widths[-1] * columns


def pass_costs(config, profile_length: int, top_k: int) -> dict[str, float]:
    """FLOPs and bytes of weights read by one /recommend (rating weight 1) and by the hold-out
    pass of one /explain (every entry held out, ``top_k`` candidate columns), from the config."""
    corpus, hidden, z = config.corpus_size, config.encoder_hidden, config.bottleneck
    features = head_macs(config, 0)  # the rating head up to its output layer
    presence = head_macs(config, corpus)
    shared = hidden * z + presence + features  # bottleneck, presence head, rating head up to its output
    recommend_macs = profile_length * (2 * hidden + corpus) + shared + config.decoder_hidden[-1] * top_k
    recommend_bytes = 4 * (profile_length * (2 * hidden + corpus) + shared + config.decoder_hidden[-1] * top_k)
    explain_macs = profile_length * (hidden * z + presence + features + config.decoder_hidden[-1] * (top_k + 1))
    # The first-order normaliser reads the presence head's output layer at its exact head and the
    # candidates only, plus one W·p_tail product per hold-out chunk.
    from sprout.inference.network import EXACT_HEAD

    head = min(EXACT_HEAD, corpus) + top_k
    first_order_macs = (
        profile_length * (hidden * z + head_macs(config, head) + features + config.decoder_hidden[-1] * (top_k + 1))
        + config.decoder_hidden[-1] * corpus
    )
    return {"recommend_gflop": 2 * recommend_macs / 1e9, "recommend_mb_read": recommend_bytes / 1e6,
            "explain_gflop": 2 * explain_macs / 1e9, "explain_first_order_gflop": 2 * first_order_macs / 1e9}


def recommend_shares_ms(artifact: Path, body: dict, runs: int) -> tuple[dict[str, float], int]:
    """Where an in-process /recommend spends its time, stage by stage (p50 of each, ms), and how
    many of the profile's entries take part (after the profile rules)."""
    from sprout.inference.engine import Recommender
    from sprout.inference.profile import prepare_profile
    from sprout.inference.requests import RecommendRequest

    engine = Recommender.load(artifact, devices=1, warmup=True)
    request = RecommendRequest(**body)
    profile = prepare_profile(request.profile, engine.corpus)
    encoded = engine.encode(request)
    log_presence, features = engine.outputs([encoded])
    answer = engine.respond(request, encoded, log_presence[0], features[0])
    stages = {
        "parse request": lambda: RecommendRequest(**body),
        "profile rules": lambda: prepare_profile(request.profile, engine.corpus),
        "first layer and x·B": lambda: engine.network.encode(profile.items, profile.values),
        "shared pass (presence, rating features)": lambda: engine.outputs([encoded]),
        "filters, ranking, ratings of the kept shows, response": lambda: engine.respond(
            request, encoded, log_presence[0], features[0]),
        "JSON": lambda: answer.model_dump_json(),
        "whole /recommend": lambda: engine.recommend(request),
    }
    return {name: 1000 * float(np.median(time_calls(call, runs))) for name, call in stages.items()}, profile.length


def engine_explain_p50(artifact: Path, body: dict, explains: int, devices: int, normaliser: str = "exact") -> float:
    """p50 of the engine's /explain work in this process (ms), on ``devices`` devices."""
    from sprout.inference.engine import Recommender
    from sprout.inference.requests import ExplainRequest

    engine = Recommender.load(artifact, devices=devices, explain_normaliser=normaliser)
    request = ExplainRequest(**body)
    return percentiles(time_calls(lambda: engine.explain(request), explains))[0]


def naive_p50s(artifact: Path, recommend_body: dict, explain_body: dict, explains: int) -> tuple[float, float, float]:
    """p50 of the naive engine's /recommend, one-at-a-time /explain and batched dense /explain
    work in this process (ms)."""
    from sprout.inference.requests import ExplainRequest, RecommendRequest

    naive = NaiveEngine(artifact)
    recommend_request, explain_request = RecommendRequest(**recommend_body), ExplainRequest(**explain_body)
    recommend = percentiles(time_calls(lambda: naive.recommend(recommend_request), 30))[0]
    explain = percentiles(time_calls(lambda: naive.explain(explain_request), explains, warm=1))[0]
    batched = percentiles(time_calls(lambda: naive.explain_batched(explain_request), explains, warm=1))[0]
    return recommend, explain, batched


def engine_recommend_p50(artifact: Path, body: dict, requests: int) -> float:
    """p50 of the engine's /recommend work in this process (ms): the HTTP figure without HTTP."""
    from sprout.inference.engine import Recommender
    from sprout.inference.requests import RecommendRequest

    engine = Recommender.load(artifact, devices=1, warmup=True)
    request = RecommendRequest(**body)
    return percentiles(time_calls(lambda: engine.recommend(request), requests))[0]


def probe_sharding(artifact: Path, body_json: str, explains: int) -> None:
    """Child process: explanation p50 with 1 and 2 devices, printed as JSON."""
    body = json.loads(body_json)
    print(json.dumps({devices: engine_explain_p50(artifact, body, explains, devices) for devices in (1, 2)}))


def main(
    requests: int = typer.Option(200, min=10, help="Timed /recommend calls."),
    explains: int = typer.Option(30, min=3, help="Timed /explain calls."),
    naive_explains: int = typer.Option(5, min=1, help="Timed naive explanations (each runs ~300 passes)."),
    users: int = typer.Option(3000, min=500, help="Synthetic users behind the corpus."),
    load_s: float = typer.Option(15.0, min=1, help="Seconds of the 8-client throughput run."),
    probe: Path | None = typer.Option(None, hidden=True),
    probe_body: str = typer.Option("", hidden=True),
) -> None:
    if probe is not None:
        probe_sharding(probe, probe_body, explains)
        return
    from bentos.local_server import LocalServer
    from results import write_result

    home = Path(tempfile.mkdtemp(prefix="sprout-serving-bench-"))
    stores = default_model_store(home, users)
    store_dir, version, artifact = stores["hybrid"]
    corpus_ids = np.asarray(json.loads((artifact / "corpus.json").read_text())["anime_ids"])
    profile = benchmark_profile(corpus_ids)
    recommend_body = {"profile": profile, "top_k": 50, "hide_unwatched_sequels": False}
    explain_body = {"profile": profile, "top_k": 20, "hide_unwatched_sequels": False}
    rows: list[tuple[str, str, str]] = []

    deep_store = stores["deep"][0]
    with LocalServer(deep_store, home / "serve-deep.log", ready_timeout_s=1200) as server:
        with httpx.Client(base_url=server.url, timeout=300) as http:
            deep_recommend = percentiles(time_calls(lambda: http.post("/recommend", json=recommend_body), requests))
            deep_explain = percentiles(time_calls(lambda: http.post("/explain", json=explain_body), explains))
    with LocalServer(stores["compact"][0], home / "serve-compact.log", ready_timeout_s=1200) as server:
        with httpx.Client(base_url=server.url, timeout=300) as http:
            compact_recommend = percentiles(time_calls(lambda: http.post("/recommend", json=recommend_body), requests))
            compact_explain = percentiles(time_calls(lambda: http.post("/explain", json=explain_body), explains))

    started = time.perf_counter()
    with LocalServer(store_dir, home / "serve.log", ready_timeout_s=1200) as server:
        ready_s = time.perf_counter() - started
        rows.append(("server start to ready (load + warm-up)", f"{ready_s:.1f} s", ""))
        with httpx.Client(base_url=server.url, timeout=300) as http:
            def post(path: str, body: dict) -> None:
                response = http.post(path, json=body)
                response.raise_for_status()

            recommend = percentiles(time_calls(lambda: post("/recommend", recommend_body), requests))
            explain = percentiles(time_calls(lambda: post("/explain", explain_body), explains))
            answered, failed, latencies, elapsed = concurrent_load(server.url, recommend_body, 8, load_s)
            loaded = percentiles(latencies)
            compilations = http.get("/model").headers["X-Sprout-Compilations"]
    rows += [
        ("compact widths: HTTP /recommend p50 / p99", f"{compact_recommend[0]:.1f} / {compact_recommend[1]:.1f} ms",
         "the default recipe below 20,000 users"),
        ("compact widths: HTTP /explain p50 / p99", f"{compact_explain[0]:.1f} / {compact_explain[1]:.1f} ms", ""),
        ("deep network alone: HTTP /recommend p50 / p99", f"{deep_recommend[0]:.1f} / {deep_recommend[1]:.1f} ms",
         "same weights, no item-item path"),
        ("deep network alone: HTTP /explain p50 / p99", f"{deep_explain[0]:.1f} / {deep_explain[1]:.1f} ms", ""),
        ("HTTP /recommend p50 / p99 (1 client)", f"{recommend[0]:.1f} / {recommend[1]:.1f} ms", "goal p50 <= 15 ms"),
        ("HTTP /explain p50 / p99 (1 client)", f"{explain[0]:.1f} / {explain[1]:.1f} ms", "goal p50 <= 150 ms"),
        ("HTTP /recommend, 8 clients", f"{answered / elapsed:.1f} req/s, p50 {loaded[0]:.1f} / p99 {loaded[1]:.1f} ms",
         f"{answered} answered, {failed} failed"),
        ("XLA compilations after warm-up", compilations, "goal 0"),
    ]

    naive_recommend, naive_explain, naive_batched = naive_p50s(artifact, recommend_body, explain_body, naive_explains)
    engine = engine_explain_p50(artifact, explain_body, explains, devices=1)
    engine_first_order = engine_explain_p50(artifact, explain_body, explains, devices=1, normaliser="first_order")
    engine_recommend = engine_recommend_p50(artifact, recommend_body, requests)
    shares, entries = recommend_shares_ms(artifact, recommend_body, requests)
    floors = machine_floors()
    from sprout.model.artifact import read_model_artifact

    costs = pass_costs(read_model_artifact(artifact)[0].config, entries, 50)  # the candidates either pass keeps
    recommend_floor_ms = 1000 * max(costs["recommend_mb_read"] / 1e3 / floors["copy_gb_per_s"],
                                    costs["recommend_gflop"] / floors["sgemm_gflop_per_s"])
    explain_floor_ms = 1000 * costs["explain_gflop"] / floors["sgemm_gflop_per_s"]
    first_order_floor_ms = 1000 * costs["explain_first_order_gflop"] / floors["sgemm_gflop_per_s"]
    rows += [
        ("engine /recommend work p50 (in-process)", f"{engine_recommend:.1f} ms", "the HTTP figure less HTTP"),
        ("naive /recommend work p50 (in-process)", f"{naive_recommend:.1f} ms", "dense 12,000-wide input"),
        ("naive /explain work p50 (in-process)", f"{naive_explain:.1f} ms", f"{PROFILE_LENGTH} full passes"),
        ("batched dense /explain work p50 (in-process)", f"{naive_batched:.1f} ms", "every hold-out in dense batches"),
        ("engine /explain work p50 (in-process)", f"{engine:.1f} ms", f"{naive_explain / engine:.1f}x faster than naive"),
        ("engine /explain, first-order normaliser", f"{engine_first_order:.1f} ms",
         f"{costs['explain_first_order_gflop']:.1f} vs {costs['explain_gflop']:.1f} GFLOP"),
        ("HTTP /explain vs naive in-process", f"{naive_explain / explain[0]:.1f}x faster", "goal >= 2.5x"),
    ]

    environment = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    child = subprocess.run(
        [sys.executable, str(HERE), "--probe", str(artifact), "--probe-body", json.dumps(explain_body), "--explains", str(explains)],
        env=environment, capture_output=True, text=True, check=True,
    )
    sharded = {int(k): v for k, v in json.loads(child.stdout.strip().splitlines()[-1]).items()}
    rows.append(("engine /explain p50, 1 vs 2 CPU devices", f"{sharded[1]:.1f} vs {sharded[2]:.1f} ms",
                 f"{os.cpu_count()} cores; 2 devices {sharded[1] / sharded[2]:.2f}x"))

    width = max(len(name) for name, _, _ in rows)
    print(f"\nServing benchmark: default model (55.5M parameters), corpus {len(corpus_ids)}, "
          f"{PROFILE_LENGTH}-entry profile, version {version}")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:<38} {note}")
    print(f"  all figures from this run on this machine ({os.cpu_count()} cores)")
    path = write_result("serving", {
        "model": "reference widths with the item-item path (random weights)", "corpus_size": len(corpus_ids),
        "profile_length": PROFILE_LENGTH,
        "figures": {
            "recommend_ms": {"p50": recommend[0], "p99": recommend[1]},
            "explain_ms": {"p50": explain[0], "p99": explain[1]},
            "compact": {"recommend_ms": {"p50": compact_recommend[0], "p99": compact_recommend[1]},
                        "explain_ms": {"p50": compact_explain[0], "p99": compact_explain[1]},
                        "widths": "600 → 200 → 600, with the item-item path"},
            "recommend_8_clients": {"requests_per_s": answered / elapsed, "failed": failed,
                                    "p50_ms": loaded[0], "p99_ms": loaded[1]},
            "compilations_after_warm_up": int(compilations),
            "engine_explain_ms": {"p50": engine, "devices_1": sharded[1], "devices_2": sharded[2],
                                  "first_order_p50": engine_first_order},
            "engine_recommend_ms_p50": engine_recommend,
            "recommend_shares_ms": {**shares, "HTTP and BentoML (HTTP p50 less in-process)": recommend[0] - engine_recommend},
            "floors": {**floors, **costs, "entries_taking_part": entries, "recommend_floor_ms": recommend_floor_ms, "explain_floor_ms": explain_floor_ms,
                       "explain_share_of_peak": explain_floor_ms / engine,
                       "explain_first_order_floor_ms": first_order_floor_ms,
                       "explain_first_order_share_of_peak": first_order_floor_ms / engine_first_order},
        },
        "baselines": {
            "deep_alone_recommend_ms": {"p50": deep_recommend[0], "p99": deep_recommend[1]},
            "deep_alone_explain_ms": {"p50": deep_explain[0], "p99": deep_explain[1]},
            "naive_recommend_ms_p50": naive_recommend, "naive_explain_ms_p50": naive_explain,
            "batched_dense_explain_ms_p50": naive_batched,
        },
        "notes": {"server_start_to_ready_s": ready_s},
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    typer.run(main)
