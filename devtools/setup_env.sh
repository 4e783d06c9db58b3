#!/usr/bin/env bash
# Creates .venv in the repository with torch and every requirement of the pack and its tests.
# Sourced by .ci/run and devtools/demo.sh (so the venv stays active for them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[ -x .venv/bin/python ] || python3.11 -m venv .venv
. .venv/bin/activate
export PIP_PROGRESS_BAR=off PIP_DISABLE_PIP_VERSION_CHECK=1
python -c "import torch, torchvision" 2>/dev/null ||
    python -m pip install -q torch==2.14.1 torchvision==0.29.1  # not in requirements: ComfyUI users keep theirs
python -m pip install -q -r requirements.txt -r requirements-test.txt
# ComfyUI 0.3.75 (cached under $MIMO_COMFYUI_HOME or ~/.cache/mimo-comfyui) with its requirements.
python -m devtools.comfy_host >/dev/null
