"""Benchmarks that print one JSON line; run from the repository root as ``python -m benchmarks.<name>``."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_pack():
    """The repository as the package ``mimo_pack`` (see tests/tools/packload.py)."""
    spec = importlib.util.spec_from_file_location("_mimo_packload", ROOT / "tests" / "tools" / "packload.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load_pack()


def official_lib(folder: Path) -> Path:
    """The official pipeline folder's pinned wheels, installed once into a private folder (OFFICIAL_LIB,
    default /tmp/official-mimo-lib, as its run_official.sh does), for a process that runs its code."""
    lib = Path(os.environ.get("OFFICIAL_LIB", "/tmp/official-mimo-lib"))
    if not (lib / ".done").exists():
        tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
        wheels = [str(p) for p in sorted((Path(folder) / "wheels").glob("*.whl"))
                  if "-cp3" not in p.name or f"-{tag}-" in p.name]
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(lib), *wheels],
                       check=True, stdout=subprocess.DEVNULL)
        (lib / ".done").touch()
    return lib
