"""Training throughput at the default model size, batch 512, this machine's CPU.

Compares the platform's training step (first layer over the batch's distinct shows) with a
plain dense step written here (the ``[B, 2C]`` input through a dense first layer), same model,
losses and optimiser, on the same synthetic profiles, in the same run. Both steps' inputs (the
platform's `Batch` and the baseline's dense vector with its targets) are built and placed on the
device before timing, so the timed region is the steps alone. After one untimed pass each (it
compiles every shape), the two steps are timed in alternating passes over the same batches, and
each figure is the median pass, so load from other jobs on the machine falls on both alike.

    uv run python benchmarks/training.py [--batch 512] [--steps 5] [--rounds 3]

Writes ``benchmarks/results/training.json``; `benchmarks/readme_tables.py` renders it.
"""

from __future__ import annotations

import os
import time
from functools import partial

import jax
import numpy as np
import optax
import typer
from flax import nnx

from sprout.model.autoencoder import Autoencoder
from sprout.model.config import ModelConfig
from sprout.training.batches import make_batch
from sprout.training.config import TrainConfig
from sprout.training.losses import masked_huber, multinomial_nll, uncertainty_weighted
from sprout.training.step import LossSettings, make_optimizer, train_step


def synthetic_profiles(n_users: int, corpus: int, rng: np.random.Generator):
    """CSR profiles shaped like the training users: ≥ 30 entries, long tail, popular items first."""
    lengths = np.clip(rng.lognormal(np.log(80), 0.9, n_users), 30, 2000).astype(np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    popularity = 1.0 / np.arange(1, corpus + 1) ** 1.3
    popularity /= popularity.sum()
    items = np.concatenate([rng.choice(corpus, size=n, replace=False, p=popularity) for n in lengths]).astype(np.int32)
    values = rng.normal(0, 1, len(items)).astype(np.float32)
    rated = rng.random(len(items)) < 0.8
    return indptr, items, values, rated


@partial(jax.jit, static_argnames=("graphdef", "tx"), donate_argnames=("params", "opt_state"))
def dense_step(graphdef, params, opt_state, x, target_items, target_values, target_mask, target_rated, key, *, tx):
    """Baseline: dense [B, 2C] input and first layer, otherwise the same computation."""

    def loss_of(p):
        model = nnx.merge(graphdef, p)
        logits, ratings = model.forward_dense(x, train=True, noise_key=key)
        presence = multinomial_nll(logits, target_items, target_mask)
        rating = masked_huber(ratings, target_items, target_values, target_rated)
        return uncertainty_weighted(presence, rating, model.log_var_presence[...], model.log_var_rating[...])

    loss, grads = jax.value_and_grad(loss_of)(params)
    updates, opt_state = tx.update(grads, opt_state, params, value=loss)
    return optax.apply_updates(params, updates), opt_state, loss


def dense_input(batch, corpus: int) -> np.ndarray:
    """The kept inputs of a batch as the dense [B, 2C] vector the original model took."""
    x = np.zeros((batch.size + 1, 2 * corpus), np.float32)
    shows = batch.input_columns[batch.input_items]
    x[batch.input_users, shows] = 1.0
    x[batch.input_users, corpus + shows] = batch.input_values
    return x[:-1]


def parameter_count(model: Autoencoder) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))


def timed_passes(runs: dict[str, tuple], rounds: int) -> dict[str, list[float]]:
    """Seconds per pass over each run's inputs, ``rounds`` passes per run.

    ``runs`` maps a name to ``(step, inputs, params, opt_state)``; ``step(params, opt_state, x)``
    returns ``(params, opt_state, loss)``, threaded through every pass as in training. One untimed
    pass per run compiles every shape first; then each round times one pass of every run in turn,
    so load from other jobs on the machine falls on all of them alike.
    """
    states = {name: (params, opt_state) for name, (_, _, params, opt_state) in runs.items()}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for timed in [False] + [True] * rounds:
        for name, (step, inputs, _, _) in runs.items():
            params, opt_state = states[name]
            started = time.perf_counter()
            for x in inputs:
                params, opt_state, loss = step(params, opt_state, x)
                jax.block_until_ready(loss)
            if timed:
                seconds[name].append(time.perf_counter() - started)
            states[name] = params, opt_state
    return seconds


def main(
    batch: int = typer.Option(512, min=1),
    steps: int = typer.Option(5, min=1, help="Batches per pass."),
    rounds: int = typer.Option(3, min=1, help="Timed passes per step, alternating; the median counts."),
    seed: int = 0,
) -> None:
    from results import write_result

    load_average = os.getloadavg()[0]  # other jobs on the machine share its cores
    config = ModelConfig()
    rng = np.random.default_rng(seed)
    indptr, items, values, rated = synthetic_profiles(batch * steps, config.corpus_size, rng)
    batches = [
        make_batch(indptr, items, values, rated, np.arange(i * batch, (i + 1) * batch), rng, corpus_size=config.corpus_size)
        for i in range(steps)
    ]
    # Both steps' inputs are built and on the device before anything is timed.
    sparse_inputs = [jax.device_put(b) for b in batches]
    dense_inputs = [
        jax.device_put((dense_input(b, config.corpus_size), b.target_items, b.target_values, b.target_mask,
                        b.target_rated))
        for b in batches
    ]
    tx = make_optimizer(TrainConfig())
    key = jax.random.key(seed)

    def sparse(params, opt_state, b):
        params, opt_state, loss, *_ = train_step(graphdef, params, opt_state, b, key, tx=tx, loss=LossSettings())
        return params, opt_state, loss

    def dense(params, opt_state, inputs):
        return dense_step(graphdef, params, opt_state, *inputs, key, tx=tx)

    graphdef, _ = nnx.split(Autoencoder(config, nnx.Rngs(seed)))
    runs = {}
    for name, step, inputs in (("platform", sparse, sparse_inputs), ("dense", dense, dense_inputs)):
        model = Autoencoder(config, nnx.Rngs(seed))  # the same initial weights for both
        parameters = parameter_count(model)
        _, params = nnx.split(model)
        runs[name] = (step, inputs, params, tx.init(params))
    passes = timed_passes(runs, rounds)
    seconds = {name: float(np.median(times)) for name, times in passes.items()}
    rates = {name: steps * batch / s for name, s in seconds.items()}
    device = jax.devices()[0]
    mean_entries = float(np.diff(indptr).mean())
    speed_up = rates["platform"] / rates["dense"]
    path = write_result("training", {
        "figures": {"examples_per_s": round(rates["platform"], 1), "step_s": round(seconds["platform"] / steps, 4),
                    "pass_s": [round(t, 3) for t in passes["platform"]],
                    "speed_up_vs_dense": round(speed_up, 3), "goal_speed_up": 1.2},
        "baselines": {"dense_step": {"examples_per_s": round(rates["dense"], 1),
                                     "step_s": round(seconds["dense"] / steps, 4),
                                     "pass_s": [round(t, 3) for t in passes["dense"]]}},
        "settings": {"parameters": parameters, "corpus_size": config.corpus_size, "batch": batch,
                     "steps_per_pass": steps, "rounds": rounds, "mean_profile_entries": round(mean_entries, 1),
                     "input_dropout": [0.24, 0.56], "seed": seed, "device": f"{device.platform}: {device.device_kind}"},
        "notes": {"load_average_at_start": round(load_average, 2)},
    })
    print(f"default model ({parameters:,} parameters), batch {batch}, median of {rounds} alternating passes of "
          f"{steps} steps on {device.platform}: {device.device_kind}")
    print(f"profiles: mean {mean_entries:.0f} entries, input dropout U[0.24, 0.56]")
    print(f"{'platform step':20} {rates['platform']:10.1f} examples/s")
    print(f"{'dense (baseline)':20} {rates['dense']:10.1f} examples/s")
    print(f"speed-up: {speed_up:.2f}x (goal >= 1.2x)")
    print(f"written to {path}")


if __name__ == "__main__":
    typer.run(main)
