"""Half precision against full precision, ours and the official pipeline's, on the same inputs.

    python -m benchmarks.precision_bound CASE_DIR [--device cuda] [--official FOLDER]

Runs a parity case (weights, pictures and initial noise of a recorded official run) through our
pipeline in fp32, fp16 and bf16, and through the official pipeline (``official_case``, in its own
process with its pinned wheels) in fp32 and fp16, all on ``--device``. Prints one JSON line: how far
each half-precision video is from the same implementation's fp32 video (max and mean abs), and
``ok``: ours in fp16 and in bf16 no farther than the official fp16 (issue 8's bound). The official
code has no bf16 path, so bf16 is held to the official fp16 figure too. Exit status 1 when not ok.
``--compile``: ours with the denoiser's cores through torch.compile (and whether they ran compiled).
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from . import ROOT, official_lib

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _parity_tool():
    spec = importlib.util.spec_from_file_location("_mimo_parity_tool", ROOT / "tests" / "tools" / "parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def official_video(folder: Path, case_dir: Path, dtype: str, device: str, out: Path) -> tuple[torch.Tensor, dict]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(official_lib(folder)), str(folder.resolve()), str(ROOT)]))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.official_case", str(case_dir.resolve()), dtype, str(out),
                           "--device", device], cwd=folder.resolve(), env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"the official pipeline failed on {case_dir.name} in {dtype}:\n{proc.stderr[-3000:]}")
    return load_file(str(out))["video"], json.loads(proc.stdout.strip().splitlines()[-1])


def distance(a: torch.Tensor, b: torch.Tensor) -> dict:
    d = (a.float() - b.float()).abs()
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("case_dir", type=Path)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--official", type=Path, default=None,
                   help="the official pipeline's folder (default ../shared/official_mimo or .official)")
    p.add_argument("--compile", action="store_true", help="ours with the denoiser's cores through torch.compile")
    args = p.parse_args(argv)
    folder = args.official or next((d for d in (ROOT / ".official", ROOT.parent / "shared" / "official_mimo")
                                    if (d / "src").is_dir()), None)
    if folder is None or not (folder / "src").is_dir():
        p.error("no official pipeline folder: pass --official FOLDER (the folder holding src/ and wheels/)")
    if not (args.case_dir / "case.json").is_file():
        p.error(f"{args.case_dir} is not a parity case folder (no case.json)")

    tool = _parity_tool()
    ours = {name: tool.run_case(args.case_dir, dtype, args.device, compile=args.compile)["video"]
            for name, dtype in DTYPES.items()}
    with tempfile.TemporaryDirectory(prefix="mimo-precision-") as tmp:
        theirs, runs = {}, {}
        for name in ("fp32", "fp16"):
            theirs[name], runs[name] = official_video(folder, args.case_dir, name, args.device, Path(tmp) / f"{name}.st")
    bound = distance(theirs["fp16"], theirs["fp32"])
    result = {
        "check": "precision_bound", "case": args.case_dir.name, "device": args.device,
        "official_fp16_vs_fp32": bound,
        "ours_fp16_vs_fp32": distance(ours["fp16"], ours["fp32"]),
        "ours_bf16_vs_fp32": distance(ours["bf16"], ours["fp32"]),
        "ours_fp32_vs_official_fp32": distance(ours["fp32"], theirs["fp32"]),
        "official_fp32_vs_recorded_max_abs": runs["fp32"]["vs_recorded_max_abs"],
    }
    if args.compile:
        result.update(compiled=tool.compile_failure() is None, compile_failure=tool.compile_failure())
    within = {name: all(result[f"ours_{name}_vs_fp32"][k] <= bound[k] for k in bound) for name in ("fp16", "bf16")}
    result.update(fp16_within_bound=within["fp16"], bf16_within_bound=within["bf16"], ok=all(within.values()))
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
