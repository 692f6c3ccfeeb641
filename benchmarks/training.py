"""Training throughput at the default model size (55.5M parameters), batch 512, this machine's CPU.

Compares the platform's training step (first layer over the batch's distinct shows) with a
plain dense step written here (the ``[B, 2C]`` input through a dense first layer), same model,
losses and optimiser, on the same synthetic profiles, in the same run.

    uv run python benchmarks/training.py [--batch 512] [--steps 5]
"""

from __future__ import annotations

import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import typer
from flax import nnx

from sprout.model.autoencoder import Autoencoder
from sprout.model.config import ModelConfig
from sprout.training.batches import make_batch
from sprout.training.config import TrainConfig
from sprout.training.losses import masked_huber, multinomial_nll, uncertainty_weighted
from sprout.training.step import make_optimizer, train_step


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


def dense_input(batch, corpus: int) -> jnp.ndarray:
    """The kept inputs of a batch as the dense [B, 2C] vector the original model took."""
    x = np.zeros((batch.size + 1, 2 * corpus), np.float32)
    shows = batch.input_columns[batch.input_items]
    x[batch.input_users, shows] = 1.0
    x[batch.input_users, corpus + shows] = batch.input_values
    return jnp.asarray(x[:-1])


def time_steps(run_step, batches) -> float:
    """Seconds for one pass over ``batches`` after a first pass has compiled every shape."""
    for batch in batches:
        jax.block_until_ready(run_step(batch))
    started = time.perf_counter()
    for batch in batches:
        jax.block_until_ready(run_step(batch))
    return time.perf_counter() - started


def main(batch: int = typer.Option(512, min=1), steps: int = typer.Option(5, min=1), seed: int = 0) -> None:
    config = ModelConfig()
    rng = np.random.default_rng(seed)
    indptr, items, values, rated = synthetic_profiles(batch * steps, config.corpus_size, rng)
    batches = [
        make_batch(indptr, items, values, rated, np.arange(i * batch, (i + 1) * batch), rng, corpus_size=config.corpus_size)
        for i in range(steps)
    ]
    tx = make_optimizer(TrainConfig())
    key = jax.random.key(seed)
    results = {}
    for name in ("platform step", "dense (baseline)"):
        graphdef, params = nnx.split(Autoencoder(config, nnx.Rngs(seed)))
        state = {"params": params, "opt": tx.init(params)}

        def run_sparse(b):
            state["params"], state["opt"], loss, *_ = train_step(
                graphdef, state["params"], state["opt"], b, key, tx=tx, huber_delta=1.0
            )
            return loss

        def run_dense(b):
            x = dense_input(b, config.corpus_size)
            state["params"], state["opt"], loss = dense_step(
                graphdef, state["params"], state["opt"], x, b.target_items, b.target_values, b.target_mask,
                b.target_rated, key, tx=tx,
            )
            return loss

        elapsed = time_steps(run_sparse if name == "platform step" else run_dense, batches)
        results[name] = steps * batch / elapsed
        del state
    device = jax.devices()[0]
    print(f"default model (55,464,162 parameters), batch {batch}, {steps} timed steps on {device.platform}: {device.device_kind}")
    mean_entries = float(np.diff(indptr).mean())
    print(f"profiles: mean {mean_entries:.0f} entries, input dropout U[0.24, 0.56]")
    for name, rate in results.items():
        print(f"{name:20} {rate:10.1f} examples/s")
    print(f"speed-up: {results['platform step'] / results['dense (baseline)']:.2f}x (goal >= 1.2x)")


if __name__ == "__main__":
    typer.run(main)
