#!/usr/bin/env bash
# Installs OmniSIFT Stream into a virtual environment from the committed lock, exactly as tested.
#
#   bash scripts/install.sh            # .venv with the runtime lock (requirements/main.lock)
#   bash scripts/install.sh --dev      # .venv with the test lock (requirements/dev.lock)
#   bash scripts/install.sh --fresh    # delete .venv first: nothing from an earlier install survives
#   bash scripts/install.sh --gpu      # and FlashAttention-2 (requirements/gpu.lock; compiles, needs nvcc)
#
# VENV=path chooses another folder. The venv is always new or already made by this script from the same
# lock file; a changed lock recreates it, so what runs is what the lock says. pip's cache is reused, so a
# second install downloads nothing. The last step imports the heavy packages and fails in one line if
# the torch family does not load together (scripts/check_env.py).
set -euo pipefail
cd "$(dirname "$0")/.."

lock=requirements/main.lock
fresh=0
gpu=0
for arg in "$@"; do
    case "$arg" in
        --dev) lock=requirements/dev.lock ;;
        --fresh) fresh=1 ;;
        --gpu) gpu=1 ;;
        *) echo "install.sh: unknown option $arg (use --dev, --fresh, --gpu)" >&2; exit 2 ;;
    esac
done
venv=${VENV:-.venv}
python=${PYTHON:-python3}

"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || { echo "install.sh: needs CPython 3.11 (the lock is for 3.11); set PYTHON=/path/to/python3.11" >&2; exit 2; }

stamp="$venv/.omnisift-lock"
want="$(sha256sum "$lock" pyproject.toml | sha256sum | cut -c1-16) $lock"
# Long steps say what they do first. In a terminal pip shows its own progress (a bar per download); piped
# or in CI it stays quiet (-q) and the lines below are the log.
if [ -t 1 ]; then progress=(); else progress=(-q); fi
if [ "$fresh" = 1 ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "install.sh: creating $venv and installing $lock: the first time about 4.6 GB to download (torch with"
    echo "  its CUDA libraries), several minutes; pip caches it, so later installs take about two minutes"
    started=$SECONDS
    rm -rf "$venv"
    "$python" -m venv "$venv"
    # The lock pins every package with its hashes; the project itself goes in without dependencies and
    # without build isolation, so nothing outside the lock is resolved or fetched.
    "$venv/bin/python" -m pip install "${progress[@]}" --disable-pip-version-check --require-hashes -r "$lock"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
    echo "$want" > "$stamp"
    echo "install.sh: $lock installed into $venv in $((SECONDS - started)) s"
fi
if [ "$gpu" = 1 ]; then
    echo "install.sh: compiling FlashAttention-2 against the installed torch (tens of minutes; MAX_JOBS bounds memory)"
    # compiles against the torch installed above, hence no build isolation
    "$venv/bin/python" -m pip install "${progress[@]}" --disable-pip-version-check --require-hashes \
        --no-build-isolation -r requirements/gpu.lock
fi
echo "install.sh: checking that the installed packages load together"
"$venv/bin/python" scripts/check_env.py
