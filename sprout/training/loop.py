"""The training recipe: deep path by gradient descent, then the item-item path and the blend.

1. The deep autoencoder (both heads) trains on batches that are a pure function of (seed, step),
   so a run resumed from a checkpoint continues with exactly the batches it would have seen.
   Every ``eval_every`` steps it is scored on validation users by the evaluator the gate uses
   (`ranking_quality`); the best step's weights are kept and restored at the end, and the run
   stops early after ``early_stopping_patience`` passes without a better NDCG@100 (or when the
   plateau schedule has shrunk the learning rate below ``min_lr_scale``).
2. With ``model_config.item_item`` the closed-form item-item path is fitted and blended with the
   deep presence logits, both chosen on the same validation users (`item_item_fit`).
3. With ``model_config.presence_map`` the presence map is fitted on the same users so that the
   probabilities are the chance of each show being the user's next (`presence_map_fit`): the
   probabilities mean what they say, no ranking by presence changes.
4. With ``model_config.rating_neighbours`` the rating path (bias baseline + item neighbourhoods,
   blended with the rating head) is fitted and blended on the same users (`rating_fit`).
5. With ``config.refit_on_validation`` every closed-form part (``B``, biases, neighbourhoods) is
   fitted again on the training and validation users together, keeping every choice made on
   validation: the final model learns from every user but the test users, who score it.

A non-finite loss stops the run with `NonFiniteLoss` before anything is saved as a model.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sprout.dataset.snapshot_format import Snapshot
from sprout.evaluation.baselines import PopularityEvaluator
from sprout.evaluation.held_out import HeldOutUsers, held_out_users_from_splits
from sprout.evaluation.evaluator import ranking_metrics
from sprout.evaluation.model_scores import model_scores, ranking_quality
from sprout.model.autoencoder import Autoencoder, parameter_count
from sprout.model.config import ModelConfig
from sprout.model.ranking_score import DEFAULT_RATING_WEIGHT
from sprout.training.batches import make_batch
from sprout.training.checkpoints import Checkpoints
from sprout.training.config import TrainConfig
from sprout.training.item_item_fit import (
    choose_blend,
    choose_entry_threshold,
    choose_reweighting,
    fit_item_item,
    item_item_weights,
    with_item_item,
)
from sprout.training.presence_map_fit import fit_presence_map
from sprout.training.rating_fit import fit_rating_path, refit_rating_path
from sprout.training.parallel import data_mesh, replicated, sharded_batch
from sprout.training.step import LossSettings, lr_scale, make_optimizer, train_step
from sprout.training.tracking import NullTracker, Tracker

Progress = Callable[[int, int, dict], None]


class NonFiniteLoss(RuntimeError):
    """Training produced NaN or infinity; nothing from the run is kept as a model."""


@dataclass
class TrainResult:
    model: Autoencoder
    steps: int
    stopped_by: str  # "early_stopping", "plateau" or "max_steps"
    best_step: int  # the step whose deep weights the model carries (0: never validated)
    final: dict[str, float]
    validation: dict[str, float]
    popularity_ndcg: float
    examples_per_s: float
    resumed_from: int
    history: list[dict[str, float]] = field(default_factory=list)
    item_item: dict[str, float] = field(default_factory=dict)  # fitted λ, p and blend, when used
    ratings: dict[str, float] = field(default_factory=dict)  # the rating path's blend and validation MAEs
    presence_map: dict[str, float] = field(default_factory=dict)  # the fitted map and its validation next-show NLL
    refit_users: int = 0  # users the closed-form parts were refitted on (0: training users only)
    training_users: int = 0  # training users learned from (those with at least entry_threshold entries)
    entry_threshold: int = 0
    threshold_ndcg: dict[str, float] = field(default_factory=dict)  # validation NDCG@100 of x B per threshold
    # validation NDCG@100 and rated NDCG@100 per rating weight, before the refit (which sees these users)
    validation_by_rating_weight: dict[str, dict[str, float]] = field(default_factory=dict)


VALIDATION_KEYS = ("recall@20", "recall@50", "ndcg@100")


def validation_keys(metrics: dict[str, float]) -> dict[str, float]:
    return {f"val/{name}": metrics[name] for name in VALIDATION_KEYS}


def validation_metrics(model: Autoencoder, users: HeldOutUsers) -> dict[str, float]:
    """``val/<metric>`` of the model on validation users, from the gate's evaluator."""
    return validation_keys(ranking_quality(model, users, DEFAULT_RATING_WEIGHT))


def recorded_validation(history: list[dict[str, float]], step: int) -> dict[str, float]:
    """The ``val/`` figures logged at ``step`` (empty when that step was not validated)."""
    row = next((h for h in history if h["step"] == step), {})
    return {key: value for key, value in row.items() if key.startswith("val/")}


def batch_rows(n_users: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Users of batch ``step``: walk a seeded permutation per epoch (deterministic, resumable)."""
    per_epoch = max(1, n_users // batch_size)
    epoch, index = divmod(step, per_epoch)
    return epoch_order(n_users, seed, epoch)[index * batch_size : (index + 1) * batch_size]


@functools.lru_cache(maxsize=2)
def epoch_order(n_users: int, seed: int, epoch: int) -> np.ndarray:
    """The epoch's permutation of the users [n_users], read-only; drawn once per epoch, not per
    step (at a million users the draw costs more than building the batch)."""
    order = np.random.default_rng([seed, epoch]).permutation(n_users)
    order.setflags(write=False)
    return order


REPORTED_RATING_WEIGHTS = (1.0, 0.5, 0.3, 0.0)


def rating_weight_figures(model: Autoencoder, users: HeldOutUsers) -> dict[str, dict[str, float]]:
    """Binary and rated NDCG@100 on validation users at each reported rating weight: what the
    default weight is chosen by (a measure of "will watch" and one of "will watch and like")."""
    figures = {}
    for weight in REPORTED_RATING_WEIGHTS:
        metrics = ranking_metrics(model_scores(model, users, weight, ratings=False).scores, users)
        figures[f"{weight:g}"] = {"ndcg@100": metrics["ndcg@100"], "rated_ndcg@100": metrics["rated_ndcg@100"]}
    return figures


def kl_weight_at(step: int, config: TrainConfig) -> float:
    """The KL term's weight at ``step``: rising linearly to ``kl_weight`` over ``kl_anneal_steps``."""
    return config.kl_weight * min(1.0, step / config.kl_anneal_steps)


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
    n_validation = validation_split.n_users
    if config.validation_users:
        n_validation = min(n_validation, config.validation_users)
    users = (
        held_out_users_from_splits(validation_split.first_users(n_validation), train_split, corpus_size, "validation")
        if n_validation else None
    )
    thresholds: dict[str, float] = {}
    entry_threshold = min(config.training_entry_thresholds)
    if users is not None and len(set(config.training_entry_thresholds)) > 1:
        entry_threshold, thresholds = choose_entry_threshold(
            train_split, users, config.training_entry_thresholds, config.item_item_l2[0], config.item_item_dropout[0]
        )
        tracker.log({f"training_users/{k}": v for k, v in thresholds.items()}, step=0)
    train_split = train_split.subset(np.diff(train_split.indptr) >= entry_threshold)
    if train_split.n_users == 0:
        raise ValueError(f"no training user has {entry_threshold} entries")
    deep_config = model_config.model_copy(update={"item_item": False, "rating_neighbours": 0, "presence_map": False})
    model = Autoencoder(deep_config, nnx.Rngs(config.seed))
    graphdef, params = nnx.split(model)
    tx = make_optimizer(config)
    opt_state = tx.init(params)
    best_params = jax.tree.map(np.array, params)  # host copy: params are donated to each step
    batch_size = min(config.batch_size, train_split.n_users)
    mesh = data_mesh(config.devices, batch_size)
    checkpoints = Checkpoints(Path(checkpoint_dir))
    start, history, best_step, best_ndcg, since_best = 0, [], 0, -math.inf, 0
    resumed = checkpoints.resume({"params": params, "opt": opt_state, "best": params})
    if resumed is not None:
        trees, meta = resumed
        params, opt_state, best_params = trees["params"], trees["opt"], trees["best"]
        start, history = meta["step"], meta["history"]
        best_step, best_ndcg, since_best = meta["best_step"], meta["best_ndcg"], meta["since_best"]
    params, opt_state = replicated(params, mesh), replicated(opt_state, mesh)

    baseline = PopularityEvaluator().evaluate(users)["ndcg@100"] if users else float("nan")
    key = jax.random.key(config.seed)
    loss_settings = LossSettings.of(config)
    stopped_by, step = "max_steps", start
    last: dict[str, float] = {}
    examples, timed = 0, 0.0
    for step in range(start, config.max_steps):
        rows = batch_rows(train_split.n_users, batch_size, config.seed, step)
        rng = np.random.default_rng([config.seed, step, 1])
        batch = make_batch(
            train_split.indptr, train_split.items, train_split.values, train_split.rated, rows, rng,
            (config.dropout_min, config.dropout_max), corpus_size=corpus_size,
        )
        began = time.perf_counter()
        params, opt_state, total, presence, rating, kl = train_step(
            graphdef, params, opt_state, sharded_batch(batch, mesh), jax.random.fold_in(key, step),
            kl_weight_at(step, config), tx=tx, loss=loss_settings,
        )
        total = float(total)
        timed += time.perf_counter() - began
        examples += len(rows)
        if not math.isfinite(total):
            raise NonFiniteLoss(f"loss became {total} at step {step + 1}; no model was saved")
        scale = float(lr_scale(opt_state))
        last = {
            "train/loss": total, "train/presence_loss": float(presence), "train/rating_loss": float(rating),
            **({"train/kl": float(kl)} if model_config.variational else {}),
            "train/log_var_presence": float(params["log_var_presence"][...]),
            "train/log_var_rating": float(params["log_var_rating"][...]),
            "train/lr_scale": scale, "train/examples_per_s": examples / timed if timed else 0.0,
        }
        done = step + 1
        if done % config.eval_every == 0 or done == config.max_steps or scale < config.min_lr_scale:
            validation = {}
            if users is not None:
                nnx.update(model, params)
                validation = validation_metrics(model, users)
                ndcg = validation["val/ndcg@100"]
                if math.isfinite(ndcg) and ndcg > best_ndcg:
                    best_ndcg, best_step, since_best = ndcg, done, 0
                    best_params = jax.tree.map(np.array, params)  # a host copy: params are donated
                else:
                    since_best += 1
            history.append({"step": done, **last, **validation})
            tracker.log({**last, **validation, "val/best_ndcg@100": best_ndcg}, step=done)
        elif done % 10 == 0:
            tracker.log(last, step=done)
        if progress:
            progress(done, config.max_steps, last)
        stop = (
            "plateau" if scale < config.min_lr_scale
            else "early_stopping" if since_best >= config.early_stopping_patience else None
        )
        if done % config.checkpoint_every == 0 and not stop:
            checkpoints.save(
                {"params": params, "opt": opt_state, "best": best_params},
                {"step": done, "history": history, "best_step": best_step, "best_ndcg": best_ndcg,
                 "since_best": since_best},
            )
        if stop:
            stopped_by = stop
            break
    steps = step + 1 if config.max_steps > start else start
    nnx.update(model, best_params if best_step else params)

    item_item: dict[str, float] = {}
    ratings: dict[str, float] = {}
    validation = recorded_validation(history, best_step or steps)
    if (model_config.item_item or model_config.rating_neighbours) and users is None:
        raise ValueError("the closed-form paths are fitted on validation users; the snapshot has none")
    if model_config.item_item:
        fit = fit_item_item(train_split, users, config.item_item_l2, config.item_item_dropout)
        fit = choose_reweighting(
            train_split, users, fit, config.item_item_user_weight_powers, config.item_item_popularity_powers
        )
        model = with_item_item(model, model_config, fit.weights)
        blend = choose_blend(model, users, config.blend_linear_scales, DEFAULT_RATING_WEIGHT)
        item_item = {"l2": fit.l2, "dropout": fit.dropout, "user_weight_power": fit.user_weight_power,
                     "popularity_power": fit.popularity_power,
                     "presence_scale": blend.presence_scale,
                     "linear_scale": blend.linear_scale,
                     "deep_alone_ndcg@100": blend.validation_ndcg["a=1,s=0"],
                     "item_item_alone_ndcg@100": max(fit.validation_ndcg.values())}
        tracker.log({f"item_item/{k}": v for k, v in item_item.items()}, step=steps)
        validation = validation_keys(blend.metrics)
    presence: dict[str, float] = {}
    if model_config.presence_map:
        model, presence_fit = fit_presence_map(model, users)
        presence = presence_fit.describe()
        tracker.log({f"presence/{k}": v for k, v in presence.items()}, step=steps)
    if model_config.rating_neighbours:
        model, ratings = fit_rating_path(model, model_config, train_split, users, config.rating_shrinkages)
        tracker.log({f"ratings/{k}": v for k, v in ratings.items()}, step=steps)
        validation = {**validation, "val/rating_mae": ratings["validation_mae"]}
    by_weight = rating_weight_figures(model, users) if model_config.rating_neighbours else {}
    refit_users = 0
    if config.refit_on_validation and (model_config.item_item or model_config.rating_neighbours):
        everyone = train_split.joined(validation_split)  # all but the test users
        if model_config.item_item:
            model.item_item.value = jnp.asarray(item_item_weights(everyone, corpus_size, fit), jnp.float32)
        if model_config.rating_neighbours:
            refit_rating_path(model, everyone, ratings["shrinkage"])
        refit_users = everyone.n_users
    return TrainResult(
        model=model, steps=steps, stopped_by=stopped_by, best_step=best_step, final=last, validation=validation,
        popularity_ndcg=baseline, examples_per_s=examples / timed if timed else 0.0, resumed_from=start,
        history=history, item_item=item_item, ratings=ratings, presence_map=presence, refit_users=refit_users,
        training_users=train_split.n_users, entry_threshold=entry_threshold, threshold_ndcg=thresholds,
        validation_by_rating_weight=by_weight,
    )


def model_parameters(model: Autoencoder) -> int:
    return parameter_count(model)
