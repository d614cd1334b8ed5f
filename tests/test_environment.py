"""The import smoke check (scripts/check_env.py): one line of versions, or one line naming what broke."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import torch

CHECK_ENV = Path(__file__).resolve().parents[1] / "scripts" / "check_env.py"
TORCH = torch.__version__.split("+")[0]  # "2.11.0+cu130" as torch says it, "2.11.0" as pip does


def run_check(pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = None
    if pythonpath is not None:
        import os

        env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([sys.executable, str(CHECK_ENV)], capture_output=True, text=True, env=env, timeout=300)


def fake_broken_package(root: Path, name: str, version: str) -> None:
    """A package `name` at `version` whose import fails as a wheel built for another torch does."""
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(
        "raise OSError('Could not load this library: /venv/lib/" + name + "/lib/lib" + name + ".so'\n"
        "              '\\n(undefined symbol: torch_exception_get_what_without_backtrace)')\n")
    info = root / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_a_working_environment_prints_every_version_on_one_line():
    done = run_check()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    for dist in ("torch", "torchaudio", "torchvision", "av", "transformers", "ray", "pyzmq"):
        assert importlib.metadata.version(dist) in lines[0]
    assert lines[0].startswith(f"environment: torch {TORCH}")


def test_a_torchaudio_built_for_another_torch_fails_in_one_line_naming_both_versions(tmp_path):
    fake_broken_package(tmp_path, "torchaudio", "2.11.1")
    done = run_check(tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"torchaudio 2.11.1 does not load with torch {TORCH}" in lines[0]
    assert "undefined symbol" in lines[0]


def test_a_broken_torchvision_is_named_with_the_torch_it_met(tmp_path):
    fake_broken_package(tmp_path, "torchvision", "0.29.2")
    done = run_check(tmp_path)
    assert done.returncode == 1
    assert f"torchvision 0.29.2 does not load with torch {TORCH}" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
