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
# The newest ComfyUI frontend for tests/test_browser.py: pip download into that cache (beside, never
# replacing, the pinned comfyui-frontend-package); servers use it through --front-end-root.
python -m devtools.frontends >/dev/null
# SAM 2 (MIMOTrackHuman): its sdist built against this torch, without the optional CUDA extension
# (decomposition_deps.md §1.1); antlr4 4.9.3 and omegaconf < 2.4 keep Hydra's config parser working.
if ! python -c "import sam2, importlib.metadata as m; assert m.version('antlr4-python3-runtime') == '4.9.3'" 2>/dev/null; then
    python -m pip install -q "setuptools>=70.1"  # builds wheels without the separate 'wheel' package
    SAM2_BUILD_CUDA=0 python -m pip install -q --no-build-isolation sam2==1.1.0 \
        "antlr4-python3-runtime==4.9.3" "omegaconf>=2.2,<2.4"
fi
