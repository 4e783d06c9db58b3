"""Benchmarks that print one JSON line; run from the repository root as ``python -m benchmarks.<name>``."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_pack():
    """The repository as the package ``mimo_pack`` (see tests/tools/packload.py)."""
    spec = importlib.util.spec_from_file_location("_mimo_packload", ROOT / "tests" / "tools" / "packload.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load_pack()
