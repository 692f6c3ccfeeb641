"""Two-head denoising autoencoder over sparse user profiles (Flax NNX).

Encoder: ``2C -> encoder_hidden -> swish -> bottleneck`` (linear bottleneck, noise in training; with
``config.variational`` a mean and a log variance, sampled in training and the mean otherwise).
Decoder: two heads with no shared weights, each ``bottleneck -> decoder_hidden... (swish) -> C``:
presence logits (softmax over the corpus) and predicted normalised ratings.

With ``config.item_item`` the presence logits also get a full-rank linear path (`item_item`):
``presence_scale * deep + linear_scale * (x B)`` with ``x`` the binary profile and ``B [C, C]``
fitted in closed form (zero diagonal). With ``config.presence_map`` the blended logits then pass
through the calibration map of `sprout.model.presence_map`. ``B``, the two scales and the map's
three numbers are `Fitted` variables: set by the training recipe outside gradient descent,
saved with the weights like any other.

The forward pass is split at the first layer's pre-activation so that serving can hold profile
entries out as rank-1 updates and run only the rest of the network per held-out entry.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from sprout.model.config import ModelConfig
from sprout.model.first_layer import dense_profile, entry_rows, first_layer_dense, first_layer_sparse
from sprout.model.presence_map import mapped_logits


def _linear(config: ModelConfig, in_features: int, out_features: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(
        in_features, out_features, dtype=config.compute_dtype, param_dtype=config.weight_dtype, rngs=rngs
    )


class DecoderHead(nnx.Module):
    """``bottleneck -> hidden (swish) ... -> corpus_size`` with a linear output layer."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        widths = (config.bottleneck, *config.decoder_hidden)
        self.hidden = nnx.List(
            [_linear(config, w_in, w_out, rngs) for w_in, w_out in zip(widths[:-1], widths[1:], strict=True)]
        )
        self.output = _linear(config, widths[-1], config.corpus_size, rngs)

    def features(self, z: jax.Array) -> jax.Array:
        """z [B, bottleneck] -> last hidden activation [B, decoder_hidden[-1]]."""
        h = z
        for layer in self.hidden:
            h = nnx.swish(layer(h))
        return h

    def __call__(self, z: jax.Array, columns: jax.Array | None = None) -> jax.Array:
        """z [B, bottleneck] -> [B, C], or [B, K] for ``columns`` [K] (only those outputs are computed)."""
        h = self.features(z)  # [B, D]
        if columns is None:
            return self.output(h)
        kernel = self.output.kernel[...][:, columns].astype(h.dtype)  # [D, K]
        bias = self.output.bias[...][columns].astype(h.dtype)  # [K]
        return h @ kernel + bias


class Fitted(nnx.Variable):
    """A model variable set outside gradient descent (closed form, or chosen on validation users)."""


# Above this many gathered scalars (B·L·C) the linear path multiplies the dense profile instead.
GATHER_LIMIT = 1 << 25


class Autoencoder(nnx.Module):
    """Denoising autoencoder with presence and rating heads and learnable uncertainty weights."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        self.config = config
        self.encoder_input = _linear(config, config.input_size, config.encoder_hidden, rngs)
        bottleneck_outputs = 2 * config.bottleneck if config.variational else config.bottleneck  # (mean, log var)
        self.encoder_bottleneck = _linear(config, config.encoder_hidden, bottleneck_outputs, rngs)
        self.presence_head = DecoderHead(config, rngs)
        self.rating_head = DecoderHead(config, rngs)
        # Homoscedastic uncertainty weights s_p, s_r (log variances); the loss is
        # exp(-s_p) * L_p + s_p + exp(-s_r) * L_r + s_r, so they start at 0 (weight 1).
        self.log_var_presence = nnx.Param(jnp.zeros((), config.weight_dtype))
        self.log_var_rating = nnx.Param(jnp.zeros((), config.weight_dtype))
        if config.item_item:
            size = config.corpus_size
            self.item_item = Fitted(jnp.zeros((size, size), jnp.float32))  # B [C, C], zero diagonal
            self.presence_scale = Fitted(jnp.ones((), jnp.float32))
            self.linear_scale = Fitted(jnp.zeros((), jnp.float32))
        if config.presence_map:  # F(l) = power · log softplus(scale · l - offset)
            self.presence_map = Fitted(jnp.asarray([1.0, 1.0, 0.0], jnp.float32))  # scale, power, offset
        if config.rating_neighbours:  # the rating path (`sprout.model.rating_path`), read on the host
            size, keep = config.corpus_size, config.rating_neighbours
            self.rating_global_mean = Fitted(jnp.zeros((), jnp.float32))
            self.rating_item_bias = Fitted(jnp.zeros((size,), jnp.float32))
            self.rating_user_reg = Fitted(jnp.ones((), jnp.float32))
            self.neighbour_ids = Fitted(jnp.full((size, keep), -1, jnp.int32))
            self.neighbour_similarities = Fitted(jnp.zeros((size, keep), jnp.float32))
            self.rating_blend = Fitted(jnp.asarray([0.0, 1.0, 0.0], jnp.float32))  # β0, β1, β2
            self.like_curve = Fitted(jnp.asarray([1.0, 0.0], jnp.float32))  # slope, offset of P(like)

    # --- the full-rank item-item path ----------------------------------------------------

    def linear_scores(self, items: jax.Array, mask: jax.Array) -> jax.Array:
        """x B for sparse binary profiles items/mask [B, L] -> [B, C] float32 (zeros without the path).

        Small batches (serving) sum the profile's rows of B; large ones multiply the dense profile.
        """
        size = self.config.corpus_size
        if not self.config.item_item:
            return jnp.zeros((items.shape[0], size), jnp.float32)
        weights = self.item_item[...]  # [C, C]
        if items.shape[0] * items.shape[1] * size <= GATHER_LIMIT:
            rows = jnp.where(mask[..., None], weights[items], 0.0)  # [B, L, C]
            return rows.sum(axis=1)
        present = jnp.zeros((items.shape[0], size), jnp.float32)
        present = present.at[jnp.arange(items.shape[0])[:, None], items].max(mask.astype(jnp.float32))  # [B, C]
        return present @ weights

    def linear_rows(self, items: jax.Array) -> jax.Array:
        """Rows of B of ``items`` [R] -> [R, C]: subtracting row j from x B holds entry j out."""
        return self.item_item[...][items]

    def blend(self, deep_logits: jax.Array, linear: jax.Array) -> jax.Array:
        """The two presence paths blended, before the presence map: deep [B, C] and x B [B, C] -> [B, C]."""
        if not self.config.item_item:
            return deep_logits
        deep_logits = deep_logits.astype(jnp.float32)
        return self.presence_scale[...] * deep_logits + self.linear_scale[...] * linear

    def calibrated(self, blended: jax.Array) -> jax.Array:
        """The presence map applied to blended logits [..., C] (the identity without one)."""
        if not self.config.presence_map:
            return blended
        scale, power, offset = self.presence_map[...]
        return mapped_logits(blended.astype(jnp.float32), scale, power, offset)

    def presence_logits(self, deep_logits: jax.Array, linear: jax.Array) -> jax.Array:
        """Presence logits of the whole model (their softmax is the presence probability):
        deep [B, C] and x B [B, C] -> [B, C]."""
        return self.calibrated(self.blend(deep_logits, linear))

    # --- encoder, split at the first layer's pre-activation -------------------------------

    def _first_layer_weights(self) -> tuple[jax.Array, jax.Array]:
        dtype = self.config.compute_dtype
        return self.encoder_input.kernel[...].astype(dtype), self.encoder_input.bias[...].astype(dtype)

    def preactivation(self, items: jax.Array, values: jax.Array, mask: jax.Array) -> jax.Array:
        """First layer before swish, from a sparse profile: items/values/mask [B, L] -> [B, H]."""
        kernel, bias = self._first_layer_weights()
        return first_layer_sparse(kernel, bias, items, values.astype(kernel.dtype), mask)

    def preactivation_dense(self, x: jax.Array) -> jax.Array:
        """First layer before swish, from the dense input x [B, 2C] -> [B, H] (reference path)."""
        kernel, bias = self._first_layer_weights()
        return first_layer_dense(kernel, bias, x)

    def entry_contributions(self, items: jax.Array, values: jax.Array, mask: jax.Array) -> jax.Array:
        """Each entry's share of the pre-activation: [B, L] -> [B, L, H]; ``pre - share[:, j]`` holds j out."""
        kernel, _ = self._first_layer_weights()
        return entry_rows(kernel, items, values.astype(kernel.dtype), mask)

    def bottleneck_distribution(self, pre: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        """pre [B, H] -> (mean [B, Z], log variance [B, Z] with ``config.variational``, else None)."""
        out = self.encoder_bottleneck(nnx.swish(pre))  # [B, Z] or [B, 2Z]
        if not self.config.variational:
            return out, None
        mean, log_var = jnp.split(out, 2, axis=-1)
        return mean, log_var

    def sample_bottleneck(
        self, mean: jax.Array, log_var: jax.Array | None, *, train: bool = False, noise_key: jax.Array | None = None
    ) -> jax.Array:
        """z [B, Z]: the mean, plus N(0, 1) noise in training, scaled by exp(log_var / 2) when
        variational and by ``bottleneck_noise`` otherwise."""
        scale = self.config.bottleneck_noise if log_var is None else jnp.exp(0.5 * log_var)
        if not train or (log_var is None and self.config.bottleneck_noise == 0):
            return mean
        if noise_key is None:
            raise ValueError("training needs a noise_key for the bottleneck noise")
        return mean + scale * jax.random.normal(noise_key, mean.shape, mean.dtype)

    def bottleneck_from_preactivation(
        self, pre: jax.Array, *, train: bool = False, noise_key: jax.Array | None = None
    ) -> jax.Array:
        """pre [B, H] -> bottleneck z [B, bottleneck] (see `sample_bottleneck`)."""
        return self.sample_bottleneck(*self.bottleneck_distribution(pre), train=train, noise_key=noise_key)

    def encode(
        self, items: jax.Array, values: jax.Array, mask: jax.Array, *, train: bool = False,
        noise_key: jax.Array | None = None,
    ) -> jax.Array:
        """Sparse profile [B, L] -> bottleneck z [B, bottleneck]."""
        pre = self.preactivation(items, values, mask)
        return self.bottleneck_from_preactivation(pre, train=train, noise_key=noise_key)

    # --- decoder -------------------------------------------------------------------------

    def decode_presence(self, z: jax.Array) -> jax.Array:
        """z [B, bottleneck] -> presence logits [B, C] (softmax over the corpus gives probabilities)."""
        return self.presence_head(z)

    def decode_ratings(self, z: jax.Array, columns: jax.Array | None = None) -> jax.Array:
        """z [B, bottleneck] -> predicted normalised ratings [B, C], or [B, K] for ``columns`` [K]."""
        return self.rating_head(z, columns)

    def decode(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """z [B, bottleneck] -> (presence logits [B, C], ratings [B, C])."""
        return self.decode_presence(z), self.decode_ratings(z)

    def outputs_from_preactivation(
        self, pre: jax.Array, *, train: bool = False, noise_key: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """Everything after the first layer: pre [B, H] -> (presence logits [B, C], ratings [B, C])."""
        return self.decode(self.bottleneck_from_preactivation(pre, train=train, noise_key=noise_key))

    # --- whole network -------------------------------------------------------------------

    def __call__(
        self, items: jax.Array, values: jax.Array, mask: jax.Array, *, train: bool = False,
        noise_key: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Sparse profile items/values/mask [B, L] -> (presence logits [B, C], ratings [B, C]).

        Presence logits include the item-item path when the model has one.
        """
        pre = self.preactivation(items, values, mask)
        logits, ratings = self.outputs_from_preactivation(pre, train=train, noise_key=noise_key)
        return self.presence_logits(logits, self.linear_scores(items, mask)), ratings

    def forward_dense(
        self, x: jax.Array, *, train: bool = False, noise_key: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """Dense input x [B, 2C] -> (presence logits [B, C], ratings [B, C]); reference for tests."""
        logits, ratings = self.outputs_from_preactivation(self.preactivation_dense(x), train=train, noise_key=noise_key)
        if self.config.item_item:
            present = x[:, : self.config.corpus_size].astype(jnp.float32)  # [B, C]
            logits = self.blend(logits, present @ self.item_item[...])
        return self.calibrated(logits), ratings

    def to_dense(self, items: jax.Array, values: jax.Array, mask: jax.Array) -> jax.Array:
        """Sparse profile [B, L] -> the dense input [B, 2C] it stands for."""
        return dense_profile(items, values.astype(self.config.compute_dtype), mask, self.config.corpus_size)


def parameter_count(model: nnx.Module) -> int:
    """Number of scalars in the model's ``nnx.Param`` variables (works on abstract models too)."""
    params = nnx.state(model, nnx.Param)
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def abstract_autoencoder(config: ModelConfig) -> Autoencoder:
    """The model's structure with shape-only weights: nothing is initialised or allocated."""
    return nnx.eval_shape(lambda: Autoencoder(config, nnx.Rngs(0)))
