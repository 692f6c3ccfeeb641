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
COLUMNS = (("R@20", "recall@20"), ("R@50", "recall@50"), ("NDCG@100", "ndcg@100"), ("rating MAE", "rating_mae"))
LABELS = {"popularity": "popularity", "ease": "EASE (λ tuned on validation)", "user_mean": "user mean",
          "item_mean": "item mean"}


def number(value: float) -> str:
    text = f"{value:.3f}"
    return text[1:] if text.startswith("0.") else text


def cell(figure: dict | None) -> str:
    if not figure:
        return "—"
    se = figure.get("se")
    return number(figure["mean"]) if se is None or se != se else f"{number(figure['mean'])} ± {number(se)}"


def quality_table(result: dict) -> str:
    lines = ["| method | " + " | ".join(name for name, _ in COLUMNS) + " |",
             "| --- |" + " --- |" * len(COLUMNS)]
    for method, figures in result["figures"].items():
        label = LABELS.get(method, method)
        if method == "model":
            label = f"model, default recipe (w = {result['rating_weight']:g})"
        lines.append(f"| {label} | " + " | ".join(cell(figures.get(key)) for _, key in COLUMNS) + " |")
    runs = result.get("runs", [])
    lines.append("")
    lines.append(
        f"anime-5k, seeds {', '.join(map(str, result['seeds']))}, test users, mean ± standard error; "
        f"commit `{result['commit'][:10]}`, {result['date'][:10]}, {result['cpu']['model']} ({result['cpu']['cores']} cores)."
    )
    if runs:
        blends = "; ".join(
            f"λ {r['item_item'].get('l2', 0):g}, p {r['item_item'].get('dropout', 0):g}, blend a={r['item_item'].get('presence_scale', 0):g} "
            f"s={r['item_item'].get('linear_scale', 0):g}, best step {r['best_step']}, {r['train_wall_s'] / 60:.1f} min"
            for r in runs
        )
        lines.append(f"Chosen on validation users per seed: {blends}.")
    return "\n".join(lines)


def replace_between(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README has no <!-- {name}:start --> … <!-- {name}:end --> block")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def main() -> None:
    text = README.read_text()
    quality = RESULTS / "quality.json"
    if quality.is_file():
        text = replace_between(text, "quality", quality_table(json.loads(quality.read_text())))
    README.write_text(text)


if __name__ == "__main__":
    main()
