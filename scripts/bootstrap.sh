#!/usr/bin/env bash
# Installs what Beliefscope needs on a fresh Debian machine: system packages (when root and
# missing) and a virtual environment at .venv with the project and its dev tools.
# Usage: scripts/bootstrap.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[[ "${1:-}" == "--dev" ]] && dev=1

packages=(python3-venv libegl1 libgl1 libosmesa6 libglib2.0-0)
if [[ $dev == 1 ]]; then
  # tests: headless Chromium; PostgreSQL (its server package brings psql, pg_dump and
  # pg_restore); mount (the full-disk tests mount a small tmpfs)
  packages+=(chromium chromium-driver postgresql postgresql-contrib mount)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  sudo=""
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || { echo "bootstrap: missing system packages (run as root): ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "bootstrap: installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
extra=""
[[ $dev == 1 ]] && extra="[dev,cluster]"
.venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e ".${extra}"
