#!/usr/bin/env bash
# The tiny demo on a fresh machine: sets up .venv, provisions ComfyUI 0.3.75 unless --comfyui PATH
# is given, runs workflows/mimo_demo_tiny.json headless and prints the output video's path.
set -euo pipefail
cd "$(dirname "$0")/.."
source devtools/setup_env.sh >&2
python -m devtools.run_demo "$@"
