#!/usr/bin/env bash
# Gathers, on a machine with a network, the packages a GPU machine without one lacks for
# scripts/gpu_check.sh, as one folder to copy there: .gpu_site/ (git-ignored). The GPU machine is
# assumed to have python3 with torch, numpy, pandas, scipy, pyyaml, lxml and absl (a CUDA image);
# what the harness adds on top is mujoco, dm_control, hydra and their small needs.
#
#   bash scripts/gpu_site.sh [PYTHON_VERSION]    (default 3.12: the version there)
#
# dm_control's and mujoco's wheels carry files the check's cells never read (the locomotion
# soccer and walker assets, labmaze, test models and tests, headers, mujoco's experimental
# renderers, Windows DLLs, and the dog's meshes: dog tasks need the full dm_control); they are
# left out, to fit the 64 MiB a device call carries (about 45 MB). gpu_check.sh puts .gpu_site on PYTHONPATH when it is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=${1:-3.12}
TAG=cp${PYV/./}
SITE=.gpu_site
WHEELS=$(mktemp -d)
trap 'rm -rf "$WHEELS"' EXIT
PACKAGES=(mujoco==3.17.0 dm_control==1.0.50 hydra-core==1.3.2 omegaconf==2.3.0
          dm-env dm-tree pyopengl glfw)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
  --abi "$TAG" --abi abi3 --abi none --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d "$WHEELS" "${PACKAGES[@]}"
# hydra's parser runtime exists only as a source archive; it is pure Python.
python3 -m pip download -q --no-deps --no-binary=:all: -d "$WHEELS" antlr4-python3-runtime==4.9.3
rm -rf "$SITE"
mkdir -p "$SITE"
for wheel in "$WHEELS"/*.whl; do
  python3 -m zipfile -e "$wheel" "$SITE"
done
tar -xzf "$WHEELS"/antlr4-python3-runtime-4.9.3.tar.gz -C "$WHEELS"
cp -r "$WHEELS"/antlr4-python3-runtime-4.9.3/src/antlr4 "$SITE"/
rm -rf "$SITE"/dm_control/locomotion/soccer "$SITE"/dm_control/locomotion/walkers/assets \
       "$SITE"/dm_control/mujoco/testing "$SITE"/dm_control/blender "$SITE"/mujoco/experimental \
       "$SITE"/mujoco/include "$SITE"/mujoco/testdata "$SITE"/mujoco/usd "$SITE"/mujoco/sysid \
       "$SITE"/OpenGL/DLLS "$SITE"/OpenGL/GLES1 "$SITE"/OpenGL/GLES3 "$SITE"/OpenGL/raw/GLES1 \
       "$SITE"/OpenGL/raw/GLES3 "$SITE"/*.dist-info/RECORD \
       "$SITE"/labmaze* "$SITE"/dm_control/suite/all_domains.png "$SITE"/dm_control/suite/dog_assets
find "$SITE" \( -name '*_test.py' -o -name __pycache__ \) -prune -exec rm -rf {} +
echo "gpu_site: $(du -sh "$SITE" | cut -f1) in $SITE for Python $PYV"
