"""Synthetic SMPL / SMPL-H / SMPL-X model files for tests: random but valid arrays with the real
key layout (the real models may not be redistributed). Optionally written the way the official
pickles are: python-2 protocol, scipy.sparse J_regressor, chumpy-looking arrays."""

import pickle
import sys
import types
from pathlib import Path

import numpy as np

from ..models.body.skeleton import SKELETONS

ROOT = 4294967295  # the root's "parent" in kintree_table (uint32 −1)
DEFAULT_BETAS = {"smpl": 10, "smplh": 16, "smplx": 10}


def synthetic_arrays(kind: str, vertices: int = 300, num_betas: int | None = None, seed: int = 0,
                     hand_pca: bool = True) -> dict:
    """Arrays of a model of ``kind`` with ``vertices`` vertices (>= 2 per joint)."""
    names, parents = SKELETONS[kind]
    nj, nv = len(names), vertices
    if nv < 2 * nj:
        raise ValueError(f"need at least {2 * nj} vertices for {kind}")
    rng = np.random.default_rng(seed)
    betas = DEFAULT_BETAS[kind] if num_betas is None else num_betas
    comps = betas
    if kind == "smplx":  # shapedirs = shape + expression: 10 + 10 or 300 + 100
        if betas not in (10, 300):
            raise ValueError("SMPL-X files hold 10 or 300 shape components")
        comps = 20 if betas == 10 else 400
    joints = np.zeros((nj, 3))
    for j in range(1, nj):
        joints[j] = joints[parents[j]] + rng.normal(0, 0.12, 3)
    owner = np.concatenate([np.arange(nj), np.arange(nj), rng.integers(0, nj, nv - 2 * nj)])
    v_template = joints[owner] + rng.normal(0, 0.04, (nv, 3))
    # skinning: the owner joint dominates, plus up to two of its neighbours in the tree
    weights = np.zeros((nv, nj))
    for i, j in enumerate(owner):
        near = [j] + [k for k in range(nj) if parents[k] == j] + ([parents[j]] if parents[j] >= 0 else [])
        pick = [j] + list(rng.choice(near[1:], size=min(2, len(near) - 1), replace=False)) if len(near) > 1 else [j]
        w = rng.dirichlet(np.ones(len(pick))) * 0.5
        w[0] += 0.5
        np.add.at(weights[i], pick, w)
    # each joint: a convex combination of some of its own vertices (like the real regressors)
    regressor = np.zeros((nj, nv))
    for j in range(nj):
        mine = np.flatnonzero(owner == j)
        take = rng.choice(mine, size=min(4, len(mine)), replace=False)
        regressor[j, take] = rng.dirichlet(np.ones(len(take)))
    tri = np.stack([rng.choice(nv, 3, replace=False) for _ in range(2 * nv)])
    arrays = {
        "v_template": v_template,
        "shapedirs": rng.normal(0, 0.01, (nv, 3, comps)),
        "posedirs": rng.normal(0, 0.005, (nv, 3, (nj - 1) * 9)),
        "J_regressor": regressor,
        "weights": weights,
        "kintree_table": np.stack([np.where(np.asarray(parents) < 0, ROOT, parents), np.arange(nj)]).astype(np.int64),
        "f": tri.astype(np.uint32 if kind == "smpl" else np.int64),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }
    if kind != "smpl" and hand_pca:
        for side in "lr":
            arrays[f"hands_components{side}"] = np.linalg.qr(rng.normal(size=(45, 45)))[0]
            arrays[f"hands_mean{side}"] = rng.normal(0, 0.1, 45)
    if kind == "smplx":
        arrays["lmk_faces_idx"] = rng.integers(0, len(tri), 51).astype(np.int64)
        arrays["lmk_bary_coords"] = rng.dirichlet(np.ones(3), 51)
    return arrays


# ----------------------------------------------------------------------------- chumpy look-alikes

class _Ch:  # pickled as chumpy.ch.Ch
    def __init__(self, **state):
        self.__dict__.update(state)


class _Select(_Ch):  # pickled as chumpy.reordering.Select
    pass


def _chumpy_modules() -> dict:
    pkg, ch, reordering = (types.ModuleType(n) for n in ("chumpy", "chumpy.ch", "chumpy.reordering"))
    for cls, mod, name in ((_Ch, ch, "Ch"), (_Select, reordering, "Select")):
        cls.__module__, cls.__qualname__, cls.__name__ = mod.__name__, name, name
        setattr(mod, name, cls)
    pkg.ch, pkg.reordering = ch, reordering
    return {"chumpy": pkg, "chumpy.ch": ch, "chumpy.reordering": reordering}


def _as_chumpy(arrays: dict) -> dict:
    out = dict(arrays)
    for key in ("v_template", "shapedirs", "weights"):
        out[key] = _Ch(x=arrays[key], _dirty_vars=set(), _itr=None)
    posedirs = arrays["posedirs"]
    n = posedirs.size
    stored = posedirs.reshape(-1)[::-1].copy()  # Select reads it back through reversed indices
    out["posedirs"] = _Select(a=_Ch(x=stored), idxs=np.arange(n)[::-1].copy(), preferred_shape=posedirs.shape)
    return out


def write_synthetic_model(path, kind: str, vertices: int = 300, fmt: str | None = None, chumpy_style: bool = False,
                          num_betas: int | None = None, sparse_regressor: bool | None = None,
                          hand_pca: bool = True, seed: int = 0) -> dict:
    """Write a synthetic model file and return its (dense, plain) arrays.

    fmt: 'pkl' or 'npz' (default: from the suffix). pkl files use protocol 2 and, by default, a
    scipy.sparse csc J_regressor (as the official ones); ``chumpy_style`` stores v_template,
    shapedirs, weights as chumpy.ch.Ch and posedirs as chumpy.reordering.Select look-alikes.
    ``hand_pca=False`` leaves out hands_components*/hands_mean* (AMASS's extended SMPL+H model.npz).
    """
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    arrays = synthetic_arrays(kind, vertices, num_betas, seed, hand_pca)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npz":
        if chumpy_style or sparse_regressor:
            raise ValueError("npz files hold plain arrays only")
        np.savez(path, **arrays)
        return arrays
    if fmt != "pkl":
        raise ValueError(f"unknown format {fmt!r}")
    data = _as_chumpy(arrays) if chumpy_style else dict(arrays)
    if sparse_regressor is None or sparse_regressor:
        try:
            import scipy.sparse
        except ImportError:
            if sparse_regressor:
                raise
        else:
            data["J_regressor"] = scipy.sparse.csc_matrix(arrays["J_regressor"])
    fakes = _chumpy_modules() if chumpy_style else {}
    saved = {name: sys.modules.get(name) for name in fakes}
    sys.modules.update(fakes)
    try:
        with open(path, "wb") as fh:
            pickle.dump(data, fh, protocol=2)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return arrays
