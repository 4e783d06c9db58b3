#!/usr/bin/env bash
# Stage what benchmarks/gpu_check.sh needs on a GPU machine without network (the device tool's H100/H200
# machines: Python 3.12 with torch, transformers, numpy, pillow, safetensors, einops, aiohttp, scipy,
# opencv; no diffusers, no ComfyUI), in git-ignored folders of this checkout, and print the two calls
# to make there (the device tool carries at most 64 MiB a call, the checkout included).
#
#   bash devtools/stage_device.sh      # from the repository root, on a machine with PyPI access
#
# Call 1 (speed beside the official, modes, parity and the fp16/bf16 bound, rasterizer, a profile, the
# layer variants, then torch.compile; not the footprint counts, which run on fake tensors and need no GPU) carries:
#   .wheels/    diffusers (this environment's version), installed there with --no-deps
#   .official/  the official pipeline folder (../shared/official_mimo), run beside ours
#   .parity/    parity case_b (case_a, 44 MiB, does not fit beside the rest)
# Call 2 (a real ComfyUI on the GPU, then 100/300/1,000-frame runs) carries .wheels/ and:
#   .comfy/     ComfyUI 0.3.75 as ComfyUI.tar.xz (tests left out), wheels/ of its requirements that the
#               device lacks (this environment's versions), frontend/ (a placeholder page: the check
#               talks to the API only, and the frontend package alone is over 64 MiB)
# Not staged: ray (about 60 MiB), so the window-parallel check is skipped there.
# PYVER=3.11 stages wheels for another Python (to try call 2 here, in a clean virtual environment).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
PYVER=${PYVER:-3.12}
SHARED=${SHARED:-../shared}
# ComfyUI's requirements missing on the device image (see the device tool's KINDS.md), with their own
# requirements (typing_extensions too: pydantic needs 4.16 or newer); kornia (only some comfy_extras
# nodes) is left out.
COMFY_WHEELS="av torchsde trampoline alembic Mako SQLAlchemy greenlet pydantic pydantic_core annotated-types
typing-inspection typing_extensions pydantic-settings python-dotenv spandrel"

download() {  # NAME... at this environment's versions, for $PYVER on x86-64 Linux, into the folder $1
    local dest=$1; shift
    local specs=()
    for name in "$@"; do specs+=("$name==$("$PY" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$name")"); done
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dest" "${specs[@]}"
}

call_size() {  # MiB that a call carrying these folders sends, the checkout included
    echo $(( ($(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) + $(du -scb "$@" | tail -1 | cut -f1)) / 1024 / 1024 ))
}

rm -rf .wheels .official .parity .comfy
mkdir -p .wheels .parity .comfy/wheels .comfy/frontend
download .wheels diffusers
cp -rL "$SHARED/official_mimo" .official && chmod -R u+w .official
cp -rL "$SHARED/parity/case_b" .parity/ && chmod -R u+w .parity

comfy=$("$PY" -c 'from devtools.comfy_host import provision_comfyui; print(provision_comfyui())')
tar -C "$(dirname "$comfy")" -cJf .comfy/ComfyUI.tar.xz --exclude=tests --exclude=tests-unit \
    --exclude=__pycache__ --exclude='*.pyc' "$(basename "$comfy")"
# shellcheck disable=SC2086
download .comfy/wheels $COMFY_WHEELS
echo '<!doctype html><title>ComfyUI (API only)</title><p>Staged for benchmarks/gpu_comfy.py: no frontend.' \
    > .comfy/frontend/index.html

ok=1
one=$(call_size .wheels .official .parity); two=$(call_size .wheels .comfy)
echo "call 1: $one MiB with the checkout; call 2: $two MiB (limit 64 MiB each)"
[ "$one" -lt 64 ] || { echo "call 1 is too large: drop something from .parity" >&2; ok=0; }
[ "$two" -lt 64 ] || { echo "call 2 is too large: drop a wheel from .comfy/wheels" >&2; ok=0; }
[ $ok = 1 ] || exit 1
cat <<'EOF'
call 1, timeout_s 560: carry [".wheels", ".official", ".parity"]
  MIMO_PARITY_DIR=.parity PYTHON=python3 PYTHONUNBUFFERED=1 timeout 540 bash benchmarks/gpu_check.sh --skip comfy,footprint,long 2>&1 | tee $OUT/gpu_check.log
call 2 at once (the machine stays warm 30 s), timeout_s 300: carry [".wheels", ".comfy"]
  PYTHON=python3 PYTHONUNBUFFERED=1 timeout 280 bash benchmarks/gpu_check.sh --only comfy,long 2>&1 | tee $OUT/gpu_comfy.log
EOF
