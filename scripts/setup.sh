#!/usr/bin/env bash
# Sets up a fresh machine: Debian packages for headless rendering (and, with --slurm, what the
# tests need: SLURM, headless Chromium), then a virtual environment in .venv with the project
# installed (with --slurm also its optional W&B logger, which the tests run offline). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

want_slurm=0
[ "${1:-}" = "--slurm" ] && want_slurm=1

# Headless MuJoCo rendering: EGL (Mesa) and OSMesa as a fallback.
pkgs=(libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libosmesa6 git)
# A one-node SLURM cluster for the tests marked `slurm`; Chromium for the report's browser tests.
[ $want_slurm = 1 ] && pkgs+=(munge slurm-client slurmctld slurmd chromium)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: please install these Debian packages (needs root): ${missing[*]}" >&2
    [ $want_slurm = 1 ] || exit 1
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch==2.13.0 is pinned: an unpinned torch pulls several GB of CUDA wheels on a CPU machine.
extras=test
[ $want_slurm = 1 ] && extras=test,wandb
.venv/bin/pip install -q -e ".[$extras]"
echo "setup: ready (.venv)"
