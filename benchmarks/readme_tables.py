"""Regenerate README figure tables from ``benchmarks/results/*.json`` (between marker comments).

    uv run python benchmarks/readme_tables.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results"
COLUMNS = (("R@20", "recall@20"), ("R@50", "recall@50"), ("NDCG@100", "ndcg@100"),
           ("rated NDCG@100", "rated_ndcg@100"), ("rating MAE", "rating_mae"), ("calibration@100", "calibration@100"))
LABELS = {"popularity": "popularity", "ease": "EASE (λ tuned on validation)",
          "edlae": "EDLAE (λ, p tuned on validation)", "user_mean": "user mean", "item_mean": "item mean",
          "bias": "user + item bias", "item_knn": "item-kNN with baselines (k 20)"}


def number(value: float) -> str:
    text = f"{value:.3f}"
    return text[1:] if text.startswith("0.") else text


def cell(figure: dict | None) -> str:
    if not figure:
        return "—"
    se = figure.get("se")
    return number(figure["mean"]) if se is None or se != se else f"{number(figure['mean'])} ± {number(se)}"


def method_rows(result: dict, figures_by_method: dict) -> list[str]:
    lines = ["| method | " + " | ".join(name for name, _ in COLUMNS) + " |",
             "| --- |" + " --- |" * len(COLUMNS)]
    order = [*LABELS, *(m for m in figures_by_method if m not in LABELS)]  # baselines first, as listed
    for method in (m for m in order if m in figures_by_method):
        figures = figures_by_method[method]
        label = LABELS.get(method, method)
        if method.startswith("model (w = "):
            weight = method.removeprefix("model (w = ").rstrip(")")
            label = f"**model**, default recipe (w = {weight}" + (
                ", the default)" if float(weight) == result["rating_weight"] else ")")
        lines.append(f"| {label} | " + " | ".join(cell(figures.get(key)) for _, key in COLUMNS) + " |")
    return lines


def presence_map(run: dict) -> str:
    fitted = run.get("presence_map") or {}
    if not fitted:
        return ""
    return (f", presence map {fitted['presence_power']:.2f}·log softplus({fitted['presence_map_scale']:.3g}·l "
            f"− {fitted['presence_offset']:.2f})")


def chosen(run: dict) -> str:
    item_item, ratings = run["item_item"], run.get("ratings", {})
    return (f"λ {item_item.get('l2', 0):g}, p {item_item.get('dropout', 0):g}, users weighted "
            f"n^−{item_item.get('user_weight_power', 0):g}, popular shows discounted "
            f"share^−{item_item.get('popularity_power', 0):g}, blend a={item_item.get('presence_scale', 0):.3g} "
            f"s={item_item.get('linear_scale', 0):.3g}{presence_map(run)}, rating "
            f"shrinkage {ratings.get('shrinkage', 0):g} and blend ({ratings.get('blend_offset', 0):.2f}, "
            f"{ratings.get('blend_neighbours', 0):.2f}, {ratings.get('blend_head', 0):.2f}), best step "
            f"{run['best_step']}, refit on {run.get('refit_users', 0):,} users, {run['train_wall_s'] / 60:.1f} min")


def by_weight(runs: list[dict]) -> str:
    """The weight choice on validation users, measured before the final refit (which sees them)."""
    weights = runs[0].get("validation_by_weight_before_refit", {})
    if not weights:
        return ""
    means = {w: {k: sum(r["validation_by_weight_before_refit"][w][k] for r in runs) / len(runs)
                 for k in ("ndcg@100", "rated_ndcg@100")} for w in weights}
    return ("Validation NDCG@100 / rated NDCG@100 by rating weight (mean over seeds): "
            + ", ".join(f"w = {w}: {number(v['ndcg@100'])} / {number(v['rated_ndcg@100'])}" for w, v in means.items())
            + ".")


def quality_table(result: dict) -> str:
    lines = method_rows(result, result["figures"])
    runs = result.get("runs", [])
    lines.append("")
    lines.append(
        f"anime-5k, seeds {', '.join(map(str, result['seeds']))}, test users, mean ± standard error; " + provenance(result)
    )
    if runs:
        lines.append("Chosen on validation users per seed: " + "; ".join(chosen(r) for r in runs) + ".")
        lines += [line for line in (by_weight(runs),) if line]
    synthetic = result.get("synthetic")
    if synthetic:
        run, splits = synthetic["run"], synthetic["splits"]
        lines += ["", f"At larger scale, same run: a simulated population of {synthetic['users']:,} users "
                  f"({splits['train']:,} training users among those with {synthetic.get('min_counted_entries', 30)} entries, corpus "
                  f"{synthetic['corpus_size']:,}), split seed {synthetic['seed']}, {splits['test']} test users:", ""]
        lines += method_rows(result, synthetic["figures"])
        lines += ["", f"Chosen on validation users: {chosen(run)}.", *[line for line in (by_weight([run]),) if line]]
    lines += ["", "![Reliability of the presence probabilities](benchmarks/results/quality_reliability.png)"]
    return "\n".join(lines)


def provenance(result: dict) -> str:
    return (f"commit `{result['commit'][:10]}`, {result['date'][:10]}, {result['cpu']['model']} "
            f"({result['cpu']['cores']} cores).")


def serving_table(result: dict) -> str:
    figures, baselines = result["figures"], result["baselines"]
    recommend, explain = figures["recommend_ms"], figures["explain_ms"]
    deep_recommend, deep_explain = baselines["deep_alone_recommend_ms"], baselines["deep_alone_explain_ms"]
    load, engine = figures["recommend_8_clients"], figures["engine_explain_ms"]
    rows = [
        ("`/recommend` p50 / p99", f"{recommend['p50']:.1f} / {recommend['p99']:.1f} ms",
         f"{deep_recommend['p50']:.1f} / {deep_recommend['p99']:.1f} ms",
         f"naive dense engine {baselines['naive_recommend_ms_p50']:.1f} ms in-process"
         + (f"; the engine itself {figures['engine_recommend_ms_p50']:.1f} ms in-process"
            if "engine_recommend_ms_p50" in figures else "")),
        ("`/explain` p50 / p99", f"{explain['p50']:.0f} / {explain['p99']:.0f} ms",
         f"{deep_explain['p50']:.0f} / {deep_explain['p99']:.0f} ms",
         f"naive engine {baselines['naive_explain_ms_p50'] / 1000:.1f} s "
         f"({baselines['naive_explain_ms_p50'] / explain['p50']:.0f}× over HTTP)"
         + (f"; batched dense hold-outs {baselines['batched_dense_explain_ms_p50']:.0f} ms in-process"
            if "batched_dense_explain_ms_p50" in baselines else "")),
        ("`/recommend` at 8 concurrent clients", f"{load['requests_per_s']:.0f} requests/s, {load['failed']} errors",
         "—", ""),
        *([(
            "`/recommend` and `/explain` p50 / p99, compact widths",
            f"{figures['compact']['recommend_ms']['p50']:.1f} / {figures['compact']['recommend_ms']['p99']:.1f} ms; "
            f"{figures['compact']['explain_ms']['p50']:.0f} / {figures['compact']['explain_ms']['p99']:.0f} ms",
            "—", f"{figures['compact']['widths']} (the default recipe below 20,000 training users)",
        )] if "compact" in figures else []),
        ("explanations on 1 vs 2 CPU devices", f"{engine['devices_1']:.0f} vs {engine['devices_2']:.0f} ms", "—", ""),
        ("XLA compilations after warm-up", str(figures["compilations_after_warm_up"]), "—", ""),
    ]
    floors = figures.get("floors")
    if floors:
        rows += [
            ("`/recommend` floor on this machine", f"{floors['recommend_floor_ms']:.1f} ms", "—",
             f"{floors['recommend_mb_read']:.0f} MB of weights at {floors['copy_gb_per_s']:.0f} GB/s, "
             f"{floors['recommend_gflop'] * 1000:.0f} MFLOP at {floors['sgemm_gflop_per_s']:.0f} GFLOP/s"),
            ("`/explain` hold-out work vs the FLOP floor", f"{engine['p50']:.0f} ms vs {floors['explain_floor_ms']:.0f} ms",
             "—", f"{floors['explain_gflop']:.1f} GFLOP: {100 * floors['explain_share_of_peak']:.0f}% of the "
             f"measured sgemm peak (goal 85%)"),
        ]
        if "first_order_p50" in engine:
            rows.append((
                "`/explain` hold-out work, first-order normaliser",
                f"{engine['first_order_p50']:.0f} ms vs {floors['explain_first_order_floor_ms']:.0f} ms", "—",
                f"{floors['explain_first_order_gflop']:.1f} GFLOP "
                f"({floors['explain_gflop'] / floors['explain_first_order_gflop']:.1f}× fewer): "
                f"{100 * floors['explain_first_order_share_of_peak']:.0f}% of the peak; "
                f"{engine['p50'] / engine['first_order_p50']:.1f}× faster than exact",
            ))
    lines = ["| figure | hybrid (served) | deep network alone | baseline |", "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {value} | {deep} | {note} |" for name, value, deep, note in rows]
    shares = figures.get("recommend_shares_ms")
    if shares:
        lines += ["", "Where one `/recommend` spends its time (in-process p50 of each stage, then what HTTP adds):", "",
                  "| stage | ms |", "| --- | --- |"]
        lines += [f"| {name} | {value:.2f} |" for name, value in shares.items()]
    lines += ["", f"Server ready {result['notes']['server_start_to_ready_s']:.0f} s after start (load and warm-up); "
              + provenance(result)]
    return "\n".join(lines)


def explain_agreement_table(result: dict) -> str:
    figures, exact = result["figures"], result["baselines"]["exact_ms"]
    first_order = figures["first_order_ms"]
    rows = [
        ("top-3 contributors identical, in order", f"{100 * figures['top3_identical_share']:.1f}%",
         f"goal {100 * figures['goals']['top3_identical_share']:.0f}%, {figures['recommendations_compared']} "
         f"recommendations of {result['users']} test users"),
        ("top-3 contributors identical as sets", f"{100 * figures['top3_same_set_share']:.1f}%", ""),
        ("10 most impactful entries identical", f"{100 * figures['same_most_impactful_share']:.1f}%", "per answer"),
        ("same recommendations", f"{100 * figures['same_recommendations_share']:.0f}%", "the ranking is not approximated"),
        ("explain p50, test users (first-order vs exact)", f"{first_order['p50']:.1f} vs {exact['p50']:.1f} ms",
         f"median profile {result['profile_entries']['median']:.0f} entries"),
        ("explain p50, 300-entry profile", f"{first_order['entries_300']:.1f} vs {exact['entries_300']:.1f} ms", ""),
    ]
    config = result["model_config"]
    lines = ["| figure | value | note |", "| --- | --- | --- |"]
    lines += [f"| {name} | {value} | {note} |" for name, value, note in rows]
    lines += ["", f"Model: the default recipe trained on {result['data']} (split seed {result['seed']}, "
              f"{config['encoder_hidden']} → {config['bottleneck']} widths, corpus {result['corpus_size']}); "
              + provenance(result)]
    return "\n".join(lines)


def serving_isolation_table(result: dict) -> str:
    settings, served = result["settings"], result["figures"]["http"]
    rows = [("HTTP, explanations on their own lane (served)", served)]
    rows += [(f"in-process, {name}", result["baselines"]["in_process"][key])
             for key, name in (("explanation_lane", "explanations on their own lane"),
                               ("in_batch", "explanations inside the shared batch (before)"))]
    lines = ["| plain `/recommend`, 1 client | idle p50 / p99 | beside explanations p50 / p99 | p99 ratio | "
             "explained p50 |", "| --- | --- | --- | --- | --- |"]
    for name, figures in rows:
        idle, loaded, explained = figures["idle_ms"], figures["beside_explanations_ms"], figures["explained_ms"]
        lines.append(f"| {name} | {idle['p50']:.1f} / {idle['p99']:.1f} ms | {loaded['p50']:.1f} / "
                     f"{loaded['p99']:.1f} ms | {figures['p99_ratio']:.1f}× | {explained['p50'] / 1000:.2f} s |")
    lines += ["", f"{settings['explaining_clients']} clients explaining {settings['explained_profile']:,}-entry "
              f"profiles beside {settings['plain_profile']}-entry plain requests, {settings['loaded_s']:g} s per "
              f"phase, load average {settings['load_average_at_start']:g} at the start; goal p99 ratio ≤ "
              f"{result['figures']['goal_p99_ratio']:g}×; " + provenance(result)]
    return "\n".join(lines)


def quality_http_table(result: dict) -> str:
    figures, baselines = result["figures"], result["baselines"]
    served, ease = figures["served"], baselines["ease"]
    keys = ("recall@20", "recall@50", "ndcg@100", "rated_ndcg@100")
    return "\n".join([
        "| over HTTP, users never in training | R@20 | R@50 | NDCG@100 | rated NDCG@100 | rating MAE |",
        "| --- | --- | --- | --- | --- | --- |",
        "| `POST /recommend` (default options), `POST /predict` | " + " | ".join(number(served[k]) for k in keys)
        + f" | {number(figures['predict_rating_mae'])} |",
        f"| EASE (λ {result['ease_lambda']:g}), same users | " + " | ".join(number(ease[k]) for k in keys) + " | — |",
        f"| user + item bias, same users | — | — | — | — | {number(baselines['bias']['rating_mae'])} |",
        f"| item-kNN with baselines, same users | — | — | — | — | {number(baselines['item_knn']['rating_mae'])} |",
        "",
        f"anime-5k seed {result['seed']}, {result['users']} test users, top {result['top_k']}; the served model "
        f"and every baseline fitted on the same {result['fitted_users']:,} users (training + validation). Of the "
        f"{result['users']} users' next shows (one held-out entry each, any of them equally likely), the returned "
        f"probabilities expected {figures['expected_next@100']:,.1f} in the top {result['top_k']} and "
        f"{figures['actual_next@100']:,.1f} were there (calibration {figures['calibration@100']:.2f}); request "
        f"p50 {figures['request_p50_ms']:.1f} ms; " + provenance(result),
    ])


def figure_rows(header: str, rows: list[tuple[str, ...]]) -> list[str]:
    lines = [f"| {header} | value | baseline, same run | goal |", "| --- | --- | --- | --- |"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def load_note(result: dict) -> str:
    return f"load average {result['notes']['load_average_at_start']:g} at the start; " + provenance(result)


def crawl_table(result: dict) -> str:
    figures, baselines, settings = result["figures"], result["baselines"], result["settings"]
    goals, one, naive = figures["goals"], baselines["one_in_flight"], baselines["row_by_row_insert"]
    rows = [
        (f"crawl, {figures['in_flight']} requests in flight", f"{figures['profiles_per_s']:,.0f} profiles/s",
         f"{one['profiles_per_s']:,.0f} profiles/s with 1 in flight ({one['users']:,} users)",
         f"≥ {goals['profiles_per_s']:,}"),
        ("requests per user, unchanged re-crawl",
         f"{figures['recrawl_requests_per_user']:.3f} ({figures['recrawl_entries_changed']:,} entries changed)", "—",
         f"≤ {goals['recrawl_requests_per_user']:g}"),
        (f"store ingest (batches of {figures['ingest_batch_users']} users)",
         f"{figures['ingest_entries_per_s']:,} entries/s",
         f"{naive['entries_per_s']:,} entries/s, row-by-row INSERT ({naive['users']:,} users)",
         f"≥ {goals['ingest_entries_per_s']:,}"),
    ]
    return "\n".join(figure_rows("crawl (`benchmarks/crawl.py`)", rows) + [
        "", f"{settings['users']:,} simulated users, {settings['entries']:,} list entries, simulator in its own "
        f"process with the rate limit lifted; " + load_note(result)])


def dataset_build_table(result: dict) -> str:
    figures, settings = result["figures"], result["settings"]
    goals, loop = figures["goals"], result["baselines"]["python_loop_normalisation"]
    rows = [
        (f"snapshot build, {settings['users']:,} users ({settings['list_rows'] / 1e6:.1f}M list rows)",
         f"{figures['rows_read_per_s'] / 1e6:.2f}M rows/s read ({figures['build_s']:.1f} s)", "—",
         f"≥ {goals['rows_read_per_s'] / 1e6:g}M/s"),
        ("peak memory of the build (its own process)", f"{figures['peak_bytes'] / 2**30:.2f} GiB", "—",
         f"≤ {goals['peak_bytes'] / 2**30:g} GiB"),
        (f"normalisation, {settings['normalisation_users']:,} users ({settings['normalisation_entries']:,} entries)",
         f"{figures['normalisation_entries_per_s'] / 1e6:.1f}M entries/s",
         f"{loop['entries_per_s'] / 1e6:.2f}M entries/s, Python loop "
         f"({figures['normalisation_entries_per_s'] / loop['entries_per_s']:,.0f}× slower)", "—"),
    ]
    return "\n".join(figure_rows("dataset (`benchmarks/dataset_build.py`)", rows) + [
        "", f"{figures['eligible_users']:,} eligible users, {figures['entries_kept']:,} entries kept; "
        + load_note(result)])


def device_name(device: str) -> str:
    """``"cpu: cpu"`` as ``CPU``, ``"gpu: NVIDIA H200"`` as ``GPU (NVIDIA H200)``."""
    platform, _, kind = device.partition(": ")
    return platform.upper() if kind in ("", platform) else f"{platform.upper()} ({kind})"


def training_table(result: dict) -> str:
    figures, dense, settings = result["figures"], result["baselines"]["dense_step"], result["settings"]
    met = "met" if figures["speed_up_vs_dense"] >= figures["goal_speed_up"] else "not met"
    rows = [
        (f"training step, default model ({settings['parameters']:,} parameters), batch {settings['batch']}",
         f"{figures['examples_per_s']:,.0f} examples/s", f"{dense['examples_per_s']:,.0f} examples/s, plain dense step",
         "—"),
        ("speed-up over the dense step", f"{figures['speed_up_vs_dense']:.2f}×", "—",
         f"≥ {figures['goal_speed_up']:g}× ({met})"),
    ]
    return "\n".join(figure_rows("training (`benchmarks/training.py`)", rows) + [
        "", f"Median of {settings['rounds']} alternating passes of {settings['steps_per_pass']} steps each, after a "
        f"compiling pass, inputs built and on the device beforehand; synthetic profiles (mean "
        f"{settings['mean_profile_entries']:.0f} entries), JAX on {device_name(settings['device'])}; "
        + load_note(result)])


def serving_load_table(result: dict) -> str:
    settings, goals = result["settings"], result["goals"]
    lines = ["| `/recommend` (`benchmarks/serving_load.py`) | clients | answers/s | p50 / p99 | errors | shed (503) "
             "| mean batch | `/livez` p99 meanwhile | connections by worker |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    floors = result["baselines"]["floor"]
    for size, figures in result["figures"].items():
        one = result["baselines"]["one_client"][size]
        name = f"{size} size ({figures['parameters'] / 1e6:.1f}M parameters)"
        for label, level in ((f"{name}, baseline: 1 client", one), *((name, f) for f in figures["levels"])):
            lines.append(f"| {label} | {level['clients']} | {level['answers_per_s']:,.1f} | {level['p50_ms']:.1f} / "
                         f"{level['p99_ms']:.1f} ms | {level['errors']:,} | {level['shed']:,} | {level['mean_batch']} "
                         f"| {_livez(level)} | {_split(level)} |")
    lines += ["", "| at 16 clients | answers/s | vs 1 client (goal ≥ "
              f"{goals['ratio_16_to_1']:g}×) | p99 (goal ≤ {goals['p99_ms_at_16']:g} ms) | floor: forward pass of a "
              "full batch | floor: HTTP framework, same body |", "| --- | --- | --- | --- | --- | --- |"]
    framework = floors["framework"]
    for size, figures in result["figures"].items():
        at16 = next(f for f in figures["levels"] if f["clients"] == 16)
        forward = floors[f"{size}_forward"]
        met = lambda ok: "" if ok else " (not met)"  # noqa: E731
        lines.append(
            f"| {size} size | {at16['answers_per_s']:,.1f} | {figures['ratio_16_to_1']:.2f}×"
            f"{met(figures['ratio_16_to_1'] >= goals['ratio_16_to_1'])} | {at16['p99_ms']:.1f} ms"
            f"{met(at16['p99_ms'] <= goals['p99_ms_at_16'])} | {forward['answers_per_s']:,.0f} answers/s "
            f"({forward['batch_ms']:.1f} ms per {forward['batch']}) | {framework['answers_per_s']:,.1f} answers/s, "
            f"p99 {framework['p99_ms']:.1f} ms |")
    workers = f"{settings['workers']} worker" + ("s" if settings["workers"] != 1 else "")
    lines += ["", f"`sprout serve` ({workers}, default settings), random weights with the item-item path on a "
              f"{settings['corpus_size']:,}-show synthetic corpus, one {settings['profile_entries']}-entry profile, "
              f"top_k {settings['top_k']}, {settings['seconds']:g} s per level from `{settings['load_generator']}` in "
              "its own process; latencies of the answered (200) requests; " + load_note(result)]
    return "\n".join(lines)


def _split(level: dict) -> str:
    split = level.get("connections_by_worker")
    return " / ".join(map(str, split)) if split else "—"


def _livez(level: dict) -> str:
    if level.get("livez_p99_ms") is None:
        return "—"
    failures = f", {level['livez_failures']} failed" if level["livez_failures"] else ""
    return f"{level['livez_p99_ms']:.1f} ms ({level['livez_probes']} probes{failures})"


def model_health_table(result: dict) -> str:
    settings, figures = result["settings"], result["figures"]
    lines = ["| days since the snapshot | fresh users | champion NDCG@100 | EASE | popularity | champion R@20 "
             "| EASE R@20 | size PSI | rating PSI | outside corpus | degraded |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for check in figures["checks"]:
        lines.append(
            f"| {check['days_since_snapshot']} | {check['fresh_users']:,.0f} | {number(check['fresh_ndcg@100'])} "
            f"| {number(check['ease_ndcg@100'])} | {number(check['popularity_ndcg@100'])} "
            f"| {number(check['fresh_recall@20'])} | {number(check['ease_recall@20'])} "
            f"| {number(check['profile_size_psi'])} | {number(check['rating_psi'])} "
            f"| {check['outside_corpus_share']:.1%} | {'yes' if check['degraded'] else 'no'} |")
    promoted = figures["at_promotion"]
    lines += ["", f"At promotion (test users of the snapshot): NDCG@100 {number(promoted['ndcg@100'])} (EASE "
              f"{number(promoted['ease_ndcg@100'])}), R@20 {number(promoted['recall@20'])}. {settings['users']:,} simulated users, {settings['anime']:,} shows "
              f"(corpus {settings['corpus']:,}), preset `{settings['config']}`; a full crawl after every "
              f"{settings['days']} days; " + load_note(result)]
    return "\n".join(lines)


def gib(value: float) -> str:
    return f"{value / 2**30:.1f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"


def duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"


def scale_cell(stage: str, figures: dict | None) -> str:
    """One stage's figures at one size: time, throughput, peak memory (or why it could not finish)."""
    if not figures:
        return "—"
    if "error" in figures:
        return f"could not finish: {figures['error']}"
    peak = f"peak {gib(figures['peak_bytes'])}"
    if stage == "spool":
        return (f"{duration(figures['generate_s'])} generating + {duration(figures['publish_s'])} publishing "
                f"{figures['batches']:,} batches, {peak}")
    if stage == "ingest":
        return (f"{figures['entries_per_s']:,} entries/s ({figures['s_per_million_entries']:.1f} s per million, "
                f"{duration(figures['seconds'])}), {peak}")
    if stage.startswith("snapshot"):
        return f"{duration(figures['seconds'])} ({figures['rows_read_per_s'] / 1e6:.2f}M rows/s read), {peak}"
    return (f"{duration(figures['seconds'])} for {figures['batches']:,} batches of {figures['batch_size']} "
            f"({figures['examples_per_s']:,} users/s), {peak}")


def scale_table(result: dict) -> str:
    figures, baselines, projection = result["figures"], result["baselines"], result["extrapolation"]
    stages, baseline, goals = figures["stages"], baselines["stages"], figures["goals"]
    size = f"{figures['users']:,} users ({figures['list_rows'] / 1e6:.0f}M list rows)" if figures["list_rows"] else (
        f"{figures['users']:,} users")
    small = f"{baselines['users']:,} users ({baselines['list_rows'] / 1e6:.1f}M rows)"
    settings = result["settings"]
    rows = [
        (f"spool: generate and publish, {settings['spool_batch_users']} users a batch", "spool", "—"),
        (f"ingest: spool → DuckDB store, up to {settings['group_entries']:,} list rows a transaction", "ingest",
         f"≥ {goals['ingest_entries_per_s']:,} entries/s"),
        ("snapshot build", "snapshot", f"≤ {goals['snapshot_peak_bytes'] / 2**30:g} GiB peak"),
        ("one training epoch's batches (no model step)", "batches", "—"),
    ]
    lines = [f"| stage (`benchmarks/scale.py`) | {size} | baseline, same run: {small} | goal |",
             "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {scale_cell(key, stages.get(key))} | {scale_cell(key, baseline.get(key))} | {goal} |"
              for name, key, goal in rows]
    if "ingest_one_per_batch" in baseline:
        lines.append(f"| ingest, one transaction per spool batch | — | "
                     f"{scale_cell('ingest', baseline['ingest_one_per_batch'])} | — |")
    if "snapshot_one_chunk" in baseline:
        lines.append(f"| snapshot build as one chunk (the whole store at once) | — | "
                     f"{scale_cell('snapshot', baseline['snapshot_one_chunk'])} | — |")
    projected = projection["stages"]
    if projected:
        lines += ["", f"Extrapolated to the original system's data ({projection['users'] / 1e6:g}M users, "
                  f"{projection['list_rows'] / 1e6:.0f}M list rows), linear in list rows through the two sizes (the "
                  "ingest's time per row grows with the rows already stored): "
                  + "; ".join(f"{name} {duration(stage['seconds'])}, peak {gib(stage['peak_bytes'])}"
                              + ("" if stage["fits_this_machine"] else " (more than this machine has)")
                              for name, stage in projected.items()) + "."]
    notes = result["notes"]
    if notes.get("ingest"):
        verdict = "Ingest" if notes.get("ingest_goal_met") else "Ingest below its goal"
        lines += ["", f"{verdict}: {notes['ingest']}."]
    if notes.get("stages_that_could_not_finish"):
        lines += ["", "Could not finish on this machine: " + "; ".join(
            f"{name}: {why}" for name, why in notes["stages_that_could_not_finish"].items()) + "."]
    lines += ["", f"Memory is each stage's own peak resident set (its own process); machine memory "
              f"{gib(settings['machine_bytes'])}; " + load_note(result)]
    return "\n".join(lines)


def replace_between(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README has no <!-- {name}:start --> … <!-- {name}:end --> block")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


# README block name -> (results file, the function that renders it).
TABLES = {
    "model_health": ("model_health.json", model_health_table),
    "quality": ("quality.json", quality_table),
    "quality_http": ("quality_http.json", quality_http_table),
    "serving": ("serving.json", serving_table),
    "serving_isolation": ("serving_isolation.json", serving_isolation_table),
    "explain_agreement": ("explain_agreement.json", explain_agreement_table),
    "crawl": ("crawl.json", crawl_table),
    "dataset_build": ("dataset_build.json", dataset_build_table),
    "training": ("training.json", training_table),
    "serving_load": ("serving_load.json", serving_load_table),
    "scale": ("scale.json", scale_table),
}


def rendered(text: str, results: Path = RESULTS) -> str:
    """``text`` with every block whose results file exists rendered from that file."""
    for name, (file, table) in TABLES.items():
        path = results / file
        if path.is_file():
            text = replace_between(text, name, table(json.loads(path.read_text())))
    return text


def main() -> None:
    README.write_text(rendered(README.read_text()))


if __name__ == "__main__":
    main()
