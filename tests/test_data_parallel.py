"""Data-parallel training on 4 CPU devices (a child process: XLA reads the device count at start):
the same losses as one device, and checkpoints that resume on either count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import json, sys, tempfile
    from pathlib import Path
    import jax
    import numpy as np
    from sprout.dataset.snapshot import load_snapshot
    from sprout.malsim.store_loader import load_population
    from sprout.malsim.synthetic_population import synthetic_population
    from sprout.store import Store
    from sprout.training.loop import train
    from sprout.training.presets import get_preset
    from sprout.training.run import build_dataset

    home = Path(tempfile.mkdtemp())
    population = synthetic_population(300, seed=4, n_anime=200)
    with Store.open(home / "sprout.duckdb") as store:
        load_population(store, population, population.now)
    tiny = get_preset("tiny")
    build_dataset(home, home / "sprout.duckdb", tiny, population.now.date())
    snapshot = load_snapshot(next(p for p in (home / "snapshots").iterdir() if p.is_dir()))
    model = tiny.model.model_copy(update={"item_item": False})
    base = tiny.train.model_copy(update={"max_steps": 40, "eval_every": 20, "checkpoint_every": 20, "batch_size": 32})

    def losses(result):
        return [h["train/loss"] for h in result.history]

    one = train(snapshot, model, base, home / "one")
    four = train(snapshot, model, base.model_copy(update={"devices": 4}), home / "four")
    # A 4-device run stopped at step 20 resumes on 1 device, and the other way round.
    train(snapshot, model, base.model_copy(update={"devices": 4, "max_steps": 20}), home / "mixed-a")
    train(snapshot, model, base.model_copy(update={"devices": 1, "max_steps": 20}), home / "mixed-b")
    a = train(snapshot, model, base, home / "mixed-a")
    b = train(snapshot, model, base.model_copy(update={"devices": 4}), home / "mixed-b")
    print(json.dumps({"devices": len(jax.devices()), "one": losses(one), "four": losses(four),
                      "resumed": [a.resumed_from, b.resumed_from], "a": losses(a), "b": losses(b),
                      "ndcg": [one.validation["val/ndcg@100"], four.validation["val/ndcg@100"]]}))
    """
)


def test_four_devices_train_like_one_and_checkpoints_move_between_them():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["devices"] == 4
    assert len(found["one"]) == len(found["four"]) == 2
    for one, four in zip(found["one"], found["four"], strict=True):
        assert abs(one - four) <= 1e-3 * abs(one), (found["one"], found["four"])
    assert abs(found["ndcg"][0] - found["ndcg"][1]) < 1e-3
    assert found["resumed"] == [20, 20]
    for resumed in (found["a"], found["b"]):
        assert abs(resumed[-1] - found["one"][-1]) <= 1e-3 * abs(found["one"][-1])
