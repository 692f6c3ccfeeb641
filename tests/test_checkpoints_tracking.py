"""Safe checkpoints and the offline W&B run."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sprout.training.checkpoints import CheckpointError, Checkpoints, load_pytree
from sprout.training.tracking import WandbTracker, without_secrets
from wandb_reader import read_offline_run


def optimiser():
    return optax.chain(optax.adam(1e-3), optax.contrib.reduce_on_plateau(patience=5))


def test_checkpoint_round_trip_restores_params_and_optimiser_state(tmp_path):
    params = {"w": jnp.arange(6.0).reshape(3, 2), "b": jnp.ones(2)}
    tx = optimiser()
    state = tx.init(params)
    grads = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    _, state = tx.update(grads, state, params, value=jnp.asarray(1.0))
    checkpoints = Checkpoints(tmp_path / "ckpt")
    checkpoints.save({"params": params, "opt": state}, {"step": 7})
    fresh = {"params": {"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)}, "opt": tx.init(params)}
    trees, meta = checkpoints.load(fresh)
    assert meta == {"step": 7}
    np.testing.assert_array_equal(trees["params"]["w"], params["w"])
    restored_mu = trees["opt"][0][0].mu["w"]
    np.testing.assert_array_equal(restored_mu, state[0][0].mu["w"])
    assert float(trees["opt"][1].best_value) == float(state[1].best_value) == 1.0


def test_checkpoint_refuses_a_different_structure(tmp_path):
    checkpoints = Checkpoints(tmp_path)
    checkpoints.save({"params": {"w": jnp.ones((2, 2))}}, {})
    with pytest.raises(CheckpointError, match="shape"):
        checkpoints.load({"params": {"w": jnp.ones((3, 2))}})
    with pytest.raises(CheckpointError):
        Checkpoints(tmp_path / "missing").load({"params": {}})


def test_saving_again_replaces_the_checkpoint_whole_and_keeps_one_fallback(tmp_path):
    checkpoints = Checkpoints(tmp_path)
    checkpoints.save({"p": jnp.zeros(2)}, {"step": 1})
    checkpoints.save({"p": jnp.ones(2)}, {"step": 2})
    checkpoints.save({"p": jnp.full(2, 3.0)}, {"step": 3})
    trees, meta = checkpoints.load({"p": jnp.zeros(2)})
    assert meta["step"] == 3 and float(trees["p"].sum()) == 6.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "latest.previous"]
    _, previous_meta = load_pytree(checkpoints.previous, {"p": jnp.zeros(2)})
    assert previous_meta["step"] == 2


def test_offline_run_records_config_metrics_and_summary_without_secrets(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    tracker = WandbTracker("sprout-test", {"lr": 3e-4, "mal_client_id": "hush", "model": {"api_key": "x", "width": 8}}, tmp_path)
    tracker.log({"loss": 2.5}, step=1)
    tracker.log({"loss": 1.5}, step=2)
    tracker.summary({"final_loss": 1.5})
    tracker.finish()
    run = read_offline_run(tracker.run_dir)
    assert run["config"]["lr"] == 3e-4 and run["config"]["model"] == {"width": 8}
    assert "mal_client_id" not in run["config"]
    assert [row["loss"] for row in run["history"]] == [2.5, 1.5]
    assert run["summary"]["final_loss"] == 1.5
    assert b"hush" not in next(tracker.run_dir.glob("run-*.wandb")).read_bytes()


def test_without_secrets_is_recursive():
    assert without_secrets({"a": 1, "token": 2, "nested": {"password": 3, "b": 4}}) == {"a": 1, "nested": {"b": 4}}
