"""FBX (binary 7.x or ASCII) → SkeletonAnimation, read with ufbx (pip install ufbx==0.0.5, MIT).

ufbx converts the file to Y up, right-handed, metres, and folds PreRotation/pivots into the node
transforms. The rest pose is the bind pose where the file has one (skinned exports), else the static
node transforms ("Without Skin" exports, which Mixamo writes in T-pose). The first animation stack is
sampled at the file's frame rate from its start to its end. Meshes, lights and cameras are dropped;
every other node (bones, nulls) is a joint, its parent the nearest kept ancestor.

By default ufbx runs in a child process: its Python binding (0.0.5, alpha) can crash the interpreter,
and a crash must not take ComfyUI down with it."""

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import MIMOInputError
from . import _fbx_extract
from . import rotations as rot
from .skeletal import SkeletonAnimation


class FBXError(MIMOInputError):
    pass


def _check_ufbx() -> None:
    if importlib.util.find_spec("ufbx") is None:
        raise FBXError("Reading FBX files needs the 'ufbx' package: run `pip install ufbx==0.0.5` in ComfyUI's "
                       "Python environment (or export the animation as BVH).")


def _extract_isolated(path: Path, stack: str | None, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="mimo_fbx_") as tmp:
        out = Path(tmp) / "anim.npz"
        cmd = [sys.executable, _fbx_extract.__file__, str(path), str(out), stack or ""]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise FBXError(f"Reading {path.name} took longer than {timeout:.0f} s; is it a very large scene?") from None
        if proc.returncode != 0 or not out.exists():
            why = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}"
            if proc.returncode < 0:
                why = f"the FBX reader crashed (signal {-proc.returncode})"
            raise FBXError(f"Cannot read FBX file {path}: {why}.")
        with np.load(out, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}


def load_fbx(path, stack: str | None = None, isolated: bool = True, timeout: float = 300.0) -> SkeletonAnimation:
    """The skeleton and animation of an FBX file (Y up, metres). `stack`: the animation stack's name
    (default: the first). `isolated`: run ufbx in a child process (safe) or in this one (faster)."""
    path = Path(path)
    if not path.is_file():
        raise FBXError(f"FBX file not found: {path}")
    _check_ufbx()
    if isolated:
        data = _extract_isolated(path, stack, timeout)
    else:
        try:
            data = _fbx_extract.extract(str(path), stack)
        except Exception as e:
            raise FBXError(f"Cannot read FBX file {path}: {e}.") from None
    if len(data["names"]) == 0:
        raise FBXError(f"{path.name} has no skeleton: no bone or null nodes were found.")
    for key in ("rest", "world"):
        bad = ~np.isfinite(data[key]).all(axis=(-1, -2))
        if bad.any():
            where = "rest pose" if key == "rest" else f"frames {sorted(set(np.nonzero(bad)[0].tolist()))[:10]}"
            raise FBXError(f"{path.name}: the {where} has non-finite (NaN/Inf) node transforms; expected finite "
                           "numbers (a damaged or hand-edited file?). Re-export the animation.")
    return _to_animation(data, path.name)


def _locals(world: np.ndarray, parents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = rot.orthonormalize(world[..., :3, :3])  # drops the unit scale ufbx puts on the root
    p = world[..., :3, 3]
    lr, lt = r.copy(), p.copy()
    for j, q in enumerate(parents):
        if q >= 0:
            inv = np.swapaxes(r[..., q, :, :], -1, -2)
            lr[..., j, :, :] = inv @ r[..., j, :, :]
            lt[..., j, :] = np.einsum("...ab,...b->...a", inv, p[..., j, :] - p[..., q, :])
    return lr, lt


def _to_animation(data: dict, source: str) -> SkeletonAnimation:
    parents = data["parents"].astype(np.int64)
    rest_r, rest_t = _locals(data["rest"], parents)
    rot_r, rot_t = _locals(data["world"], parents)
    return SkeletonAnimation(names=[str(n) for n in data["names"]], parents=parents,
                             rest_rotations=rest_r, rest_translations=rest_t,
                             rotations=rot_r, translations=rot_t, fps=float(data["fps"]), source=source)
