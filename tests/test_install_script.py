"""`scripts/install.sh` says what it does before the long download, and in a terminal lets pip show its
progress (quiet when piped, as in CI). Run against a stub Python that records what it is asked, so nothing
is installed."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

STUB = """#!/usr/bin/env bash
# A Python 3.11 that records every call; `-m venv DIR` makes DIR/bin/python, another such stub.
echo "$0 $*" >> {log}
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    mkdir -p "$3/bin" && cp "$0" "$3/bin/python"
fi
exit 0
"""


def _install(tmp_path: Path, tty: bool) -> tuple[str, list[str]]:
    log = tmp_path / "calls.log"
    stub = tmp_path / "python3.11"
    stub.write_text(STUB.format(log=log))
    stub.chmod(0o755)
    env = {**os.environ, "PYTHON": str(stub), "VENV": str(tmp_path / "venv")}
    command = ["bash", str(ROOT / "scripts" / "install.sh")]
    if tty:  # util-linux `script` runs it on a pseudo-terminal
        command = ["script", "-qec", shlex.join(command), "/dev/null"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=True).stdout
    return out, log.read_text().splitlines()


@pytest.mark.parametrize("tty", [False, True])
def test_install_says_what_it_downloads_first_and_shows_pip_progress_in_a_terminal(tmp_path, tty):
    out, calls = _install(tmp_path, tty)
    lines = [ln.strip() for ln in out.splitlines()]
    assert lines[0].startswith("install.sh: creating ") and "4.6 GB to download" in lines[0]
    assert lines[2].startswith("install.sh: requirements/main.lock installed into ")
    assert lines[3] == "install.sh: checking that the installed packages load together"
    lock = next(c.split()[1:] for c in calls if "-r requirements/main.lock" in c)
    assert lock[:3] == ["-m", "pip", "install"]
    assert ("-q" in lock) is (not tty)  # pip's own progress bars in a terminal, quiet in a log
    assert calls[-1].endswith("scripts/check_env.py")
    # the same lock again: nothing to install, so no download announced
    out, _ = _install(tmp_path, tty)
    assert out.strip().splitlines() == ["install.sh: checking that the installed packages load together"]
