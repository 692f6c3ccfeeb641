"""Sharding the held-out batch over several XLA CPU devices gives the unsharded results.

The device count of the CPU platform is fixed when JAX starts, so the sharded run happens in a
fresh Python process started with XLA_FLAGS=--xla_force_host_platform_device_count=2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from inference_helpers import build_artifacts

from sprout.inference.network import DEVICES_ENV, resolve_device_count

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    import numpy as np
    from sprout.inference.engine import Recommender
    from sprout.inference.profile import prepare_profile
    from sprout.inference.requests import ExplainRequest, ProfileEntry

    folder = sys.argv[1]
    single = Recommender.load(folder, devices=1, warmup=False)
    sharded = Recommender.load(folder, warmup=True)  # device count from SPROUT_INFERENCE_DEVICES; every pass compiles
    profile = [ProfileEntry(anime_id=i, score=(3 * i) % 11) for i in range(101, 128)]  # 27 of the 39 corpus shows
    prepared = prepare_profile(profile, single.corpus)
    pre, linear = single.network.encode(prepared.items, prepared.values)
    columns = np.arange(20, dtype=np.int32)
    whole = single.network.outputs(pre[None], linear[None])[0][0]  # [C] log presence of the whole profile
    one = single.network.held_out(pre, linear, whole, prepared.items, prepared.values, columns)
    two = sharded.network.held_out(pre, linear, whole, prepared.items, prepared.values, columns)
    request = ExplainRequest(profile=profile, top_k=10, rating_weight=0.5, hide_unwatched_sequels=False)
    print(json.dumps({
        "jax_devices": jax.device_count(),
        "sharded_devices": sharded.network.device_count,
        "row_chunks": list(sharded.network.row_chunks),
        "held_out_close": all(np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(one, two)),
        "explain_single": single.explain(request).model_dump(),
        "explain_sharded": sharded.explain(request).model_dump(),
    }))
    """
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_artifacts(tmp_path_factory.mktemp("sharding"))[0]


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == pytest.approx(b, rel=1e-4, abs=1e-7)
    return a == b


def test_sharded_hold_out_equals_unsharded(folder):
    env = os.environ | {"XLA_FLAGS": "--xla_force_host_platform_device_count=2", DEVICES_ENV: "2"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(folder)], check=False, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["jax_devices"] == 2 and report["sharded_devices"] == 2
    assert all(size % 2 == 0 for size in report["row_chunks"])
    assert report["held_out_close"]
    assert _close(report["explain_single"], report["explain_sharded"])
    assert report["explain_single"]["recommendations"][0]["contributors"]


def test_device_count_comes_from_the_argument_or_the_environment(monkeypatch):
    monkeypatch.setenv(DEVICES_ENV, "1")
    assert resolve_device_count(None) == 1
    with pytest.raises(ValueError, match="xla_force_host_platform_device_count"):
        resolve_device_count(64)
    monkeypatch.setenv(DEVICES_ENV, "64")
    with pytest.raises(ValueError, match="asked for 64"):
        resolve_device_count(None)
    monkeypatch.delenv(DEVICES_ENV)
    assert resolve_device_count(None) >= 1
