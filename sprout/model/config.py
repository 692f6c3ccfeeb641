"""Sizes and numeric types of the autoencoder; every default matches the production model."""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp
from pydantic import BaseModel, ConfigDict, Field

DTypeName = Literal["float32", "bfloat16", "float16"]


class ModelConfig(BaseModel):
    """Shape of the two-head denoising autoencoder.

    The input is ``2 * corpus_size`` wide: a presence flag and a normalised rating per show.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    corpus_size: int = Field(6000, gt=0, description="Shows the model knows about (input and output width).")
    encoder_hidden: int = Field(2048, gt=0, description="Width of the first (sparse-input) layer.")
    bottleneck: int = Field(512, gt=0, description="Width of the linear bottleneck.")
    decoder_hidden: tuple[int, ...] = Field(
        (1024, 2048), min_length=1, description="Hidden widths of each decoder head, bottleneck side first."
    )
    item_item: bool = Field(
        False,
        description="A full-rank item-item path (C×C, zero diagonal, fitted in closed form) beside the deep "
        "presence logits; presence logits = presence_scale·deep + linear_scale·(x B).",
    )
    presence_map: bool = Field(
        False,
        description="Presence logits pass through F(l) = power·log softplus(l − offset) (both fitted on validation "
        "users) before the softmax, so that its probabilities are calibrated; increasing, so rankings keep.",
    )
    rating_neighbours: int = Field(
        0, ge=0,
        description="Neighbours kept per show by the rating path (a bias baseline with an item-neighbourhood "
        "correction blended with the rating head, fitted in closed form; 0: the rating head alone).",
    )
    rating_k: int = Field(20, ge=1, description="Neighbours a rating prediction averages over (the rating path's k).")
    bottleneck_noise: float = Field(0.1, ge=0, description="Std of the Gaussian noise added to the bottleneck in training.")
    variational: bool = Field(
        False,
        description="A Mult-VAE bottleneck: the encoder gives a mean and a log variance, training samples from "
        "them and adds a KL term (TrainConfig.kl_weight); serving uses the mean. Replaces bottleneck_noise.",
    )
    dtype: DTypeName = Field("float32", description="Computation dtype.")
    param_dtype: DTypeName = Field("float32", description="Storage dtype of the weights.")

    @property
    def input_size(self) -> int:
        return 2 * self.corpus_size

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    @property
    def weight_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.param_dtype)

    @classmethod
    def tiny(cls, **overrides) -> ModelConfig:
        """A few-thousand-parameter model for tests and smoke runs."""
        sizes = dict(corpus_size=200, encoder_hidden=64, bottleneck=32, decoder_hidden=(48, 64))
        return cls(**(sizes | overrides))
