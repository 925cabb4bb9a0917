#!/usr/bin/env bash
# The prepared GPU measurement of issue 19 (benchmarks/gpu_measure.py): about 8 minutes on one H200, rerunnable (rows
# merge into benchmarks/results.csv, benchmarks/gpu.md is rewritten from it).
#
#   FETCH=1 bash benchmarks/gpu_measure.sh --fetch-only   # on a machine with network: the official code, pinned
#   bash benchmarks/gpu_measure.sh                         # on the GPU machine, from anywhere in the checkout
#   SMOKE=1 bash benchmarks/gpu_measure.sh                 # CPU check of the script (numbers mean nothing)
#
# Env: PYTHON (default .venv/bin/python, else python); OFFICIAL_ROOT (default work_dirs/official: git-ignored, never
# committed; carry it to a GPU machine without network); OFFICIAL_DEPS (a folder put on PYTHONPATH for the official
# code's own imports: einops for BiFormer and SReT, e.g. `pip install --target DIR einops`); BUDGET_S (450: no new
# step starts after it); TIMEOUT_S (480: hard stop). Further arguments go to gpu_measure.py (--families, --smallest,
# --skip zoo|dense|official).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python
OFFICIAL_ROOT=${OFFICIAL_ROOT:-work_dirs/official}
FETCH_ONLY=0
if [ "${1:-}" = --fetch-only ]; then FETCH_ONLY=1; FETCH=1; shift; fi
if [ "${FETCH:-0}" = 1 ]; then
  mkdir -p "$OFFICIAL_ROOT"
  "$PY" benchmarks/gpu_measure.py --list-official | while read -r family repo commit; do
    if [ -d "$OFFICIAL_ROOT/$family/.git" ]; then continue; fi
    git clone --quiet "https://github.com/$repo" "$OFFICIAL_ROOT/$family"
    git -C "$OFFICIAL_ROOT/$family" checkout --quiet "$commit"
    echo "fetched $repo@$commit into $OFFICIAL_ROOT/$family"
  done
fi
[ "$FETCH_ONLY" = 1 ] && exit 0
export PYTHONPATH="${OFFICIAL_DEPS:+$OFFICIAL_DEPS:}${PYTHONPATH:-}"
SMOKE_ARG=()
[ "${SMOKE:-0}" = 1 ] && SMOKE_ARG=(--smoke)
exec timeout "${TIMEOUT_S:-480}" "$PY" benchmarks/gpu_measure.py "${SMOKE_ARG[@]}" --official-root "$OFFICIAL_ROOT" \
  --budget-s "${BUDGET_S:-450}" "$@"
