#!/usr/bin/env bash
# The main job: install, then run the demo on the embedded SQLite store and open the dashboard.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/beliefscope demo "$@"
