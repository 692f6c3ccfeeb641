"""Saving and loading model weights as plain ``.npz`` arrays (no pickle) with the config as JSON.

Keys are the model's flattened NNX state paths joined by ``/`` (``presence_head/output/kernel``);
the config travels in the same file under ``CONFIG_KEY`` so weights never meet the wrong shape.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from sprout.model.autoencoder import Autoencoder, abstract_autoencoder
from sprout.model.config import ModelConfig

CONFIG_KEY = "__config__"
# numpy has no bfloat16 of its own; such weights are stored widened and narrowed again on load.
_STORABLE_DTYPES = {np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)}


def _path_key(path: tuple) -> str:
    return "/".join(str(part) for part in path)


def flat_weights(model: Autoencoder) -> dict[str, np.ndarray]:
    """Every variable of the model as a host numpy array keyed by its state path."""
    state = nnx.state(model)
    arrays = {}
    for path, variable in nnx.to_flat_state(state):
        array = np.asarray(variable[...])
        arrays[_path_key(path)] = array if array.dtype in _STORABLE_DTYPES else array.astype(np.float32)
    return arrays


def save_weights(model: Autoencoder, path: str | Path) -> Path:
    """Write the model's weights and config to ``path`` (an ``.npz`` file), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = flat_weights(model)
    arrays[CONFIG_KEY] = np.array(model.config.model_dump_json())
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_config(path: str | Path) -> ModelConfig:
    """The config stored alongside the weights in ``path``."""
    with np.load(path, allow_pickle=False) as data:
        return ModelConfig.model_validate_json(str(data[CONFIG_KEY]))


def load_weights(path: str | Path) -> Autoencoder:
    """Rebuild the model saved at ``path``; raises ``ValueError`` on missing, extra or misshapen arrays."""
    with np.load(path, allow_pickle=False) as data:
        config = ModelConfig.model_validate_json(str(data[CONFIG_KEY]))
        stored = {key: data[key] for key in data.files if key != CONFIG_KEY}

    graphdef, state = nnx.split(abstract_autoencoder(config))
    expected = {_path_key(path): variable for path, variable in nnx.to_flat_state(state)}
    missing, extra = sorted(expected.keys() - stored.keys()), sorted(stored.keys() - expected.keys())
    if missing or extra:
        raise ValueError(f"weights do not match the config: missing {missing}, unexpected {extra}")
    for key, variable in expected.items():
        if stored[key].shape != tuple(variable.shape):
            raise ValueError(f"{key}: stored shape {stored[key].shape}, config expects {tuple(variable.shape)}")

    flat = [
        (path, variable.replace(jnp.asarray(stored[_path_key(path)], dtype=variable.dtype)))
        for path, variable in nnx.to_flat_state(state)
    ]
    return nnx.merge(graphdef, nnx.from_flat_state(flat))
