"""The architecture contracts in pyproject.toml hold, and the checker really catches a violation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--config", str(config), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_the_contracts_in_pyproject_hold():
    result = lint(ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_a_forbidden_import_breaks_a_contract(tmp_path):
    # The promotion steps use the evaluator: a contract forbidding that must fail, naming the import.
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["sprout"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "registry without evaluation"\ntype = "forbidden"\n'
        'source_modules = ["sprout.registry"]\nforbidden_modules = ["sprout.evaluation"]\n'
    )
    result = lint(config)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "sprout.registry.promotion -> sprout.evaluation" in result.stdout
