"""Shared fixtures. The repository is registered as the package ``mimo_pack`` so that tests can
``from mimo_pack.models import ...`` (the pack itself only uses relative imports)."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("_mimo_packload", Path(__file__).parent / "tools" / "packload.py")
packload = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(packload)
packload.load_pack()
