#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, then runs it.
# This is the README's test command; .ci/run calls exactly this.
#
# The Python packages go into a new, empty virtual environment (.venv, recreated on every run) from the
# committed lock (requirements/dev.lock), so what is tested is what a fresh machine gets: nothing from
# the machine's own site-packages or an earlier install can stand in for a pinned package. pip's download
# cache is reused. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=$(grep -v '^#' tests/system-packages.txt | xargs)
missing=$(for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
    echo "installing system packages: $missing"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

bash scripts/install.sh --dev --fresh     # ends with the import smoke check (scripts/check_env.py)
exec .venv/bin/python -m pytest --durations=25 "$@"   # the 25 slowest tests listed at the end
