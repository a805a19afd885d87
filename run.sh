#!/usr/bin/env bash
# Set up .venv and run the API on :3000 plus one worker on the embedded
# PostgreSQL (data in .conveyor/pgdata). Ctrl-C stops everything.
# Extra arguments go to `conveyor dev`, for example ./run.sh --port 3001.
set -euo pipefail
cd "$(dirname "$0")"

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e . --config-settings editable_mode=strict

exec .venv/bin/conveyor dev "$@"
