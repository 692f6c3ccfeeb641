"""Benchmark results as files: ``benchmarks/results/<name>.json`` with commit, date and CPU."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=RESULTS.parent
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_result(name: str, figures: dict[str, Any]) -> Path:
    """Write ``figures`` with the run's provenance to ``results/<name>.json``; returns the path."""
    RESULTS.mkdir(exist_ok=True)
    document = {
        "benchmark": name, "commit": commit(), "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": {"model": cpu_model(), "cores": os.cpu_count()}, **figures,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    return path
