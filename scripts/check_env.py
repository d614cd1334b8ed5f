"""Import smoke check: the heavy dependencies load together, in one line either way.

Run by `scripts/install.sh` after every install and by `tests/run.sh` before the tests. Prints the
versions that loaded, or exits 1 with one line naming what failed and, for the torch family, the pair
of versions that do not load together (a torchaudio or torchvision wheel is built against one torch
release; against another its C++ extension fails with an undefined symbol).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys

# (import name, distribution name), in the order they are imported: torch first, since the others
# load their extensions against it.
CHECKS = [
    ("torch", "torch"),
    ("torchaudio", "torchaudio"),
    ("torchvision", "torchvision"),
    ("av", "av"),
    ("transformers", "transformers"),
    ("ray", "ray"),
    ("zmq", "pyzmq"),
]
TORCH_FAMILY = {"torchaudio", "torchvision"}


def installed_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def exercise(name: str) -> None:
    """Touch the part of each package that loads native code, so a broken build fails here."""
    if name == "torchaudio":
        import torch
        import torchaudio

        torchaudio.functional.resample(torch.zeros(1, 160), 16000, 8000)  # loads libtorchaudio
    elif name == "torchvision":
        import torch
        import torchvision

        torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)  # the C++ operators
    elif name == "transformers":
        from transformers import (  # noqa: F401  the classes this project loads
            Qwen2_5OmniProcessor,
            Qwen2_5OmniThinkerForConditionalGeneration,
        )


def one_line(error: BaseException, limit: int = 300) -> str:
    """The error's type and message on one line (a linker error spans several)."""
    return f"{type(error).__name__}: {' '.join(str(error).split())}"[:limit]


def check(skip: tuple[str, ...] = ()) -> tuple[list[str], str | None]:
    """The `name version` of each package that loaded, and the failure of the first one that did not;
    the import names in `skip` are not checked (a run that does not use them, e.g. the GPU check's device
    tests without Ray, ZeroMQ or PyAV)."""
    loaded = []
    for name, dist in CHECKS:
        if name in skip:
            continue
        try:
            importlib.import_module(name)
            exercise(name)
        except Exception as error:  # noqa: BLE001  any failure to load is reported, in one line
            version = installed_version(dist)
            if name in TORCH_FAMILY:
                pair = f"{name} {version} does not load with torch {installed_version('torch')}"
                return loaded, f"{pair} ({one_line(error)}); install the pair from requirements/*.lock"
            return loaded, f"{name} {version} does not load ({one_line(error)})"
        loaded.append(f"{name} {installed_version(dist)}")
    return loaded, None


def main() -> int:
    loaded, failure = check()
    if failure:
        print(f"environment check failed: {failure}", file=sys.stderr)
        return 1
    print("environment: " + ", ".join(loaded) + f" (python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
