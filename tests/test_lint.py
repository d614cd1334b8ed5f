"""The repository passes its own lint configuration (`[tool.ruff]` in pyproject.toml), so CI fails on a
finding exactly as it fails on a broken test."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_the_repository_passes_ruff():
    result = _ruff("check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_reports_a_finding_in_a_file_that_has_one(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n")  # F401: imported and never used
    result = _ruff("check", "--no-cache", "--config", str(ROOT / "pyproject.toml"), str(bad))
    assert result.returncode == 1 and "F401" in result.stdout
