#!/usr/bin/env bash
# Stage what benchmarks/gpu_check.sh needs on a GPU machine without network (the device tool's H100/H200
# machines: Python 3.12 with torch, transformers, numpy, pillow, safetensors, einops, tqdm; no diffusers),
# in git-ignored folders of this checkout, and print the folders to carry and the command to run there.
#
#   bash devtools/stage_device.sh      # from the repository root, on a machine with PyPI access
#
# Staged (the device tool carries at most 64 MiB with the checkout):
#   .wheels/    diffusers (this environment's version) for Python 3.12, installed there with --no-deps
#   .official/  the official pipeline folder (../shared/official_mimo), run beside ours
#   .parity/    parity case_b (case_a, 44 MiB, does not fit beside the rest)
# Not staged: ComfyUI and its requirements (over 64 MiB with av), so gpu_check's ComfyUI check
# reports a failure there, and ray (the window-parallel check is skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
SHARED=${SHARED:-../shared}
LIMIT=$((64 * 1024 * 1024))
version=$("$PY" -c "import diffusers; print(diffusers.__version__)")
rm -rf .wheels .official .parity
mkdir -p .wheels .parity
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .wheels "diffusers==$version"
cp -rL "$SHARED/official_mimo" .official && chmod -R u+w .official
cp -rL "$SHARED/parity/case_b" .parity/ && chmod -R u+w .parity
size=$(( $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) + $(du -sb .wheels .official .parity | awk '{s += $1} END {print s}') ))
echo "staged: $(( size / 1024 / 1024 )) MiB with the checkout (limit 64 MiB)"
[ "$size" -le "$LIMIT" ] || { echo "too large for one device call: drop something from .parity" >&2; exit 1; }
echo 'carry: [".wheels", ".official", ".parity"]'
echo 'command: MIMO_PARITY_DIR=.parity PYTHON=python3 PYTHONUNBUFFERED=1 timeout 540 bash benchmarks/gpu_check.sh 2>&1 | tee $OUT/gpu_check.log'
