"""The reliability plot of `benchmarks/quality.py`, drawn from its results file (so README's
picture always matches the figures beside it).

    uv run python benchmarks/reliability_plot.py [benchmarks/results/quality.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402


def draw_reliability(results: Path, output: Path) -> Path:
    """Predicted chance of being the next show against how often it was, per seed and data set."""
    document = json.loads(Path(results).read_text())
    series = [(f"anime-5k seed {seed}", run["reliability"]) for seed, run in zip(document["seeds"], document["runs"])]
    if document.get("synthetic"):
        series.append((f"simulated, {document['synthetic']['users']:,} users", document["synthetic"]["run"]["reliability"]))
    figure, axes = plt.subplots(figsize=(5.5, 5))
    axes.plot([1e-5, 1], [1e-5, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    for label, points in series:
        # a bin expected to hold fewer than 5 next shows measures noise (0 of 0.2 expected, say)
        points = [p for p in points if p["count"] * p["predicted"] >= 5]
        axes.plot([p["predicted"] for p in points], [max(p["observed"], 1e-5) for p in points], marker="o", label=label)
    axes.set(xscale="log", yscale="log", xlim=(1e-5, 1), ylim=(1e-5, 1),
             xlabel="probability shown (top 100, test users)",
             ylabel="how often it was the next show (hits / held-out entries)",
             title="Presence probabilities: reliability")
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    plt.close(figure)
    return output


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results" / "quality.json"
    print(draw_reliability(source, source.parent / "quality_reliability.png"))
