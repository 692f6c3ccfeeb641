"""Training on simulated data: the loss falls, validation beats popularity, runs resume, W&B
records what it should, broken runs save nothing."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sprout.dataset.snapshot import load_snapshot
from sprout.malsim.store_loader import load_population
from sprout.malsim.synthetic_population import synthetic_population
from sprout.model.autoencoder import parameter_count
from sprout.training.presets import get_preset
from sprout.store import Store
from sprout.model.artifact import read_model_artifact
from sprout.training.config import TrainConfig
from sprout.training.loop import NonFiniteLoss, train
from sprout.training.run import build_dataset, train_model
from wandb_reader import read_offline_run

TINY = get_preset("tiny")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A SPROUT_HOME with a simulated population in DuckDB and one tiny snapshot built."""
    home = tmp_path_factory.mktemp("home")
    population = synthetic_population(600, seed=3, n_anime=400)
    with Store.open(home / "sprout.duckdb") as store:
        load_population(store, population, population.now)
    build_dataset(home, home / "sprout.duckdb", TINY, population.now.date())
    return home


@pytest.fixture(scope="module")
def trained(home, tmp_path_factory):
    os.environ.setdefault("WANDB_MODE", "offline")
    return train_model(home, TINY, track=True)


def test_loss_falls_and_validation_beats_popularity(trained):
    metrics = trained
    assert metrics["steps"] == TINY.train.max_steps
    assert metrics["validation"]["val/ndcg@100"] > metrics["validation_popularity_ndcg@100"] + 0.03
    assert metrics["final"]["train/loss"] < 3.0  # starts near log(corpus) + rating loss ≈ 6


def test_history_shows_the_loss_falling(home, trained):
    run_dir = next((home / "wandb" / "wandb").glob(f"*{trained['wandb_run_id']}"))
    run = read_offline_run(run_dir)
    losses = [row["train/loss"] for row in run["history"] if "train/loss" in row]
    assert losses[-1] < losses[0] * 0.7
    logged = set().union(*run["history"])
    for key in ("train/presence_loss", "train/rating_loss", "train/log_var_presence", "train/log_var_rating",
                "train/lr_scale", "train/examples_per_s", "val/recall@20", "val/ndcg@100", "item_item/linear_scale"):
        assert key in logged, key
    assert run["config"]["model"]["corpus_size"] == TINY.model.corpus_size
    assert run["config"]["train"]["learning_rate"] == TINY.train.learning_rate
    assert run["config"]["snapshot_id"] == trained["snapshot_id"]
    assert run["summary"]["model_version"] == trained["model_version"]


def test_artifact_is_safe_and_complete(trained):
    model, document = read_model_artifact(Path(trained["path"]))
    assert parameter_count(model) == trained["parameters"] == document["parameters"]
    assert document["dataset"]["snapshot_id"] == trained["snapshot_id"]
    assert document["features"]["dropped_fill_sigmas"] == 1.5
    assert document["metrics"]["validation"]["val/ndcg@100"] == trained["validation"]["val/ndcg@100"]
    assert json.loads((Path(trained["path"]) / "corpus.json").read_text())
    weights = Path(trained["path"]) / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="hash"):
        read_model_artifact(Path(trained["path"]))


def test_training_is_reproducible(home, tmp_path):
    snapshot = load_snapshot(next(p for p in (home / "snapshots").iterdir() if p.is_dir()))
    config = TrainConfig.tiny().model_copy(update={"max_steps": 15, "eval_every": 15})
    first = train(snapshot, TINY.model, config, tmp_path / "a")
    second = train(snapshot, TINY.model, config, tmp_path / "b")
    assert first.final["train/loss"] == second.final["train/loss"]


def test_non_finite_loss_stops_with_a_clear_error_and_saves_nothing(home, tmp_path):
    snapshot = load_snapshot(next(p for p in (home / "snapshots").iterdir() if p.is_dir()))
    broken = dataclasses.replace(snapshot.split("train"), values=np.full_like(snapshot.split("train").values, np.nan))
    snapshot = dataclasses.replace(snapshot, splits={**snapshot.splits, "train": broken})
    with pytest.raises(NonFiniteLoss, match="step 1"):
        train(snapshot, TINY.model, TINY.train, tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()


def test_killed_training_resumes_from_its_checkpoint(home, tmp_path):
    env = {**os.environ, "SPROUT_HOME": str(home), "WANDB_MODE": "offline"}
    command = [sys.executable, "-m", "sprout.cli", "train", "--config", "tiny", "--json", "--no-wandb"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    checkpoint = None
    while time.monotonic() < deadline and process.poll() is None:
        found = list((home / "checkpoints").glob("*/latest/meta.json"))
        if found:
            checkpoint = found[0]
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert checkpoint is not None, "no checkpoint was written before the kill"
    step = json.loads(checkpoint.read_text())["meta"]["step"]
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["resumed_from"] >= step > 0
    assert summary["steps"] == TINY.train.max_steps
    assert not list((home / "checkpoints").glob("*/latest"))  # finished runs leave no checkpoint


def test_unknown_config_name_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sprout.cli", "train", "--config", "huge"], capture_output=True, text=True,
        env={**os.environ, "SPROUT_HOME": str(tmp_path)},
    )
    assert result.returncode == 2 and "tiny" in result.stderr


def test_training_time_ndcg_is_the_evaluators_ndcg(home, tmp_path):
    from sprout.evaluation.held_out import held_out_users
    from sprout.evaluation.model_scores import ModelEvaluator

    snapshot = load_snapshot(next(p for p in (home / "snapshots").iterdir() if p.is_dir()))
    # without the final refit: a refitted model has seen the validation users
    config = TINY.train.model_copy(update={"max_steps": 100, "refit_on_validation": False})
    result = train(snapshot, TINY.model, config, tmp_path)
    metrics = ModelEvaluator(result.model, latency_runs=1).evaluate(held_out_users(snapshot, "validation"))
    assert metrics["ndcg@100"] == pytest.approx(result.validation["val/ndcg@100"], abs=1e-9)
    assert result.item_item["linear_scale"] in TINY.train.blend_linear_scales


def test_the_best_validation_step_is_restored_after_worse_ones(home, tmp_path, monkeypatch):
    import sprout.training.loop as loop

    snapshot = load_snapshot(next(p for p in (home / "snapshots").iterdir() if p.is_dir()))
    scripted = iter([0.30, 0.50, 0.40, 0.20, 0.10, 0.05, 0.01])
    real = loop.validation_metrics
    monkeypatch.setattr(loop, "validation_metrics", lambda model, users: {"val/ndcg@100": next(scripted, 0.0)})
    config = TINY.train.model_copy(update={"eval_every": 20, "max_steps": 300, "early_stopping_patience": 3})
    deep = TINY.model.model_copy(update={"item_item": False})
    result = train(snapshot, deep, config, tmp_path / "a")
    assert result.best_step == 40 and result.stopped_by == "early_stopping" and result.steps == 100
    monkeypatch.setattr(loop, "validation_metrics", real)
    reference = train(snapshot, deep, config.model_copy(update={"max_steps": 40, "eval_every": 40}), tmp_path / "b")
    np.testing.assert_array_equal(
        np.asarray(result.model.encoder_input.kernel[...]), np.asarray(reference.model.encoder_input.kernel[...])
    )


def test_the_final_model_is_refitted_on_training_and_validation_users_never_test_users(home, tmp_path):
    """Every choice is made on validation users, then B and the rating path are fitted again on
    training + validation users; the test users, who score the model, are in neither."""
    from sprout.dataset.gram import gram_matrix
    from sprout.evaluation.held_out import item_popularity
    from sprout.model.item_item import edlae_weights, popularity_discount
    from sprout.model.rating_path import RatingPath
    from sprout.training.rating_fit import fitted_parts

    snapshot = load_snapshot(next(p for p in (home / "snapshots").iterdir() if p.is_dir()))
    config = TrainConfig.tiny().model_copy(update={"max_steps": 20, "eval_every": 20})
    result = train(snapshot, TINY.model, config, tmp_path / "ckpt")
    train_users = snapshot.split("train").subset(np.diff(snapshot.split("train").indptr) >= result.entry_threshold)
    everyone = train_users.joined(snapshot.split("validation"))
    assert result.refit_users == everyone.n_users == result.training_users + snapshot.split("validation").n_users
    assert not set(everyone.usernames) & set(snapshot.split("test").usernames)
    corpus = TINY.model.corpus_size
    chosen = (result.item_item["l2"], result.item_item["dropout"])
    power, discount = result.item_item["user_weight_power"], result.item_item["popularity_power"]
    assert power in TrainConfig.tiny().item_item_user_weight_powers
    assert discount in TrainConfig.tiny().item_item_popularity_powers

    def fitted_on(split):
        weights = edlae_weights(gram_matrix(split, corpus, power), *chosen)
        return popularity_discount(weights, item_popularity(split, corpus), split.n_users, discount)

    np.testing.assert_allclose(np.asarray(result.model.item_item[...]), fitted_on(everyone), rtol=1e-5, atol=1e-6)
    with_test = fitted_on(everyone.joined(snapshot.split("test")))
    assert not np.allclose(np.asarray(result.model.item_item[...]), with_test, atol=1e-6)
    biases, neighbours = fitted_parts(everyone, corpus, TINY.model.rating_neighbours, (result.ratings["shrinkage"],))
    path = RatingPath.of(result.model)
    np.testing.assert_allclose(path.biases.item_bias, biases.item_bias, rtol=1e-5, atol=1e-6)
    assert np.array_equal(path.neighbours.ids, neighbours[result.ratings["shrinkage"]].ids)
    # the validation figures were measured before the refit, on users the model had not seen
    assert result.ratings["validation_mae"] <= result.ratings["validation_mae_neighbours"] + 1e-4
    assert set(result.validation_by_rating_weight) == {"1", "0.5", "0.3", "0"}
    at_one = result.validation_by_rating_weight["1"]["ndcg@100"]
    assert at_one == pytest.approx(result.validation["val/ndcg@100"], abs=1e-6)  # the same users, unrefitted


def test_no_refit_keeps_the_training_users_fit(home, tmp_path):
    snapshot = load_snapshot(next(p for p in (home / "snapshots").iterdir() if p.is_dir()))
    config = TrainConfig.tiny().model_copy(update={"max_steps": 20, "eval_every": 20, "refit_on_validation": False,
                                                   "training_entry_thresholds": (1,)})
    result = train(snapshot, TINY.model, config, tmp_path / "ckpt")
    assert result.refit_users == 0 and result.entry_threshold == 1
    assert result.training_users == snapshot.split("train").n_users


def test_the_presence_map_is_fitted_on_validation_users_and_keeps_the_ranking(home, tmp_path):
    """The recipe's presence map: the same ranking as the blend it maps, and a better next-show
    likelihood on the validation users it was fitted on than the blend's own softmax."""
    from sprout.evaluation.calibration import presence_calibration
    from sprout.evaluation.evaluator import ranking_metrics
    from sprout.evaluation.held_out import held_out_users
    from sprout.evaluation.model_scores import blended_logits, model_scores

    snapshot = load_snapshot(next(p for p in (home / "snapshots").iterdir() if p.is_dir()))
    config = TINY.train.model_copy(update={"max_steps": 100, "refit_on_validation": False})
    result = train(snapshot, TINY.model, config, tmp_path)
    assert result.model.config.presence_map and result.presence_map["presence_power"] > 0
    users = held_out_users(snapshot, "validation")
    mapped = model_scores(result.model, users, ratings=False).log_presence  # [U, C]
    blended = blended_logits(result.model, users)  # [U, C] before the map
    assert ranking_metrics(mapped, users) == pytest.approx(ranking_metrics(blended, users), abs=1e-6)
    fitted = presence_calibration(mapped, users.fold_in, users.held_out)
    assert fitted["next_show_nll"] == pytest.approx(result.presence_map["validation_next_show_nll"], abs=1e-3)
    assert fitted["next_show_nll"] < presence_calibration(blended, users.fold_in, users.held_out)["next_show_nll"]
