#!/bin/sh
# Creates bench/peer/.venv with the peer's requirements only (not the project's), so the
# peer runs on its own stack. Rerunning it is cheap: pip skips what is installed.
set -eu
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
test -x .venv/bin/python || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
