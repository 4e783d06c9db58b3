#!/usr/bin/env bash
# Stage what benchmarks/gpu_check.sh needs on a GPU machine without network (the device tool's H100/H200
# machines: Python 3.12 with torch, transformers, numpy, pillow, safetensors, einops, aiohttp, scipy,
# opencv; no diffusers, no ComfyUI), in git-ignored folders of this checkout, and print the three calls
# to make there (the device tool carries at most 64 MiB a call, the checkout included; what a call carried
# stays on the machine while it is warm, so the last call runs the whole check on every call's files).
#
#   bash devtools/stage_device.sh      # from the repository root, on a machine with PyPI access
#
# Call 1 (a few seconds: it only brings files) carries:
#   .wheels/    diffusers (this environment's version), installed there with --no-deps
#   .official/  the official pipeline folder (../shared/official_mimo), run beside ours
#   .parity/    parity case_b
# Call 2 (likewise) carries .parity-a/: parity case_a (44 MiB: it fits in no other call)
# Call 3 (the whole check, every part within a 470 s budget) carries .wheels/ and:
#   .comfy/     ComfyUI 0.3.75 as ComfyUI.tar.xz (tests left out), wheels/ of its requirements that the
#               device lacks (this environment's versions), frontend/ (a placeholder page: the check
#               talks to the API only, and the frontend package alone is over 64 MiB)
# Not staged: ray (about 60 MiB), so the window-parallel check is skipped there.
# PYVER=3.11 stages wheels for another Python (to try call 3 here, in a clean virtual environment).
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

rm -rf .wheels .official .parity .parity-a .comfy
mkdir -p .wheels .parity .parity-a .comfy/wheels .comfy/frontend
download .wheels diffusers
cp -rL "$SHARED/official_mimo" .official && chmod -R u+w .official
cp -rL "$SHARED/parity/case_b" .parity/ && cp -rL "$SHARED/parity/case_a" .parity-a/ && chmod -R u+w .parity .parity-a

comfy=$("$PY" -c 'from devtools.comfy_host import provision_comfyui; print(provision_comfyui())')
tar -C "$(dirname "$comfy")" -cJf .comfy/ComfyUI.tar.xz --exclude=tests --exclude=tests-unit \
    --exclude=__pycache__ --exclude='*.pyc' "$(basename "$comfy")"
# shellcheck disable=SC2086
download .comfy/wheels $COMFY_WHEELS
echo '<!doctype html><title>ComfyUI (API only)</title><p>Staged for benchmarks/gpu_comfy.py: no frontend.' \
    > .comfy/frontend/index.html

ok=1
one=$(call_size .wheels .official .parity); two=$(call_size .parity-a); three=$(call_size .wheels .comfy)
echo "call 1: $one MiB with the checkout; call 2: $two MiB; call 3: $three MiB (limit 64 MiB each)"
[ "$one" -lt 64 ] || { echo "call 1 is too large: drop something from .official" >&2; ok=0; }
[ "$two" -lt 64 ] || { echo "call 2 is too large: the checkout grew" >&2; ok=0; }
[ "$three" -lt 64 ] || { echo "call 3 is too large: drop a wheel from .comfy/wheels" >&2; ok=0; }
[ $ok = 1 ] || exit 1
cat <<'EOF'
Three calls, one right after another (the machine stays warm 30 s after a call, and what a call carried
stays there while it is warm):
call 1, timeout_s 60: carry [".wheels", ".official", ".parity"]
  ls -d .wheels .official .parity && nvidia-smi --query-gpu=name,memory.total --format=csv
call 2, timeout_s 60: carry [".parity-a"]
  ls -d .wheels .official .parity .parity-a
call 3, timeout_s 540: carry [".wheels", ".comfy"] (the whole check, every part within a 470 s budget)
  GPU_CHECK_PARITY=".parity .parity-a" PYTHON=python3 PYTHONUNBUFFERED=1 bash benchmarks/gpu_check.sh --budget 470 2>&1 | tee $OUT/gpu_check.log
  (its lines are also in $OUT/gpu_check.jsonl; the summary table comes last. If it reports no official
  folder or no parity cases, the machine went cold between the calls: make calls 1 and 2 again, then 3.)
EOF
