"""Evaluate a trained model artifact against the champion and the baselines, then apply the gate.

Comparability: the challenger must have been trained on this very snapshot (same corpus, and its
test users unseen in training), otherwise evaluation refuses with `IncomparableModel`. The
champion usually comes from an older snapshot, whose corpus holds (mostly) the same shows in
another order, since popularity moves between crawls. It is re-scored on the current test users
through its own corpus, as it would serve them: fold-in entries of shows it does not know are
left out of its input, and those shows can never be among its recommendations (their predicted
rating is the user's mean). The result records how many of the snapshot's shows it knows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sprout.dataset.corpus import Corpus
from sprout.dataset.snapshot_format import Snapshot, SplitArrays, load_snapshot
from sprout.evaluation.baselines import standard_baselines
from sprout.evaluation.gate import RATING_NOISE_METRIC, GateRules, best_rating_baseline, decide
from sprout.evaluation.held_out import held_out_users
from sprout.evaluation.metrics import paired_mae_difference_se
from sprout.evaluation.model_scores import ModelEvaluator, corpus_columns
from sprout.model.ranking_score import DEFAULT_RATING_WEIGHT
from sprout.model.artifact import CORPUS_FILE, read_model_artifact


class IncomparableModel(ValueError):
    """A model that cannot be scored on this snapshot's held-out users."""


def artifact_corpus(folder: Path) -> Corpus:
    return Corpus.from_json((Path(folder) / CORPUS_FILE).read_text(encoding="utf-8"))


def same_corpus(a: Corpus, b: Corpus) -> bool:
    return len(a) == len(b) and bool(np.array_equal(a.anime_ids, b.anime_ids))


def fitted_users(snapshot: Snapshot, document: dict[str, Any], split: str = "test") -> SplitArrays:
    """The snapshot's users a model was finally fitted on: training users, plus the validation
    users when it was refitted on them (its ``refit_users``) and ``split`` is not validation."""
    train = snapshot.split("train")
    refitted = bool(document.get("metrics", {}).get("refit_users"))
    return train.joined(snapshot.split("validation")) if refitted and split == "test" else train


def evaluate_artifact(
    model_folder: Path | str,
    snapshot: Snapshot | Path | str,
    split: str = "test",
    rules: GateRules | None = None,
    champion_folder: Path | str | None = None,
    rating_weight: float = DEFAULT_RATING_WEIGHT,
) -> dict[str, Any]:
    """Challenger, champion (if comparable) and baselines on the same held-out users, and the decision.

    A challenger refitted on training + validation users (its ``refit_users``) is compared with
    baselines fitted on the same users; the test users stay out of both.

    Returns ``{"split", "snapshot_id", "challenger_version", "champion_version", "champion_status",
    "challenger": metrics, "champion": metrics | None, "baselines": {name: metrics}, "decision": dict}``.
    """
    if not isinstance(snapshot, Snapshot):
        snapshot = load_snapshot(snapshot)
    model, document = read_model_artifact(Path(model_folder))
    trained_on = document.get("dataset", {}).get("snapshot_id")
    if not same_corpus(artifact_corpus(model_folder), snapshot.corpus):
        raise IncomparableModel(f"model {model_folder} knows a different corpus than snapshot {snapshot.snapshot_id}")
    if trained_on != snapshot.snapshot_id:
        raise IncomparableModel(
            f"model {model_folder} was trained on snapshot {trained_on}, not {snapshot.snapshot_id}: "
            "its test users may have been its training users"
        )

    users = held_out_users(snapshot, split)
    validation = users if split == "validation" else held_out_users(snapshot, "validation")
    challenger, predicted = ModelEvaluator(model, rating_weight=rating_weight).evaluate_with_predictions(users)

    champion, champion_version, champion_status = None, None, "none"
    if champion_folder is not None:
        champion_model, champion_document = read_model_artifact(Path(champion_folder))
        champion_version = champion_document.get("version")
        champion_corpus = artifact_corpus(champion_folder)
        if same_corpus(champion_corpus, snapshot.corpus):
            champion = ModelEvaluator(champion_model, rating_weight=rating_weight).evaluate(users)
            champion_status = "scored"
        else:
            columns = corpus_columns(champion_corpus.anime_ids, snapshot.corpus.anime_ids)  # [C]
            champion = ModelEvaluator(champion_model, rating_weight=rating_weight, model_columns=columns).evaluate(users)
            champion_status = f"scored through its own corpus ({int((columns >= 0).sum())} of {len(columns)} shows known)"

    fit_on = fitted_users(snapshot, document, split)
    evaluators = {  # fitted on the users the challenger was finally fitted on
        evaluator.name: evaluator for evaluator in standard_baselines(snapshot.split("train"), validation, fit_on=fit_on)
    }
    baselines = {name: evaluator.evaluate(users) for name, evaluator in evaluators.items()}
    best = best_rating_baseline(baselines)
    if best is not None:
        challenger[RATING_NOISE_METRIC] = paired_mae_difference_se(
            predicted, evaluators[best].rating_predictions(users), users.rated_scores, users.rated_users
        )
    decision = decide(challenger, champion, baselines, rules)
    return {
        "split": split,
        "snapshot_id": snapshot.snapshot_id,
        "challenger_version": document.get("version"),
        "champion_version": champion_version,
        "champion_status": champion_status,
        "challenger": challenger,
        "champion": champion,
        "baselines": baselines,
        "ease_margin": challenger["ndcg@100"] - baselines.get("ease", {}).get("ndcg@100", float("nan")),
        "decision": decision.as_dict(),
    }
