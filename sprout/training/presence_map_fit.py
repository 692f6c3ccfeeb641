"""Fitting the presence map on validation users, so that the probabilities shown with
recommendations mean what they say (docs/design.md §6).

A served probability is the chance that the user's next show is a given one, among the shows not
in their profile. A validation user's held-out entries are the shows they went on to list; which
of them comes "next" is not recorded, so each is equally likely to: the next show is ``j`` with
chance ``1/n`` for each of the ``n`` held-out shows. The map's parameters maximise that
likelihood,

    Σ_u (1/n_u) Σ_{j ∈ held-out(u)} log p(j | u),    p(· | u) = softmax over u's non-profile shows of
                                                     power · log softplus(scale · l − offset),

with ``l`` the blended logits (`sprout.model.presence_map`). Weighting each user's entries by
``1/n_u`` is what makes this the next-show probability: without it the long profiles, whose
held-out shows lie mostly far down the ranking, decide the fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from sprout.evaluation.held_out import HeldOutUsers
from sprout.evaluation.model_scores import blended_logits
from sprout.model.autoencoder import Autoencoder
from sprout.model.presence_map import log_softplus

# Where the search starts, in units of the candidates' logit spread above their mean: the
# offset from which probabilities stop falling exponentially.
START_OFFSETS = (0.0, 2.0, 4.0)
MAX_STEPS = 50
TOLERANCE = 1e-6  # a step that improves the likelihood by less ends the search


@dataclass(frozen=True)
class PresenceMapFit:
    scale: float
    power: float
    offset: float
    next_show_nll: float  # the validation users' mean -log p of their next show, with the map

    def describe(self) -> dict[str, float]:
        return {"presence_map_scale": self.scale, "presence_power": self.power, "presence_offset": self.offset,
                "validation_next_show_nll": self.next_show_nll}


def _next_show_nll(theta: jax.Array, logits: jax.Array, candidates: jax.Array, weights: jax.Array) -> jax.Array:
    """Mean over users of -Σ_j w_j log p_j; theta = (log power, offset, log scale) on standardised
    logits [U, C], candidates [U, C] bool (non-profile shows), weights [U, C] (1/n on held-out)."""
    mapped = jnp.exp(theta[0]) * log_softplus(jnp.exp(theta[2]) * logits - theta[1])  # [U, C]
    mapped = jnp.where(candidates, mapped, -jnp.inf)
    normaliser = jax.nn.logsumexp(mapped, axis=1)  # [U]
    return -jnp.mean(jnp.sum(jnp.where(weights > 0, weights * mapped, 0.0), axis=1) - normaliser)


def fit_map_parameters(logits: np.ndarray, fold_in: np.ndarray, held_out: np.ndarray) -> PresenceMapFit:
    """The (scale, power, offset) that maximise the next-show likelihood of held-out entries.

    logits [U, C] (the blend, before any map), fold_in / held_out [U, C] bool; users with nothing
    held out are left out. L-BFGS from a few starting offsets; the best end wins (about 20
    steps each; a few seconds for 500 users and 7,000 shows).
    """
    evaluated = held_out.any(axis=1)
    logits, fold_in, held_out = logits[evaluated], fold_in[evaluated], held_out[evaluated]
    if not len(logits):
        raise ValueError("the presence map is fitted on held-out entries; these users have none")
    candidates = ~fold_in & np.isfinite(logits)
    # Standardised logits keep one set of starting points good for any blend's scale.
    centre, spread = float(logits[candidates].mean()), float(logits[candidates].std()) or 1.0
    standard = np.where(candidates, (logits - centre) / spread, 0.0).astype(np.float32)
    weights = (held_out / held_out.sum(axis=1, keepdims=True)).astype(np.float32)
    arrays = (jnp.asarray(standard), jnp.asarray(candidates), jnp.asarray(weights))
    objective = jax.jit(lambda theta: _next_show_nll(theta, *arrays))
    value_and_grad = jax.jit(optax.value_and_grad_from_state(objective))
    solver = optax.lbfgs()

    @jax.jit
    def step(theta, state):
        value, grad = value_and_grad(theta, state=state)
        updates, state = solver.update(grad, state, theta, value=value, grad=grad, value_fn=objective)
        return optax.apply_updates(theta, updates), state

    best = None
    for start in START_OFFSETS:
        theta = jnp.asarray([0.0, start, 0.0], jnp.float32)
        state, value = solver.init(theta), float(objective(theta))
        for _ in range(MAX_STEPS):
            theta, state = step(theta, state)
            previous, value = value, float(optax.tree_utils.tree_get(state, "value"))
            if previous - value < TOLERANCE:
                break
        if np.isfinite(value) and (best is None or value < best[0]):
            best = (value, np.asarray(theta, np.float64))
    if best is None:
        raise ValueError("the presence map's fit did not converge to a finite likelihood")
    value, (log_power, offset, log_scale) = best
    # power · log softplus(e^log_scale · (l - centre) / spread - offset) in terms of l itself
    scale = float(np.exp(log_scale) / spread)
    return PresenceMapFit(scale=scale, power=float(np.exp(log_power)), offset=float(offset + scale * centre),
                          next_show_nll=value)


def with_presence_map(model: Autoencoder, fit: PresenceMapFit) -> Autoencoder:
    """A copy of ``model`` whose presence logits go through the fitted map."""
    copy = Autoencoder(model.config.model_copy(update={"presence_map": True}), nnx.Rngs(0))
    nnx.update(copy, nnx.state(model))
    copy.presence_map.value = jnp.asarray([fit.scale, fit.power, fit.offset], jnp.float32)
    return copy


def fit_presence_map(model: Autoencoder, users: HeldOutUsers) -> tuple[Autoencoder, PresenceMapFit]:
    """``model`` (without a map) with the presence map fitted on the validation ``users`` (the
    blend's own scales stay as chosen for ranking)."""
    if model.config.presence_map:
        raise ValueError("the model already has a presence map")
    fit = fit_map_parameters(blended_logits(model, users), users.fold_in, users.held_out)
    return with_presence_map(model, fit), fit
