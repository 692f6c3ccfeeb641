"""A tiny real model artifact for the inference tests: store -> snapshot -> random-weight model.

The catalogue is small and hand-made so filters can be checked by hand: media types and genres
cycle with the id, and the relations hold a prequel chain, a parent story, a cycle and a prequel
outside the corpus. Nothing is trained; the weights are random but fixed by the seed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sprout.dataset.config import DatasetConfig
from sprout.dataset.snapshot import build_snapshot, load_snapshot
from sprout.mal.models import AnimeDetails, ListEntry, RelatedAnime
from sprout.model.autoencoder import Autoencoder
from sprout.model.config import ModelConfig
from sprout.store import Store
from sprout.store.records import UserListWrite
from sprout.model.artifact import write_model_artifact
from sprout.training.rating_fit import fitted_parts, set_rating_parts

SNAPSHOT_DATE = date(2025, 6, 30)
FIRST_ID, N_SHOWS = 101, 40
RX_ID = 140  # excluded from the corpus by its age rating
MEDIA_TYPES = ("tv", "movie", "ova")
GENRES = ("Action", "Comedy", "Romance", "Horror")
# (show, related show, relation): the related show precedes the show.
RELATIONS = (
    (112, 111, "prequel"),
    (113, 112, "prequel"),  # chain 111 <- 112 <- 113
    (120, 119, "parent_story"),
    (130, 131, "prequel"),
    (131, 130, "prequel"),  # a cycle
    (125, 999, "prequel"),  # the prequel is outside the corpus
    (111, 113, "sequel"),  # sequel links never hide anything
)


def media_type_of(anime_id: int) -> str:
    return MEDIA_TYPES[anime_id % len(MEDIA_TYPES)]


def genres_of(anime_id: int) -> tuple[str, ...]:
    return (GENRES[anime_id % len(GENRES)], GENRES[(anime_id // 2) % len(GENRES)])


def _details(anime_id: int) -> AnimeDetails:
    related = [
        RelatedAnime(node={"id": other, "title": f"show {other}"}, relation_type=kind)
        for show, other, kind in RELATIONS
        if show == anime_id
    ]
    return AnimeDetails(
        id=anime_id,
        title=f"show {anime_id}",
        media_type=media_type_of(anime_id),
        rating="rx" if anime_id == RX_ID else "pg_13",
        genres=[{"id": GENRES.index(g), "name": g} for g in dict.fromkeys(genres_of(anime_id))],
        related_anime=related,
    )


def _lists(n_users: int, seed: int) -> list[UserListWrite]:
    rng = np.random.default_rng(seed)
    ids = np.arange(FIRST_ID, FIRST_ID + N_SHOWS)
    weights = 1.0 / np.arange(1, N_SHOWS + 1)  # long-tailed popularity
    at = datetime(2025, 6, 1, tzinfo=UTC)
    statuses = ("watching", "completed", "completed", "completed", "on_hold", "dropped", "plan_to_watch")
    writes = []
    for user in range(n_users):
        chosen = rng.choice(ids, size=int(rng.integers(8, 25)), replace=False, p=weights / weights.sum())
        entries = [
            ListEntry(
                anime_id=int(anime_id),
                status=statuses[int(rng.integers(len(statuses)))],
                score=int(rng.integers(0, 11)),
                num_episodes_watched=0,
                is_rewatching=False,
                updated_at=at,
            )
            for anime_id in chosen
        ]
        writes.append(UserListWrite(f"user{user:03d}", entries, True, at, at))
    return writes


def give_item_item_path(model: Autoencoder, seed: int) -> None:
    """Random zero-diagonal B and a blend where both presence paths matter."""
    size = model.config.corpus_size
    weights = np.random.default_rng(seed).normal(0.0, 0.3, (size, size)).astype(np.float32)
    np.fill_diagonal(weights, 0.0)
    model.item_item.value = jnp.asarray(weights)
    model.presence_scale.value = jnp.asarray(0.7, jnp.float32)
    model.linear_scale.value = jnp.asarray(2.0, jnp.float32)
    if model.config.presence_map:  # curved over the logits' range, so every path meets the map
        model.presence_map.value = jnp.asarray([1.5, 0.8, 2.0], jnp.float32)  # scale, power, offset


def give_rating_path(model: Autoencoder, train) -> None:
    """A rating path fitted on the snapshot's training users, blended so that every part matters."""
    biases, neighbours = fitted_parts(train, model.config.corpus_size, model.config.rating_neighbours)
    set_rating_parts(model, biases, neighbours[100.0])
    model.rating_blend.value = jnp.asarray([0.1, 0.8, 0.3], jnp.float32)
    model.like_curve.value = jnp.asarray([1.2, -0.1], jnp.float32)


def build_artifacts(home: Path, *, seeds: tuple[int, ...] = (0,), n_users: int = 60) -> list[Path]:
    """Write a store, a snapshot and one random-weight model per seed under ``home``; returns the
    model folders (same snapshot and corpus, different weights)."""
    with Store.open(home / "sprout.duckdb") as store:
        store.write_user_lists(_lists(n_users, seed=7))
        store.upsert_anime([_details(i) for i in range(FIRST_ID, FIRST_ID + N_SHOWS)], datetime(2025, 6, 2, tzinfo=UTC))
        config = DatasetConfig.tiny(corpus_size=N_SHOWS, min_counted_entries=5, n_validation_users=0, n_test_users=0)
        manifest = build_snapshot(store, home / "snapshots", config, SNAPSHOT_DATE)
    snapshot = load_snapshot(home / "snapshots" / manifest.snapshot_id)
    model_config = ModelConfig.tiny(
        corpus_size=len(snapshot.corpus), encoder_hidden=32, bottleneck=16, item_item=True, presence_map=True,
        rating_neighbours=12,
    )
    folders = []
    for seed in seeds:
        model = Autoencoder(model_config, nnx.Rngs(seed))
        give_item_item_path(model, seed)
        give_rating_path(model, snapshot.split("train"))
        metadata = {"metrics": {"ndcg@100": 0.25 + seed}}
        folders.append(write_model_artifact(home / "models", model, snapshot, metadata)[1])
    return folders


def same_answers(got, expected) -> bool:
    """Responses with the same shows in the same order and scores equal up to rounding: XLA may fuse
    the blend of the two presence paths differently per batch shape."""
    if len(got) != len(expected):
        return False
    for a, b in zip(got, expected, strict=True):
        if [r.anime_id for r in a.recommendations] != [r.anime_id for r in b.recommendations]:
            return False
        if [r.score for r in a.recommendations] != pytest.approx([r.score for r in b.recommendations], rel=1e-6):
            return False
    return True
