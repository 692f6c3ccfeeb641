"""The training run: seeded, checkpointed, resumable, stopped by the plateau schedule.

Batches are a pure function of (seed, step), so a run resumed from a checkpoint continues with
exactly the batches it would have seen. A non-finite loss stops the run with `NonFiniteLoss`
before anything is saved as a model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from sprout.dataset.snapshot_format import Snapshot
from sprout.model.autoencoder import Autoencoder, parameter_count
from sprout.model.config import ModelConfig
from sprout.training.batches import make_batch
from sprout.training.checkpoints import Checkpoints
from sprout.training.config import TrainConfig
from sprout.training.step import lr_scale, make_optimizer, train_step
from sprout.training.tracking import NullTracker, Tracker
from sprout.training.validation import popularity_ndcg, validate

Progress = Callable[[int, int, dict], None]


class NonFiniteLoss(RuntimeError):
    """Training produced NaN or infinity; nothing from the run is kept as a model."""


@dataclass
class TrainResult:
    model: Autoencoder
    steps: int
    stopped_by: str  # "plateau" or "max_steps"
    final: dict[str, float]
    validation: dict[str, float]
    popularity_ndcg: float
    examples_per_s: float
    resumed_from: int
    history: list[dict[str, float]] = field(default_factory=list)


def batch_rows(n_users: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Users of batch ``step``: walk a seeded permutation per epoch (deterministic, resumable)."""
    per_epoch = max(1, n_users // batch_size)
    epoch, index = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n_users)
    return order[index * batch_size : (index + 1) * batch_size]


def train(
    snapshot: Snapshot,
    model_config: ModelConfig,
    config: TrainConfig,
    checkpoint_dir: Path,
    *,
    tracker: Tracker | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    tracker = tracker or NullTracker()
    train_split, validation_split = snapshot.split("train"), snapshot.split("validation")
    if train_split.n_users == 0:
        raise ValueError("the snapshot has no training users")
    corpus_size = model_config.corpus_size
    if snapshot.manifest.corpus_size > corpus_size:
        raise ValueError(
            f"the snapshot's corpus ({snapshot.manifest.corpus_size}) is larger than the model's ({corpus_size})"
        )
    model = Autoencoder(model_config, nnx.Rngs(config.seed))
    graphdef, params = nnx.split(model)
    tx = make_optimizer(config)
    opt_state = tx.init(params)
    checkpoints = Checkpoints(Path(checkpoint_dir))
    start, history = 0, []
    if checkpoints.exists():
        trees, meta = checkpoints.load({"params": params, "opt": opt_state})
        params, opt_state, start, history = trees["params"], trees["opt"], meta["step"], meta["history"]

    n_validation = validation_split.n_users
    if config.validation_users:
        n_validation = min(n_validation, config.validation_users)
    validation_rows = np.arange(n_validation)
    baseline = popularity_ndcg(train_split, validation_split, validation_rows, corpus_size) if n_validation else float("nan")
    batch_size = min(config.batch_size, train_split.n_users)
    key = jax.random.key(config.seed)
    stopped_by, step = "max_steps", start
    last: dict[str, float] = {}
    validation: dict[str, float] = {}
    examples, timed = 0, 0.0
    for step in range(start, config.max_steps):
        rows = batch_rows(train_split.n_users, batch_size, config.seed, step)
        rng = np.random.default_rng([config.seed, step, 1])
        batch = make_batch(
            train_split.indptr, train_split.items, train_split.values, train_split.rated, rows, rng,
            (config.dropout_min, config.dropout_max), corpus_size=corpus_size,
        )
        began = time.perf_counter()
        params, opt_state, total, presence, rating = train_step(
            graphdef, params, opt_state, batch, jax.random.fold_in(key, step), tx=tx, huber_delta=config.huber_delta
        )
        total = float(total)
        timed += time.perf_counter() - began
        examples += len(rows)
        if not math.isfinite(total):
            raise NonFiniteLoss(f"loss became {total} at step {step + 1}; no model was saved")
        scale = float(lr_scale(opt_state))
        last = {
            "train/loss": total, "train/presence_loss": float(presence), "train/rating_loss": float(rating),
            "train/log_var_presence": float(params["log_var_presence"][...]),
            "train/log_var_rating": float(params["log_var_rating"][...]),
            "train/lr_scale": scale, "train/examples_per_s": examples / timed if timed else 0.0,
        }
        done = step + 1
        if done % config.eval_every == 0 or done == config.max_steps or scale < config.min_lr_scale:
            validation = validate(
                graphdef, params, validation_split, validation_rows, corpus_size,
                batch_size=batch_size, huber_delta=config.huber_delta,
            ) if n_validation else {}
            history.append({"step": done, **last, **validation})
            tracker.log({**last, **validation}, step=done)
        elif done % 10 == 0:
            tracker.log(last, step=done)
        if progress:
            progress(done, config.max_steps, last)
        if done % config.checkpoint_every == 0:
            checkpoints.save({"params": params, "opt": opt_state}, {"step": done, "history": history})
        if scale < config.min_lr_scale:
            stopped_by = "plateau"
            break
    steps = step + 1 if config.max_steps > start else start
    nnx.update(model, params)
    return TrainResult(
        model=model, steps=steps, stopped_by=stopped_by, final=last, validation=validation,
        popularity_ndcg=baseline, examples_per_s=examples / timed if timed else 0.0, resumed_from=start,
        history=history,
    )


def model_parameters(model: Autoencoder) -> int:
    return parameter_count(model)
