"""Before anything is collected: the heavy dependencies load together (scripts/check_env.py).

A torchaudio or torchvision built for another torch release would otherwise fail in the middle of
collection with a C++ linker traceback; here it stops the run with one line naming both versions.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

CHECK_ENV = Path(__file__).resolve().parents[1] / "scripts" / "check_env.py"


# Property-based tests (hypothesis): CI runs a fixed, bounded set of examples (derandomize: the same examples
# every run, no example database). HYPOTHESIS_PROFILE=dev explores more, with random seeds.
settings.register_profile("ci", derandomize=True, max_examples=100, deadline=None, database=None, print_blob=True)
settings.register_profile("dev", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def load_check_env():
    spec = importlib.util.spec_from_file_location("check_env", CHECK_ENV)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pytest_sessionstart(session: pytest.Session) -> None:
    _, failure = load_check_env().check()
    if failure:
        pytest.exit(f"environment check failed: {failure}", returncode=3)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-screenshot", action="store_true",
                     help="write the dashboard test's screenshot to docs/dashboard.png (the README's picture)")


@pytest.fixture
def ray_tmp() -> Iterator[str]:
    """A folder for a Ray started in a subprocess (its `RAY_TMPDIR`), removed afterwards. Short and under
    /tmp: Ray's socket paths live in it and a Unix socket path has at most 107 bytes."""
    path = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)
