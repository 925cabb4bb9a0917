#!/usr/bin/env bash
# Creates .venv/ in the repository root and installs everything backbonezoo needs:
# torch + torchvision, the package (editable, with [mm,dev]) and the OpenMMLab stack
# (mmcv 2.1.0 built with its CPU ops, see docs/openmmlab.md). Idempotent: a second run
# with nothing changed returns in seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3.11}"
command -v "$PYTHON_BIN" >/dev/null 2>&1 || PYTHON_BIN=python3
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0
MMCV_WHEEL_SHA256=13374c80cc4857e5406c8ab49e7b3a06930fc07e83410eea2f0eed9001505bec
CACHE="${BACKBONEZOO_CACHE:-$HOME/.cache/backbonezoo}"
STAMP="$VENV/.backbonezoo-setup"

step() { echo "==> [setup] $*"; CURRENT_STEP="$*"; }
trap 'echo "!! [setup] failed during: ${CURRENT_STEP:-start}" >&2' ERR

fingerprint() {
  cat "$ROOT/pyproject.toml" "$ROOT/tools/setup.sh" | sha256sum | cut -d' ' -f1
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(fingerprint)" && -x "$VENV/bin/python" ]]; then
  echo "==> [setup] .venv is up to date (delete $STAMP to force a reinstall)"
  exit 0
fi

step "create virtual environment $VENV with $($PYTHON_BIN --version)"
[[ -x "$VENV/bin/python" ]] || "$PYTHON_BIN" -m venv "$VENV"
PY="$VENV/bin/python"
# pip on this kind of machine warns once per package about local index folders it cannot use: drop that noise.
pip_() { "$PY" -m pip --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

step "install build tools (setuptools<82: mmcv and mmengine still import pkg_resources)"
pip_ install -q "setuptools>=64,<82" wheel ninja

step "install torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION"
if ! "$PY" -c "import torch, torchvision, sys; sys.exit(not (torch.__version__.startswith('$TORCH_VERSION') and torchvision.__version__.startswith('$TORCHVISION_VERSION')))" 2>/dev/null; then
  pip_ install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
fi

step "install mmcv==$MMCV_VERSION with its compiled CPU ops"
if ! "$PY" -c "import mmcv, mmcv._ext, sys; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" 2>/dev/null; then
  PYTAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
  WHEEL_DIR="$CACHE/wheels/torch-$TORCH_VERSION"
  mkdir -p "$WHEEL_DIR"
  WHEEL="$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-"$PYTAG"-*.whl 2>/dev/null | head -n1 || true)"
  SHARED_WHEEL="$ROOT/../shared/wheels/mmcv-$MMCV_VERSION-$PYTAG-$PYTAG-linux_$(uname -m).whl"
  if [[ -z "$WHEEL" && -f "$SHARED_WHEEL" ]] && echo "$MMCV_WHEEL_SHA256  $SHARED_WHEEL" | sha256sum -c --quiet - 2>/dev/null; then
    echo "    using the prebuilt wheel in ../shared/wheels (sha256 checked)"
    cp "$SHARED_WHEEL" "$WHEEL_DIR/" && WHEEL="$WHEEL_DIR/$(basename "$SHARED_WHEEL")"
  fi
  if [[ -z "$WHEEL" ]]; then
    echo "    no cached wheel: building mmcv $MMCV_VERSION from source (about 16 minutes on 2 cores)"
    BUILD="$(mktemp -d)"
    pip_ download -q --no-deps --no-binary :all: --no-build-isolation -d "$BUILD" "mmcv==$MMCV_VERSION"
    tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
    # torch 2.14's headers need C++20; mmcv's -std flag comes last, so patch it.
    sed -i 's/c++17/c++20/g' "$BUILD/mmcv-$MMCV_VERSION/setup.py"
    MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-$(nproc)}" CFLAGS="-O2 -g0 -DNDEBUG" \
      pip_ wheel -q --no-build-isolation --no-deps -w "$WHEEL_DIR" "$BUILD/mmcv-$MMCV_VERSION"
    rm -rf "$BUILD"
    WHEEL="$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-"$PYTAG"-*.whl | head -n1)"
  fi
  pip_ install -q --no-deps "$WHEEL"
  pip_ install -q addict packaging pyyaml yapf "opencv-python==4.12.0.88" "mmengine==0.10.7"
fi

step "install backbonezoo (editable) with [mm,dev]"
pip_ install -q --no-build-isolation -e "$ROOT[mm,dev]"

step "check the stack imports"
"$PY" -c "import backbonezoo, timm, triton, mmengine, mmcv, mmcv._ext, mmdet, mmseg, albumentations; print('    torch', __import__('torch').__version__, '| timm', timm.__version__, '| mmcv', mmcv.__version__, '| mmdet', mmdet.__version__, '| mmseg', mmseg.__version__)"

fingerprint > "$STAMP"
echo "==> [setup] done"
