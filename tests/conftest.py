"""Before anything is collected: the heavy dependencies load together (scripts/check_env.py).

A torchaudio or torchvision built for another torch release would otherwise fail in the middle of
collection with a C++ linker traceback; here it stops the run with one line naming both versions.

Where the model-path tests run: `pytest --device cuda --dtype bfloat16` runs every test that takes the
`target` fixture on that device in that dtype (default: the CPU in float32, the suite CI runs). No such test
picks a device or dtype of its own; each states its tolerance for every dtype it accepts (`target.tol`).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
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
    skip = tuple(n for n in session.config.getoption("--env-check-skip").split(",") if n)
    _, failure = load_check_env().check(skip)
    if failure:
        pytest.exit(f"environment check failed: {failure}", returncode=3)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-screenshot", action="store_true",
                     help="write the dashboard test's screenshot to docs/dashboard.png (the README's picture)")
    parser.addoption("--env-check-skip", default="",
                     help="import names the environment check leaves out, comma-separated (e.g. ray,zmq,av: "
                          "the GPU check's device tests, which need none of them)")
    parser.addoption("--device", default="cpu",
                     help="device of the model-path tests (the `target` fixture): cpu (default), cuda, cuda:1")
    parser.addoption("--dtype", default="float32", choices=sorted(DTYPES),
                     help="dtype of the model-path tests (default float32)")


DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Target:
    """Where the model-path tests run: `--device` and `--dtype`. `device`/`dtype` are what `load_model`,
    `OmniSession.from_pretrained` and pipeline configs take (strings); `torch_device`/`torch_dtype` the
    torch objects."""

    device: str
    dtype: str

    @property
    def torch_device(self):
        import torch

        return torch.device(self.device)

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    @property
    def is_default(self) -> bool:
        """The CPU in float32: the suite CI runs, where exactness tests hold to float32 rounding."""
        return self.device == "cpu" and self.dtype == "float32"

    def load(self) -> dict[str, str]:
        """Keywords of `load_model` and `OmniSession.from_pretrained`."""
        return {"device": self.device, "dtype": self.dtype}

    def tol(self, **by_dtype: float | tuple[float, float]) -> dict[str, float]:
        """`assert_close` keywords for this dtype from a test's stated tolerances, e.g.
        `tol(float32=1e-5, bfloat16=(0.05, 0.02))` (atol, or (atol, rtol); a bare atol means rtol 0). A test
        that states none for this dtype is skipped, saying so: it has not been checked in that dtype."""
        if self.dtype not in by_dtype:
            pytest.skip(f"no tolerance stated for {self.dtype}")
        value = by_dtype[self.dtype]
        atol, rtol = value if isinstance(value, tuple) else (value, 0.0)
        return {"atol": atol, "rtol": rtol}

    def atol(self, **by_dtype: float) -> float:
        """The absolute tolerance a test states for this dtype (`pytest.approx(..., abs=target.atol(...))`)."""
        return self.tol(**by_dtype)["atol"]


@pytest.fixture(scope="session")
def target(request) -> Target:
    """The device and dtype of the model-path tests (`--device`, `--dtype`)."""
    device, dtype = request.config.getoption("--device"), request.config.getoption("--dtype")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            pytest.exit(f"--device {device}: torch {torch.__version__} sees no CUDA device", returncode=4)
    return Target(device, dtype)


@pytest.fixture
def ray_tmp() -> Iterator[str]:
    """A folder for a Ray started in a subprocess (its `RAY_TMPDIR`), removed afterwards. Short and under
    /tmp: Ray's socket paths live in it and a Unix socket path has at most 107 bytes."""
    path = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """The tiny random Qwen2.5-Omni (selector inside, the OmniSIFT-7B layout), built once per test session
    and shared by every folder's tests (read only: a test that changes a model folder makes its own)."""
    from omnisift.tiny import make_tiny_omni

    return make_tiny_omni(tmp_path_factory.mktemp("tiny-omni"))
