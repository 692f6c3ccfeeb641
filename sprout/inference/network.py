"""The autoencoder's serving passes, compiled once per shape at start-up.

A profile's own part, `ServingNetwork.encode`, runs on the host: the first layer's
pre-activation ``[H]`` (a sum of kernel rows over the profile's entries) and the item-item path's
``x B`` ``[C]`` (a sum of the profile's rows of ``B``; zeros for a model without that path) are
two small matrix-vector products over gathered rows, read in place from the weights (a CPU
array's host view costs no copy). Measured at the default size with 300 entries: 0.6 ms, against
2.8 ms for the same sums jitted (XLA's CPU gather of 512 padded rows of ``B`` alone takes 2.3 ms,
numpy's 0.5 ms), and a request's own part runs once per request, in its own thread.

The rest are jitted pure functions of ``(graphdef, state, arrays)``:

- `network_outputs`: pre-activations ``[B, H]`` and ``x B`` ``[B, C]`` -> log presence
  probabilities and predicted normalised ratings ``[B, C]`` (a batch shares every weight read);
  `network_presence` is the same pass without the rating head's output layer — the largest
  layer after the first — which a request needs in full only when its ranking weighs ratings
  (rating weight < 1); otherwise `ratings_at` computes just the recommended shows' ratings;
- `held_out_outputs`: explanations' hot path. Holding entry ``j`` out is the rank-1 change
  ``pre - share_j`` of the pre-activation and ``x B - B[j]`` of the item-item path, so only the
  rest of the network runs, for many held-out entries in one batch. The presence head still needs every logit (softmax normaliser); the rating
  head's last layer runs on the candidate columns and each entry's own column only.

Shapes are padded to buckets so that a fixed set of executables serves every request:
batches to 1..16, the held-out rows to chunks of 32..256 and candidate columns to 64 or 512 —
only the sizes the corpus can need (the longest possible profile bounds the chunks). `warm_up`
compiles them all (13 executables for the default size).

The held-out rows are sharded over a 1-D mesh of ``devices`` XLA devices along their leading axis
(argument, else $SPROUT_INFERENCE_DEVICES, else `DEFAULT_DEVICES`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from scipy.sparse import csr_matrix

from sprout.model.autoencoder import Autoencoder
from sprout.model.presence_map import mapped_slope

from .compilations import CompilationCounter
from .requests import MAX_PROFILE_ENTRIES

DEVICES_ENV = "SPROUT_INFERENCE_DEVICES"
# One XLA CPU device already spreads its work over every core, so on a 2-core machine splitting
# the hold-out between two devices only adds synchronisation (benchmarks/serving.py measures both:
# `engine_explain_ms` in benchmarks/results/serving.json). More devices pay off only where there
# are more cores than one device's thread pool keeps busy.
DEFAULT_DEVICES = 1

BATCH_BUCKETS = (1, 2, 4, 8, 16)
ROW_CHUNKS = (32, 64, 128, 256)
COLUMN_BUCKETS = (64, 512)  # top_k <= 500 and the 50 shows explanations weigh fit in 512
# A paced hold-out (one that gives way to plain requests between chunks) uses chunks of at most
# this many rows: a plain request arriving mid-chunk shares the cores with what is left of it.
# Measured at the default size beside two clients explaining 5,000-entry profiles, in-process on
# the 2-core machine with other jobs running: plain p99 82/67 ms with 256-row chunks (51 ms each
# alone), 46 ms with 64-row chunks (18 ms each), idle p99 13-15 ms. Alone, a 5,000-entry hold-out
# takes ~1.4 s in 64-row chunks against ~1.0 s in 256-row ones.
# Pacing cuts only the chunks larger than this into pieces of this size, so the rows of a small
# chunk go through the same executable either way. Rows of a cut chunk may differ in the last bits,
# as a batched forward pass may from a single one (at the default size they measured bit for bit
# equal: the 64- and 256-row executables round alike there, the tiny test model's do not).
PACED_ROW_CHUNK = 64
_SMALLEST_LENGTH = 16
# How a held-out row's softmax normaliser is computed (see `held_out_outputs`), and how many of
# the whole profile's most probable shows the first-order one sums exactly.
NORMALISERS = ("exact", "first_order")
EXACT_HEAD = 512


def length_buckets(corpus_size: int) -> tuple[int, ...]:
    """Padded profile lengths: powers of two from 16, capped at the longest possible profile.

    A kept profile has at most one entry per corpus show and at most MAX_PROFILE_ENTRIES.
    """
    longest = max(1, min(corpus_size, MAX_PROFILE_ENTRIES))
    sizes = {_SMALLEST_LENGTH << k for k in range(16) if _SMALLEST_LENGTH << k < longest}
    return tuple(sorted(sizes | {longest}))


def smallest_fitting(n: int, sizes: tuple[int, ...]) -> int:
    """The first of ``sizes`` (ascending) that is at least ``n``."""
    for size in sizes:
        if size >= n:
            return size
    raise ValueError(f"{n} exceeds the largest compiled size {sizes[-1]}")


def sizes_up_to(sizes: tuple[int, ...], limit: int) -> tuple[int, ...]:
    """The ascending ``sizes`` that can be needed for at most ``limit`` things: those below it and
    the first that holds it (no executable is compiled for a shape no request can have)."""
    needed = tuple(size for size in sizes if size < limit)
    return needed + (smallest_fitting(limit, sizes),) if limit <= sizes[-1] else sizes


def row_chunks(n_rows: int, chunk_sizes: tuple[int, ...]) -> list[tuple[int, int]]:
    """Split ``n_rows`` into (start, padded size) chunks: full largest chunks, then one that fits."""
    largest = chunk_sizes[-1]
    chunks, start = [], 0
    while n_rows - start > largest:
        chunks.append((start, largest))
        start += largest
    chunks.append((start, smallest_fitting(n_rows - start, chunk_sizes)))
    return chunks


def resolve_device_count(devices: int | None) -> int:
    """The ``devices`` argument, else $SPROUT_INFERENCE_DEVICES, else DEFAULT_DEVICES (checked)."""
    if devices is None:
        text = os.environ.get(DEVICES_ENV, "").strip()
        devices = int(text) if text else DEFAULT_DEVICES
    available = len(jax.devices())
    if not 1 <= devices <= available:
        raise ValueError(
            f"asked for {devices} inference devices; JAX sees {available} (for more CPU devices set "
            f"XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts)"
        )
    return devices


# --- pure functions of (graphdef, state, arrays) --------------------------------------------


def network_outputs(graphdef, state, pre, linear):
    """pre [B, H], x B [B, C] -> (log presence probability [B, C], predicted normalised rating [B, C])."""
    model: Autoencoder = nnx.merge(graphdef, state)
    z = model.bottleneck_from_preactivation(pre.astype(model.config.compute_dtype))  # [B, Z]
    logits, ratings = model.decode(z)  # [B, C], [B, C]
    logits = model.presence_logits(logits, linear)
    return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), ratings.astype(jnp.float32)


def network_presence(graphdef, state, pre, linear):
    """pre [B, H], x B [B, C] -> (log presence probability [B, C], the rating head's last hidden
    activation [B, D]): everything but the rating head's output layer."""
    model: Autoencoder = nnx.merge(graphdef, state)
    z = model.bottleneck_from_preactivation(pre.astype(model.config.compute_dtype))  # [B, Z]
    logits = model.presence_logits(model.decode_presence(z), linear)  # [B, C]
    features = model.rating_head.features(z)  # [B, D]
    return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), features.astype(jnp.float32)


def rating_outputs(graphdef, state, features):
    """The rating head's output layer: features [B, D] -> predicted normalised ratings [B, C]."""
    model: Autoencoder = nnx.merge(graphdef, state)
    return model.rating_head.output(features.astype(model.config.compute_dtype)).astype(jnp.float32)


def rating_output_rows(model: Autoencoder) -> jax.Array:
    """The rating head's output kernel transposed, [C, D]: one contiguous row per show.

    Gathering a few shows' columns from the [D, C] kernel reads memory with a stride of C; rows
    of this copy are contiguous. Measured on the default size, it made the own-column ratings of a
    300-entry hold-out nearly free (231 -> 210 ms of CPU time per hold-out pass).
    """
    return jnp.asarray(model.rating_head.output.kernel[...].T)


def held_out_outputs(graphdef, state, rating_rows, pre, linear, log_presence, items, values, mask, columns, *,
                     normaliser: str = "exact", exact_head: int = 0):
    """Outputs with each entry held out in turn.

    rating_rows [C, D] (`rating_output_rows`), pre [H], x B [C] and log presence [C] (whole
    profile), items/values/mask [R] (one held-out entry per row), columns [K] -> log presence
    [R, K] and ratings [R, K] at ``columns``, and each row's rating of its own held-out show [R].
    A masked row holds nothing out: it is the whole profile.

    The softmax normaliser of a held-out row needs all C of its logits: ``normaliser="exact"``
    computes them ([R, D] @ [D, C], most of the pass's FLOPs). ``"first_order"`` sums the
    ``exact_head`` shows most probable for the whole profile exactly and expands the rest (the
    tail) around the whole profile: ``Σ_tail exp(F(l + Δ)) ≈ P_tail·exp(lse)·exp(E_tail[F'(l)·Δ])``
    with ``E_tail`` the mean under the whole profile's tail probabilities and ``F`` the presence
    map (the identity, ``F' = 1``, without one). The deep part of ``Δ`` is ``(f_j - f) W``, so
    ``E_tail[F'·Δ]`` needs one ``W (p_tail·F')`` product for every row, and the output layer is
    read at the head and the candidates only. The candidates' logits stay exact; without a
    presence map, by convexity, the normaliser is never above the exact one.
    """
    model: Autoencoder = nnx.merge(graphdef, state)
    shares = model.entry_contributions(items[:, None], values[:, None], mask[:, None])[:, 0]  # [R, H]
    held = pre[None, :].astype(shares.dtype) - shares  # [R, H]
    z = model.bottleneck_from_preactivation(held)  # [R, Z]
    held_rows = jnp.where(mask[:, None], model.linear_rows(items), 0.0) if model.config.item_item else None  # [R, C]
    if normaliser == "exact":
        logits = model.decode_presence(z).astype(jnp.float32)  # [R, C]
        if held_rows is not None:
            logits = model.blend(logits, linear[None, :] - held_rows)
        logits = model.calibrated(logits)
        presence = logits[:, columns] - jax.nn.logsumexp(logits, axis=-1, keepdims=True)  # [R, K]
    else:
        head = model.presence_head
        whole = head.features(model.bottleneck_from_preactivation(pre[None, :].astype(shares.dtype)))  # [1, D]
        change = (head.features(z) - whole).astype(jnp.float32)  # [R, D]
        kernel = head.output.kernel[...].astype(jnp.float32)  # [D, C]
        deep_scale = model.presence_scale[...] if model.config.item_item else 1.0

        blended = None  # the whole profile's logits before the presence map [C], where there is one
        if model.config.presence_map:
            deep = whole.astype(jnp.float32) @ kernel + head.output.bias[...].astype(jnp.float32)  # [1, C]
            blended = model.blend(deep, linear[None, :])[0]

        def logit_change(shows: jax.Array) -> jax.Array:  # [M] -> [R, M]: exact change of those (mapped) logits
            delta = deep_scale * (change @ kernel[:, shows])
            if held_rows is not None:
                delta = delta - model.linear_scale[...] * held_rows[:, shows]
            if not model.config.presence_map:
                return delta
            return model.calibrated(blended[shows][None, :] + delta) - model.calibrated(blended[shows])[None, :]

        _, top = jax.lax.top_k(log_presence, min(exact_head, log_presence.shape[0]))  # [M]
        head_sum = jax.nn.logsumexp(log_presence[top][None, :] + logit_change(top), axis=-1)  # [R]
        tail = jnp.exp(log_presence).at[top].set(0.0)  # [C] the whole profile's tail probabilities
        tail_mass = jnp.sum(tail)
        if model.config.presence_map:  # the map's slope turns a change of l into one of F(l)
            tail = tail * mapped_slope(blended, *model.presence_map[...])
        tail_change = deep_scale * (change @ (kernel @ tail))  # [R] Σ_tail p·F'·Δ, deep part
        if held_rows is not None:
            tail_change = tail_change - model.linear_scale[...] * (held_rows @ tail)
        tail_sum = jnp.log(tail_mass) + tail_change / jnp.maximum(tail_mass, 1e-30)  # [R]; -inf without a tail
        normaliser_shift = jnp.logaddexp(head_sum, tail_sum)  # [R] held-out lse less the whole profile's
        presence = log_presence[columns][None, :] + logit_change(columns) - normaliser_shift[:, None]  # [R, K]
    features = model.rating_head.features(z)  # [R, D]
    rows = rating_rows.astype(features.dtype)  # [C, D]
    bias = model.rating_head.output.bias[...].astype(features.dtype)  # [C]
    ratings = features @ rows[columns].T + bias[columns]  # [R, K]
    own = jnp.sum(features * rows[items], axis=-1) + bias[items]  # [R]
    return presence, ratings.astype(jnp.float32), own.astype(jnp.float32)


class ServingNetwork:
    """A model's weights on the serving devices and its compiled passes, with a compile counter."""

    def __init__(
        self, model: Autoencoder, devices: int | None = None, normaliser: str = "exact", exact_head: int = EXACT_HEAD
    ):
        if normaliser not in NORMALISERS:
            raise ValueError(f"explanation normaliser must be one of {NORMALISERS}, got {normaliser!r}")
        self.config = model.config
        self.normaliser = normaliser
        self.device_count = resolve_device_count(devices)
        graphdef, state = nnx.split(model)
        self._state = jax.device_put(state, jax.devices()[0])
        mesh = Mesh(np.array(jax.devices()[: self.device_count]), ("rows",))
        replicated, by_row = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("rows"))
        self._held_out_state = self._state if self.device_count == 1 else jax.device_put(state, replicated)
        self._rating_rows = jax.device_put(rating_output_rows(model), replicated)  # [C, D]
        # host views of the first layer and B (float32: reduced-precision weights get a copy)
        self._kernel_host = np.asarray(model.encoder_input.kernel[...], np.float32)  # [2C, H]
        self._bias_host = np.asarray(model.encoder_input.bias[...], np.float32)  # [H]
        self._item_item_host = np.asarray(model.item_item[...], np.float32) if model.config.item_item else None  # [C, C]
        self._outputs = jax.jit(partial(network_outputs, graphdef))
        self._presence = jax.jit(partial(network_presence, graphdef))
        self._ratings = jax.jit(partial(rating_outputs, graphdef))
        self._rating_rows_host = np.asarray(self._rating_rows, np.float32)  # [C, D] for a few rows at a time
        self._rating_bias_host = np.asarray(model.rating_head.output.bias[...], np.float32)  # [C]
        self._held_out = jax.jit(
            partial(held_out_outputs, graphdef, normaliser=normaliser, exact_head=exact_head),
            in_shardings=(replicated, replicated, replicated, replicated, replicated, by_row, by_row, by_row, replicated),
            out_shardings=(by_row, by_row, by_row),
        )
        self.length_buckets = length_buckets(self.config.corpus_size)
        longest = self.length_buckets[-1]
        count = self.device_count  # held-out chunks split evenly over the devices
        self.row_chunks = tuple(sorted({-(-size // count) * count for size in sizes_up_to(ROW_CHUNKS, longest)}))
        small = [size for size in self.row_chunks if size <= PACED_ROW_CHUNK]
        self.paced_row_chunk = max(small) if small else self.row_chunks[0]
        self.column_buckets = sizes_up_to(COLUMN_BUCKETS, self.config.corpus_size)
        self.counter = CompilationCounter()

    @property
    def hidden_size(self) -> int:
        return self.config.encoder_hidden

    def encode(self, items: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One profile items/values [n] -> (pre-activation [H], x B [C]) (see `encode_many`)."""
        pre, linear = self.encode_many([(items, values)])
        return pre[0], linear[0]

    def encode_many(self, profiles: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Profiles [(items [n], values [n]), ...] -> (pre-activations [B, H], x B [B, C]), float32, on
        the host: ``bias + Σ_j (kernel[i_j] + v_j kernel[C + i_j])`` and ``Σ_j B[i_j]``
        (`Autoencoder.preactivation` and `Autoencoder.linear_scores`).

        Both are sparse × dense products (scipy's CSR kernels): each profile's rows are added up
        where they lie. Gathering a 300-entry profile's rows of a 6,000-show ``B`` into a copy first
        moved 7 MB per request and took twice as long."""
        size = self.config.corpus_size
        lengths = np.fromiter((len(items) for items, _ in profiles), np.int64, len(profiles))  # [B]
        indptr = np.concatenate([[0], np.cumsum(lengths)])  # [B + 1]
        items = np.concatenate([np.asarray(i, np.int32) for i, _ in profiles])  # [n]
        values = np.concatenate([np.asarray(v, np.float32) for _, v in profiles])  # [n]
        ones = np.ones(len(items), np.float32)
        # the first layer reads each entry twice: its presence column and its rating column
        columns = np.stack([items, items + size], axis=1).ravel()  # [2n]
        inputs = csr_matrix((np.stack([ones, values], axis=1).ravel(), columns, 2 * indptr), shape=(len(profiles), 2 * size))
        pre = np.asarray(inputs @ self._kernel_host) + self._bias_host  # [B, H]
        if self._item_item_host is None:
            return pre, np.zeros((len(profiles), size), np.float32)
        present = csr_matrix((ones, items, indptr), shape=(len(profiles), size))
        return pre, np.asarray(present @ self._item_item_host)  # [B, C]

    def outputs(self, pre: np.ndarray, linear: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """pre [B, H], x B [B, C] -> (log presence [B, C], ratings [B, C]), in batches of at most 16."""
        return self._in_batches(self._outputs, pre, linear)

    def presence(self, pre: np.ndarray, linear: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """pre [B, H], x B [B, C] -> (log presence [B, C], rating features [B, D]), in batches of at most 16."""
        return self._in_batches(self._presence, pre, linear)

    def _in_batches(self, passes, pre: np.ndarray, linear: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A compiled pass over (pre [B, H], x B [B, C]) in bucket-padded batches -> its two outputs."""
        firsts, seconds = [], []
        with self.counter.counting():
            for start in range(0, len(pre), BATCH_BUCKETS[-1]):
                part = pre[start : start + BATCH_BUCKETS[-1]]
                size = smallest_fitting(len(part), BATCH_BUCKETS)
                padded = np.zeros((size, pre.shape[1]), np.float32)
                padded[: len(part)] = part
                padded_linear = np.zeros((size, linear.shape[1]), np.float32)
                padded_linear[: len(part)] = linear[start : start + BATCH_BUCKETS[-1]]
                first, second = passes(self._state, padded, padded_linear)
                firsts.append(np.asarray(first)[: len(part)])
                seconds.append(np.asarray(second)[: len(part)])
        return np.concatenate(firsts), np.concatenate(seconds)

    def ratings(self, features: np.ndarray) -> np.ndarray:
        """One profile's rating features [D] -> its ratings of every show [C]."""
        with self.counter.counting():
            return np.asarray(self._ratings(self._state, features[None].astype(np.float32)))[0]

    def ratings_at(self, features: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """One profile's rating features [D] -> its ratings of ``columns`` [K] only (host arithmetic)."""
        return self._rating_rows_host[columns] @ features.astype(np.float32) + self._rating_bias_host[columns]

    def held_out(
        self,
        pre: np.ndarray,
        linear: np.ndarray,
        log_presence: np.ndarray,
        items: np.ndarray,
        values: np.ndarray,
        columns: np.ndarray,
        pace: Callable[[], None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hold out each of the n entries: pre [H], x B [C] and log presence [C] of the whole
        profile, items/values [n], columns [K] -> log presence [n, K], ratings [n, K] at
        ``columns``, own rating [n].

        Without ``pace`` every chunk is dispatched at once and collected at the end. With it, chunks
        larger than `PACED_ROW_CHUNK` rows are cut into pieces of that size, ``pace()`` runs before
        each piece and each is finished before the next starts, so a caller that blocks in ``pace``
        holds at most one small piece in flight."""
        width = smallest_fitting(len(columns), self.column_buckets)
        padded_columns = np.zeros(width, np.int32)
        padded_columns[: len(columns)] = columns
        pending = []
        with self.counter.counting():
            for start, size in self._chunks(len(items), paced=pace is not None):
                if pace is not None:
                    pace()
                stop = min(start + size, len(items))
                chunk_items = np.zeros(size, np.int32)
                chunk_values = np.zeros(size, np.float32)
                mask = np.zeros(size, bool)
                chunk_items[: stop - start], chunk_values[: stop - start], mask[: stop - start] = (
                    items[start:stop],
                    values[start:stop],
                    True,
                )
                outputs = self._held_out(
                    self._held_out_state, self._rating_rows, pre, linear, log_presence, chunk_items, chunk_values,
                    mask, padded_columns,
                )
                if pace is not None:
                    jax.block_until_ready(outputs)
                pending.append((stop - start, outputs))  # dispatched; collected below
            parts = [[np.asarray(array)[:n] for array in outputs] for n, outputs in pending]
        log_presence, ratings, own = (np.concatenate(arrays) for arrays in zip(*parts, strict=True))
        return log_presence[:, : len(columns)], ratings[:, : len(columns)], own

    def _chunks(self, n_rows: int, paced: bool) -> list[tuple[int, int]]:
        """(start, padded size) of each hold-out chunk; paced, the large ones cut into small pieces."""
        chunks = row_chunks(n_rows, self.row_chunks)
        piece = self.paced_row_chunk
        if not paced:
            return chunks
        return [
            (first, piece) if size > piece else (first, size)
            for start, size in chunks
            for first in (range(start, min(start + size, n_rows), piece) if size > piece else (start,))
        ]

    def warm_up(self) -> None:
        """Compile and run every bucket once."""
        hidden = np.zeros(self.hidden_size, np.float32)
        linear = np.zeros(self.config.corpus_size, np.float32)
        for batch in BATCH_BUCKETS:
            self.outputs(np.zeros((batch, self.hidden_size), np.float32), np.zeros((batch, len(linear)), np.float32))
            _, features = self.presence(
                np.zeros((batch, self.hidden_size), np.float32), np.zeros((batch, len(linear)), np.float32)
            )
        self.ratings(features[0])
        for rows in self.row_chunks:
            for width in self.column_buckets:
                self.held_out(
                    hidden, linear, np.full(len(linear), -np.log(len(linear)), np.float32), np.zeros(rows, np.int32),
                    np.zeros(rows, np.float32), np.zeros(width, np.int32),
                )
