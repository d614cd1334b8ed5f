#!/usr/bin/env bash
# The GPU acceptance run (benchmarks/gpu_check.py): one table on stdout, one JSON file (--out, default
# gpu_check.json). Under 8 minutes on one GPU.
#
#   bash scripts/gpu_check.sh --prepare-wheels DIR  # on a machine with the package index and this project's
#                                                   # .venv: the wheels the run needs besides torch (the lock's
#                                                   # versions; no Ray, ZeroMQ or PyAV) into DIR; prints its size
#   bash scripts/gpu_check.sh --wheels DIR [ARGS]   # on the GPU machine (a CUDA torch preinstalled, nothing can
#                                                   # be downloaded): a venv that sees the system's torch gets
#                                                   # DIR installed offline, then the run
#   bash scripts/gpu_check.sh [ARGS]                # with this project's .venv (or PYTHON=...) as it is
#   bash scripts/gpu_check.sh --reduced [ARGS]      # tiny sizes, the CPU when there is no GPU (CI runs it)
#
# ARGS go to `python -m benchmarks.gpu_check` (--out FILE, --streams 1 4 16, --context-tokens 3000,
# --repeats 5, --no-tests). The wheel folder's venv is .venv-gpucheck (VENV=path chooses another); the
# torch family (torchaudio, torchvision) is installed from DIR only where the machine lacks it, since each
# is built against one torch release.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

python=${PYTHON:-}
if [ -z "$python" ]; then
    if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi

case "${1:-}" in
    --prepare-wheels)
        dir=${2:?"--prepare-wheels DIR"}
        mkdir -p "$dir"
        PYTHONPATH="$root" "$python" -m benchmarks.gpu_check --requirements "$dir" >/dev/null
        for list in requirements.txt torch-family.txt; do
            "$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
                --python-version 3.11 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
                --platform manylinux_2_17_x86_64 --platform any -d "$dir" -r "$dir/$list"
        done
        echo "wheels for the GPU check: $dir ($(du -sh "$dir" | cut -f1), $(ls "$dir"/*.whl | wc -l) wheels)"
        exit 0 ;;
    --wheels)
        dir=${2:?"--wheels DIR"}
        shift 2
        venv=${VENV:-.venv-gpucheck}
        base=${PYTHON:-python3}
        "$base" -c 'import torch' 2>/dev/null \
            || { echo "gpu_check.sh: $base has no torch; --wheels needs a machine with a CUDA torch installed" >&2; exit 2; }
        [ -d "$venv" ] || "$base" -m venv --system-site-packages "$venv"
        pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check --no-index --find-links "$dir" --no-deps)
        "${pip[@]}" -r "$dir/requirements.txt"
        while read -r pin; do
            [ -n "$pin" ] || continue
            "$venv/bin/python" -c "import ${pin%%==*}" 2>/dev/null || "${pip[@]}" "$pin"
        done < "$dir/torch-family.txt"
        python="$venv/bin/python" ;;
esac

PYTHONPATH="$root" exec "$python" -m benchmarks.gpu_check "$@"
