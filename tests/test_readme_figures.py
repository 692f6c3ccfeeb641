"""README's figure tables are exactly what benchmarks/readme_tables.py renders from
benchmarks/results/*.json: a figure in README can always be traced to a run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_tables():
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "benchmarks" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_results_file_has_its_readme_block_and_the_block_matches():
    tables = readme_tables()
    readme = (ROOT / "README.md").read_text()
    results = sorted(p.name for p in (ROOT / "benchmarks" / "results").glob("*.json"))
    assert results, "no benchmark results in the repository"
    assert results == sorted(file for file, _ in tables.TABLES.values()), "a results file without a README table"
    assert tables.rendered(readme) == readme, "README disagrees with benchmarks/results: run benchmarks/readme_tables.py"


def test_every_results_file_says_where_and_when_it_was_measured():
    for path in (ROOT / "benchmarks" / "results").glob("*.json"):
        result = json.loads(path.read_text())
        assert len(result["commit"]) == 40 and result["date"][:4].isdigit(), path.name
        assert result["cpu"]["cores"] >= 1 and result["cpu"]["model"], path.name
        assert "baselines" in result and result["baselines"], path.name


def test_a_changed_figure_is_caught(tmp_path):
    tables = readme_tables()
    readme = (ROOT / "README.md").read_text()
    for file in (ROOT / "benchmarks" / "results").glob("*.json"):
        (tmp_path / file.name).write_text(file.read_text())
    quality = json.loads((tmp_path / "quality.json").read_text())
    quality["figures"]["ease"]["ndcg@100"]["mean"] += 0.1
    (tmp_path / "quality.json").write_text(json.dumps(quality))
    assert tables.rendered(readme, tmp_path) != readme
