"""The promotion gate: pure decisions by hand, then whole evaluations of model artifacts on a
simulated snapshot (random and NaN weights never get promoted)."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from sprout.dataset.snapshot import load_snapshot
from sprout.malsim.store_loader import load_population
from sprout.evaluation.gate import GateRules, decide
from sprout.evaluation.promotion import IncomparableModel, evaluate_artifact
from sprout.malsim.synthetic_population import synthetic_population
from sprout.model.autoencoder import Autoencoder
from sprout.training.presets import get_preset
from sprout.store import Store
from sprout.model.artifact import METADATA_FILE, write_model_artifact
from sprout.training.run import build_dataset, resolve_snapshot

TINY = get_preset("tiny")
BASELINES = {"popularity": {"ndcg@100": 0.20, "rating_mae": math.nan}, "ease": {"ndcg@100": 0.25}}
CHAMPION = {"ndcg@100": 0.30, "rating_mae": 1.20, "finite": 1.0, "forward_latency_ms": 3.0}


def challenger(**changes: float) -> dict[str, float]:
    return {**CHAMPION, **changes}


def failed(decision) -> set[str]:
    return {check.name for check in decision.checks if not check.passed}


def test_better_challenger_is_promoted_with_every_number_recorded():
    decision = decide(challenger(**{"ndcg@100": 0.32, "rating_mae": 1.10}), CHAMPION, BASELINES)
    assert decision.promote and failed(decision) == set()
    record = decision.as_dict()
    assert {c["name"] for c in record["checks"]} == {
        "finite_outputs", "forward_latency_ms", "ndcg@100_over_popularity", "ndcg@100_vs_ease",
        "ndcg@100_vs_champion", "rating_mae_vs_champion",
    }
    versus = next(c for c in record["checks"] if c["name"] == "ndcg@100_vs_champion")
    assert versus["value"] == 0.32 and versus["threshold"] == 0.30
    assert record["champion"] == CHAMPION and record["baselines"]["ease"]["ndcg@100"] == 0.25
    json.dumps(record)  # plain data, ready for a JSON column


def test_a_challenger_whose_ratings_lose_to_a_rating_baseline_is_refused():
    baselines = {**BASELINES, "user_mean": {"rating_mae": 1.30}, "bias": {"rating_mae": 1.05},
                 "item_knn": {"rating_mae": 0.98}}
    decision = decide(challenger(**{"ndcg@100": 0.32, "rating_mae": 1.00}), CHAMPION, baselines)
    assert not decision.promote and failed(decision) == {"rating_mae_vs_item_knn"}  # against the best one
    check = next(c for c in decision.checks if c.name == "rating_mae_vs_item_knn")
    assert check.value == 1.00 and check.threshold == pytest.approx(0.98) and check.direction == "<="
    assert decide(challenger(**{"ndcg@100": 0.32, "rating_mae": 0.97}), CHAMPION, baselines).promote
    tolerant = GateRules(rating_baseline_tolerance=0.05)
    assert decide(challenger(**{"ndcg@100": 0.32, "rating_mae": 1.00}), CHAMPION, baselines, tolerant).promote
    broken = decide(challenger(**{"ndcg@100": 0.32, "rating_mae": math.nan}), CHAMPION, baselines)
    assert "rating_mae_vs_item_knn" in failed(broken)  # a NaN never passes


def test_a_rating_gap_the_test_users_cannot_resolve_fails_no_model():
    baselines = {**BASELINES, "item_knn": {"rating_mae": 0.98}}
    within = challenger(**{"ndcg@100": 0.32, "rating_mae": 0.995, "rating_mae_paired_se": 0.01})
    decision = decide(within, CHAMPION, baselines)
    assert decision.promote  # 0.015 worse, 1.5 standard errors: noise
    check = next(c for c in decision.checks if c.name == "rating_mae_vs_item_knn")
    assert check.threshold == pytest.approx(0.98 + 2 * 0.01)
    beyond = challenger(**{"ndcg@100": 0.32, "rating_mae": 1.005, "rating_mae_paired_se": 0.01})
    assert failed(decide(beyond, CHAMPION, baselines)) == {"rating_mae_vs_item_knn"}  # 2.5 standard errors
    assert not decide(within, CHAMPION, baselines, GateRules(rating_noise_sigmas=0)).promote  # the plain rule


def test_the_paired_standard_error_of_two_maes_clusters_by_user():
    from sprout.evaluation.metrics import paired_mae_difference_se

    actual = np.array([5.0, 5.0, 5.0, 5.0])
    # Per entry |a − y| − |b − y| = 1, 1 (user 0), 0, 0 (user 1): per-user sums 2, 0 around a mean of
    # 0.5 an entry -> residual sums 1, −1; SE = sqrt(2 / 1 · 2) / 4.
    a, b = np.array([6.0, 4.0, 5.0, 5.0]), np.array([5.0, 5.0, 5.0, 5.0])
    assert paired_mae_difference_se(a, b, actual, np.array([0, 0, 1, 1])) == pytest.approx(math.sqrt(4) / 4)
    assert paired_mae_difference_se(a, a, actual, np.array([0, 0, 1, 1])) == 0.0
    assert math.isnan(paired_mae_difference_se(a, b, actual, np.array([3, 3, 3, 3])))  # one user: unknown


def test_worse_challenger_is_refused():
    decision = decide(challenger(**{"ndcg@100": 0.29}), CHAMPION, BASELINES)
    assert not decision.promote and failed(decision) == {"ndcg@100_vs_champion"}
    assert "ndcg@100_vs_champion" in decision.reasons[0]


def test_a_tie_passes_with_zero_margin_but_not_with_a_margin():
    assert decide(challenger(), CHAMPION, BASELINES).promote
    decision = decide(challenger(), CHAMPION, BASELINES, GateRules(ndcg_margin=0.01))
    assert not decision.promote and failed(decision) == {"ndcg@100_vs_champion"}


def test_rating_regression_beyond_tolerance_is_refused():
    assert decide(challenger(rating_mae=1.24), CHAMPION, BASELINES).promote
    decision = decide(challenger(rating_mae=1.26), CHAMPION, BASELINES)
    assert failed(decision) == {"rating_mae_vs_champion"}


def test_nan_outputs_never_pass():
    decision = decide(challenger(finite=0.0, rating_mae=math.nan), CHAMPION, BASELINES)
    assert not decision.promote and failed(decision) == {"finite_outputs", "rating_mae_vs_champion"}
    nan_ranking = decide(challenger(**{"ndcg@100": math.nan}), None, BASELINES)
    assert failed(nan_ranking) == {"ndcg@100_over_popularity", "ndcg@100_vs_ease"}
    missing_popularity = decide(challenger(), None, {})
    assert not missing_popularity.promote


def test_no_champion_applies_only_the_absolute_checks():
    decision = decide(challenger(**{"ndcg@100": 0.26, "rating_mae": 9.0}), None, BASELINES)
    assert decision.promote and decision.champion is None
    assert {c.name for c in decision.checks} == {
        "finite_outputs", "forward_latency_ms", "ndcg@100_over_popularity", "ndcg@100_vs_ease"
    }
    below_popularity = decide(challenger(**{"ndcg@100": 0.19}), None, BASELINES)
    assert failed(below_popularity) == {"ndcg@100_over_popularity", "ndcg@100_vs_ease"}
    margin = decide(challenger(**{"ndcg@100": 0.26}), None, BASELINES, GateRules(min_margin_over_popularity=0.07))
    assert not margin.promote


def test_a_challenger_below_ease_is_refused_unless_within_the_tolerance():
    below = decide(challenger(**{"ndcg@100": 0.24}), None, BASELINES)
    assert not below.promote and failed(below) == {"ndcg@100_vs_ease"}
    check = next(c for c in below.checks if c.name == "ndcg@100_vs_ease")
    assert check.value == 0.24 and check.threshold == 0.25
    assert decide(challenger(**{"ndcg@100": 0.24}), None, BASELINES, GateRules(ease_tolerance=0.02)).promote
    assert not decide(challenger(), CHAMPION, {"popularity": BASELINES["popularity"]}).promote  # no EASE: refused


def test_latency_over_budget_is_refused():
    decision = decide(challenger(forward_latency_ms=51.0), CHAMPION, BASELINES)
    assert failed(decision) == {"forward_latency_ms"}
    relaxed = GateRules(max_forward_latency_ms=60)
    assert decide(challenger(forward_latency_ms=51.0), CHAMPION, BASELINES, relaxed).promote


# --- whole evaluations on a simulated snapshot -------------------------------------------------


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    population = synthetic_population(600, seed=3, n_anime=400)
    with Store.open(home / "sprout.duckdb") as store:
        load_population(store, population, population.now)
    build_dataset(home, home / "sprout.duckdb", TINY, population.now.date())
    return load_snapshot(resolve_snapshot(home, None))


def save_model(snapshot, folder: Path, seed: int, nan: bool = False) -> Path:
    model = Autoencoder(TINY.model, nnx.Rngs(seed))
    if nan:
        model.presence_head.output.bias[...] = model.presence_head.output.bias[...] * np.nan
    _, path = write_model_artifact(folder, model, snapshot, {"preset": "tiny"})
    return path


def test_random_and_nan_models_are_never_promoted(snapshot, tmp_path):
    random_model = save_model(snapshot, tmp_path / "models", seed=0)
    result = evaluate_artifact(random_model, snapshot, rules=GateRules(max_forward_latency_ms=1e6))
    popularity = result["baselines"]["popularity"]["ndcg@100"]
    assert result["challenger"]["finite"] == 1.0
    assert result["challenger"]["ndcg@100"] < popularity
    assert result["baselines"]["ease"]["ndcg@100"] > popularity  # the simulated tastes are learnable
    assert not result["decision"]["promote"]
    assert result["champion"] is None and result["champion_status"] == "none"
    assert set(result["baselines"]) == {"popularity", "ease", "user_mean", "item_mean", "bias", "item_knn"}

    nan_model = save_model(snapshot, tmp_path / "models", seed=1, nan=True)
    result = evaluate_artifact(nan_model, snapshot, champion_folder=random_model,
                               rules=GateRules(max_forward_latency_ms=1e6))
    assert result["challenger"]["finite"] == 0.0 and result["champion_status"] == "scored"
    assert not result["decision"]["promote"]
    failed_checks = {c["name"] for c in result["decision"]["checks"] if not c["passed"]}
    assert "finite_outputs" in failed_checks


def test_a_refitted_model_meets_baselines_fitted_on_the_same_users(snapshot, tmp_path):
    """A model refitted on training + validation users is compared with baselines fitted on them too."""
    model = Autoencoder(TINY.model, nnx.Rngs(0))
    rules = GateRules(max_forward_latency_ms=1e6)
    plain = write_model_artifact(tmp_path / "a", model, snapshot, {"metrics": {}})[1]
    refitted = write_model_artifact(tmp_path / "b", model, snapshot, {"metrics": {"refit_users": 400}})[1]
    on_training = evaluate_artifact(plain, snapshot, rules=rules)["baselines"]
    on_everyone = evaluate_artifact(refitted, snapshot, rules=rules)["baselines"]
    for name, metric in (("ease", "ndcg@100"), ("item_knn", "rating_mae"), ("bias", "rating_mae")):
        assert on_training[name][metric] != on_everyone[name][metric], name
    assert on_training["ease"]["ease_lambda"] == on_everyone["ease"]["ease_lambda"]  # chosen the same way


def test_models_of_another_dataset_or_corpus(snapshot, tmp_path):
    challenger_folder = save_model(snapshot, tmp_path / "models", seed=0)
    # a champion over another corpus (same shows, another order) is scored through its own corpus
    other = tmp_path / "other"
    shutil.copytree(challenger_folder, other)
    corpus = json.loads((other / "corpus.json").read_text())
    corpus["anime_ids"] = corpus["anime_ids"][::-1]
    (other / "corpus.json").write_text(json.dumps(corpus))
    document = json.loads((other / METADATA_FILE).read_text())
    document["files"]["corpus.json"] = hashlib.sha256((other / "corpus.json").read_bytes()).hexdigest()
    (other / METADATA_FILE).write_text(json.dumps(document))
    result = evaluate_artifact(challenger_folder, snapshot, champion_folder=other,
                               rules=GateRules(max_forward_latency_ms=1e6))
    size = len(corpus["anime_ids"])
    assert result["champion_status"] == f"scored through its own corpus ({size} of {size} shows known)"
    assert math.isfinite(result["champion"]["ndcg@100"]) and result["champion"]["finite"] == 1.0
    assert result["champion"]["ndcg@100"] != result["challenger"]["ndcg@100"]  # other columns, other scores
    # the challenger itself must come from this snapshot
    with pytest.raises(IncomparableModel, match="corpus"):
        evaluate_artifact(other, snapshot)
    own = json.loads((challenger_folder / METADATA_FILE).read_text())
    own["dataset"]["snapshot_id"] = "0" * 16
    (challenger_folder / METADATA_FILE).write_text(json.dumps(own))
    with pytest.raises(IncomparableModel, match="trained on snapshot"):
        evaluate_artifact(challenger_folder, snapshot)


def test_a_model_of_another_corpus_is_scored_through_its_own_columns(snapshot):
    from sprout.evaluation.held_out import held_out_users
    from sprout.evaluation.model_scores import corpus_columns, model_scores

    assert corpus_columns(np.array([30, 10, 20]), np.array([10, 20, 40, 30])).tolist() == [1, 2, -1, 0]
    users = held_out_users(snapshot, "test")
    model = Autoencoder(TINY.model, nnx.Rngs(4))
    plain = model_scores(model, users)
    identity = model_scores(model, users, model_columns=np.arange(users.corpus_size))
    np.testing.assert_allclose(identity.scores, plain.scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(identity.ratings, plain.ratings, rtol=1e-5, atol=1e-4)
    # Shows the model does not know are never recommended and predicted at the user's mean.
    columns = np.arange(users.corpus_size)
    columns[:5] = -1
    partial = model_scores(model, users, model_columns=columns)
    assert np.isneginf(partial.scores[:, :5]).all() and np.isfinite(partial.scores[:, 5:]).all()
    np.testing.assert_allclose(partial.ratings[:, 0], np.clip(users.mu, 1, 10), rtol=1e-5)


def test_reports_round_for_people_and_say_when_there_is_no_champion():
    from sprout.evaluation.report import comparison_rows, decision_markdown

    result = {
        "split": "test", "snapshot_id": "abc", "challenger_version": "v2", "champion_version": None,
        "champion_status": "none", "challenger": {"ndcg@100": 0.22916896635356385, "rating_mae": math.nan},
        "champion": None, "baselines": {"ease": {"ndcg@100": 0.5351234567}},
        "decision": {"promote": False, "checks": [], "reasons": ["below EASE"]},
    }
    rows = comparison_rows(result)
    assert rows[0]["ndcg@100"] == 0.2292 and rows[0]["rating_mae"] is None and rows[1]["ndcg@100"] == 0.5351
    text = decision_markdown(result)
    assert "no champion yet" in text and "None" not in text
