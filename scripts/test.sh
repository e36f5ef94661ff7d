#!/usr/bin/env bash
# Every check: install (system packages, venv, dev tools), lint, types, the import contract (the
# package layering in pyproject.toml), then the whole test suite against real SQLite, a real
# PostgreSQL (started here if none answers), real MuJoCo rendering and headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --dev
. .venv/bin/activate
export MUJOCO_GL=${MUJOCO_GL:-egl}
ruff check .
ruff format --check .
mypy
lint-imports
pytest -n 2 --timeout 900 "$@"
