#!/usr/bin/env bash
# The tests, in the project's virtual environment (made from requirements.txt on the first run).
set -euo pipefail
cd "$(dirname "$0")"
. ./ensure_venv.sh
exec python -m pytest "$@"
