"""Run the tiny MIMO demo workflow in a real ComfyUI server and print the output file paths.

    python -m devtools.run_demo [--comfyui PATH] [--out DIR] [--workflow PATH] [--models DIR]

Without ``--comfyui`` the pinned ComfyUI 0.3.75 is provisioned (cached); with it, that ComfyUI
folder is used as is (run with this interpreter; the pack is linked from ``--out``, the folder
itself is not modified). Tiny random weights are written into ``<out>/models`` unless ``--models``
names a ready models folder. Output paths go to stdout, one per line, the main output last;
everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path

from .comfy_host import ComfyError, ComfyServer, provision_comfyui
from .demo_assets import write_demo_assets
from .workflow_to_api import WorkflowError, to_api

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORKFLOW = REPO_ROOT / "workflows" / "mimo_demo_tiny.json"
VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".gif", ".webp"}


def load_pack():
    """Import the repository as package ``mimo_pack`` (same approach as tests/tools/packload.py)."""
    spec = importlib.util.spec_from_file_location("_mimo_packload", REPO_ROOT / "tests" / "tools" / "packload.py")
    packload = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(packload)
    return packload.load_pack()


def write_weights(models_dir: Path) -> None:
    pack = load_pack()
    try:
        tiny = importlib.import_module(f"{pack.__name__}.models.generate.tiny")
    except ModuleNotFoundError as e:
        if e.name != f"{pack.__name__}.models.generate.tiny":
            raise
        print("[run_demo] models/generate/tiny.py not found: no tiny weights written", file=sys.stderr)
        return
    tiny.write_tiny_weights(models_dir)


def main_output_last(files: list[Path]) -> list[Path]:
    """Saved outputs after previews, videos last (stable otherwise)."""
    return sorted(files, key=lambda p: (p.parent.name != "temp", p.suffix.lower() in VIDEO_SUFFIXES))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devtools.run_demo", description=__doc__.split("\n")[0])
    ap.add_argument("--comfyui", type=Path, help="existing ComfyUI folder (default: provision 0.3.75)")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "test-artifacts" / "demo", help="run folder")
    ap.add_argument("--workflow", type=Path, default=DEFAULT_WORKFLOW, help="UI-format workflow JSON")
    ap.add_argument("--models", type=Path, help="use this models folder as is (default: tiny weights in <out>/models)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed for the run")
    args = ap.parse_args(argv)

    try:
        workflow = json.loads(args.workflow.read_text())
        comfy_dir = args.comfyui.resolve() if args.comfyui else provision_comfyui()
        if not (comfy_dir / "main.py").is_file():
            raise ComfyError(f"{comfy_dir} is not a ComfyUI folder (no main.py)")
        out = args.out.resolve()
        if args.models:
            models = args.models.resolve()
        else:
            models = out / "models"
            models.mkdir(parents=True, exist_ok=True)
            write_weights(models)
        print(f"[run_demo] starting ComfyUI from {comfy_dir} (run folder {out})", file=sys.stderr)
        with ComfyServer(comfy_dir, REPO_ROOT, models_dir=models, run_dir=out) as server:
            write_demo_assets(server.input_dir)
            prompt = to_api(workflow, server.object_info())
            result = server.run(prompt, timeout=args.timeout, check=True)
        files = main_output_last([f for f in result.files if f.is_file()])
        if not files:
            raise ComfyError("the workflow ran but saved no output file")
    except (ComfyError, WorkflowError, OSError, ValueError) as e:
        print(f"[run_demo] FAILED: {e}", file=sys.stderr)
        return 1
    for path in files:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
