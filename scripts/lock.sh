#!/usr/bin/env bash
# Refreshes the lock: every dependency of pyproject.toml, transitive ones included, resolved to exact
# versions with their hashes, for CPython 3.11 on Linux x86_64 (the CI and Docker platform).
#
#   bash scripts/lock.sh                       # re-resolve, keeping every pin that still satisfies pyproject.toml
#   bash scripts/lock.sh --upgrade             # move every package to the newest release the ranges allow
#   bash scripts/lock.sh --upgrade-package transformers   # move one package
#
# Then run the tests and the demo from a fresh environment before committing the new lock:
#   bash tests/run.sh && bash scripts/install.sh && .venv/bin/omnisift demo --duration 20
#
# uv resolves (it reads hashes from the index without downloading multi-GB wheels); installing needs only
# pip. uv itself runs from a throw-away venv, at the version pinned here.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9

tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/pip" install -q --disable-pip-version-check "uv==$UV_VERSION"
compile=("$tools/bin/uv" pip compile pyproject.toml --python-version 3.11
         --python-platform x86_64-manylinux_2_28 --generate-hashes --quiet
         --index-url "${UV_INDEX_URL:-https://pypi.org/simple}" "$@")
# dev first (a superset), then the runtime lock constrained to the same versions.
"${compile[@]}" --extra dev -o requirements/dev.lock
"${compile[@]}" -c requirements/dev.lock -o requirements/main.lock
# The GPU extra: flash-attn is a source release that compiles against the installed torch, so what it
# needs to build (wheel, psutil, ninja) is locked with it, and the sdist itself is pinned by its hash.
FLASH_ATTN_VERSION=2.8.3
printf 'einops\nwheel\npsutil\nninja\npackaging\n' \
    | "${compile[@]/pyproject.toml/-}" -c requirements/main.lock --no-header -o "$tools/gpu-build.lock"
sha=$(curl -sf -H 'Accept: application/vnd.pypi.simple.v1+json' https://pypi.org/simple/flash-attn/ \
      | python3 -c "import json, sys; print(next(f['hashes']['sha256'] for f in json.load(sys.stdin)['files']
                    if f['filename'] == 'flash_attn-$FLASH_ATTN_VERSION.tar.gz'))")
{ sed -n '1,/^flash-attn==/{/^flash-attn==/d;p}' requirements/gpu.lock
  printf 'flash-attn==%s \\\n    --hash=sha256:%s\n' "$FLASH_ATTN_VERSION" "$sha"
  cat "$tools/gpu-build.lock"; } > "$tools/gpu.lock"
mv "$tools/gpu.lock" requirements/gpu.lock

echo "requirements/main.lock: $(grep -c '^[a-z]' requirements/main.lock) packages;" \
     "requirements/dev.lock: $(grep -c '^[a-z]' requirements/dev.lock) packages"
grep -E '^(torch|torchaudio|torchvision|transformers|ray|av)==' requirements/dev.lock | cut -d' ' -f1
