"""Read SMPL-family model files (.pkl / .npz) into plain numpy arrays, without chumpy or scipy.

Pickles are read with a restricted unpickler: only numpy's array/scalar reconstructors, chumpy
objects (replaced by a stub holding their numpy value) and scipy.sparse matrices (replaced by a
stub turned into a dense array) are allowed. Anything else is refused, so a model file can never
run code. ``.npz`` files are read with ``allow_pickle=False``.
"""

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MIMOInputError
from .skeleton import SKELETONS

KINDS_BY_JOINTS = {len(joints): kind for kind, (joints, _) in SKELETONS.items()}  # 24, 52, 55
REQUIRED = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


class BodyFileError(MIMOInputError):
    """A body model file that cannot be read; the message names the file."""


@dataclass
class BodyModelData:
    kind: str  # 'smpl' | 'smplh' | 'smplx'
    path: str
    v_template: np.ndarray  # [V,3]
    shapedirs: np.ndarray  # [V,3,S] shape components only (SMPL-X expression components dropped)
    posedirs: np.ndarray  # [V,3,(J-1)*9]
    J_regressor: np.ndarray  # [J,V] dense
    weights: np.ndarray  # [V,J]
    parents: np.ndarray  # [J] int64, -1 at the root
    faces: np.ndarray  # [T,3] int64


# ----------------------------------------------------------------------------- pickle stubs

class _ChumpyStub:
    """Stands in for any chumpy object; ``value()`` gives its numpy array (Ch and Select only)."""

    _name = "chumpy object"

    def __setstate__(self, state):
        self.__dict__["_state"] = state if isinstance(state, dict) else {}

    def value(self) -> np.ndarray:
        st = self.__dict__.get("_state", {})
        if "x" in st:  # chumpy.ch.Ch: the array itself
            return np.asarray(_plain(st["x"]))
        if "a" in st and "idxs" in st:  # chumpy.reordering.Select: flat indices into a parent
            flat = np.asarray(_plain(st["a"])).reshape(-1)[np.asarray(_plain(st["idxs"]), np.int64)]
            shape = st.get("preferred_shape")
            return flat.reshape(shape) if shape is not None else flat
        raise TypeError(f"unsupported chumpy object {self._name} (only Ch and Select hold plain arrays)")


class _SparseStub:
    """Stands in for a scipy.sparse csc/csr/coo matrix; ``value()`` gives the dense array."""

    _name = "scipy.sparse matrix"

    def __setstate__(self, state):
        self.__dict__["_state"] = state if isinstance(state, dict) else {}

    def value(self) -> np.ndarray:
        st = self.__dict__.get("_state", {})
        shape = tuple(int(s) for s in st.get("_shape", st.get("shape", ())))
        data = np.asarray(st.get("data"))
        if len(shape) != 2 or data.ndim != 1:
            raise TypeError(f"{self._name} without a readable shape/data")
        dense = np.zeros(shape, dtype=data.dtype if data.size else np.float64)
        fmt = self._name.rsplit(".", 1)[-1][:3]
        if fmt in ("csc", "csr"):
            indices = np.asarray(st["indices"], np.int64)
            indptr = np.asarray(st["indptr"], np.int64)
            major = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
            rows, cols = (indices, major) if fmt == "csc" else (major, indices)
        elif fmt == "coo":
            coords = st.get("coords")
            rows, cols = (coords if coords is not None else (st["row"], st["col"]))
            rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        else:
            raise TypeError(f"unsupported sparse format {self._name}")
        np.add.at(dense, (rows, cols), data)  # duplicates add up, as in scipy
        return dense


def _stub(base: type, module: str, name: str) -> type:
    return type(name, (base,), {"_name": f"{module}.{name}"})


def _numpy_globals() -> dict:
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric
    import _codecs
    import copyreg

    found = {}
    for core in ("numpy.core", "numpy._core"):
        found[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        found[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        if hasattr(numeric, "_frombuffer"):
            found[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    found[("numpy", "ndarray")] = np.ndarray
    found[("numpy", "dtype")] = np.dtype
    found[("_codecs", "encode")] = _codecs.encode  # python 3 pickles of bytes (protocol 2)
    for mod in ("copyreg", "copy_reg"):  # python 2 name mapped by hand (fix_imports is bypassed)
        found[(mod, "_reconstructor")] = copyreg._reconstructor
    for mod in ("builtins", "__builtin__"):
        for name in ("object", "set", "frozenset", "complex"):
            found[(mod, name)] = __import__("builtins").__dict__[name]
    return found


_SPARSE = {f"{f}_{k}" for f in ("csc", "csr", "coo") for k in ("matrix", "array")}


class _SafeUnpickler(pickle.Unpickler):
    _allowed = None

    def find_class(self, module: str, name: str):
        if _SafeUnpickler._allowed is None:
            _SafeUnpickler._allowed = _numpy_globals()
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        if module == "numpy.dtypes" and name.endswith("DType"):  # numpy >= 1.25 dtype classes
            return getattr(np.dtypes, name)
        if module == "chumpy" or module.startswith("chumpy."):
            return _stub(_ChumpyStub, module, name)
        if module.startswith("scipy.sparse") and name in _SPARSE:
            return _stub(_SparseStub, module, name)
        raise pickle.UnpicklingError(
            f"refusing to load '{module}.{name}': a body model file may only contain numpy arrays, "
            f"chumpy arrays and scipy.sparse matrices")


def _plain(obj):
    return obj.value() if isinstance(obj, (_ChumpyStub, _SparseStub)) else obj


# ----------------------------------------------------------------------------- readers

def read_arrays(path) -> dict:
    """The file's top-level entries (lazy npz, or the unpickled dict with stubs still in it)."""
    path = Path(path)
    if not path.is_file():
        raise BodyFileError(f"body model file '{path}' does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            return np.load(path, allow_pickle=False)
        if suffix == ".pkl":
            with open(path, "rb") as fh:
                data = _SafeUnpickler(fh, encoding="latin1").load()
        else:
            raise BodyFileError(f"body model file '{path}': unknown extension '{path.suffix}' (use .pkl or .npz)")
    except BodyFileError:
        raise
    except pickle.UnpicklingError as e:
        raise BodyFileError(f"body model file '{path}' is not a plain SMPL model pickle: {e}") from e
    except Exception as e:  # truncated/corrupt files, zip errors, ...
        raise BodyFileError(f"body model file '{path}' could not be read ({type(e).__name__}: {e})") from e
    if not isinstance(data, dict):
        raise BodyFileError(f"body model file '{path}' holds a {type(data).__name__}, not a dict of arrays")
    return data


def _get(data, key: str, path) -> np.ndarray:
    if key not in data:
        keys = ", ".join(sorted(data.keys()))
        raise BodyFileError(f"body model file '{path}' has no '{key}' (an SMPL-family model needs "
                            f"{', '.join(REQUIRED)}; found: {keys})")
    try:
        value = np.asarray(_plain(data[key]))
    except ValueError as e:  # npz object arrays with allow_pickle=False, or a damaged member
        if "pickle" not in str(e):
            raise BodyFileError(f"body model file '{path}': '{key}' is damaged ({e}); re-download the file") from e
        raise BodyFileError(f"body model file '{path}': '{key}' is stored as a pickled object, which is "
                            f"refused in .npz files; save it as a plain (dense) array") from e
    except TypeError as e:
        raise BodyFileError(f"body model file '{path}': '{key}': {e}") from e
    except Exception as e:  # truncated or corrupt zip members
        raise BodyFileError(f"body model file '{path}': '{key}' could not be read ({type(e).__name__}: {e}); "
                            "re-download the file") from e
    if value.dtype == object:
        raise BodyFileError(f"body model file '{path}': '{key}' is not a numeric array")
    return value


def read_body_model(path) -> BodyModelData:
    """Read and check an SMPL / SMPL-H / SMPL-X model file; the kind comes from the joint count."""
    data = read_arrays(path)
    try:
        a = {k: _get(data, k, path) for k in REQUIRED}
    finally:
        if hasattr(data, "close"):
            data.close()

    def bad(msg: str) -> BodyFileError:
        return BodyFileError(f"body model file '{path}': {msg}")

    v, posedirs, shapedirs = a["v_template"], a["posedirs"], a["shapedirs"]
    if v.ndim != 2 or v.shape[1] != 3:
        raise bad(f"v_template has shape {v.shape}, expected [V,3]")
    nv = v.shape[0]
    if posedirs.ndim != 3 or posedirs.shape[:2] != (nv, 3) or posedirs.shape[2] % 9:
        raise bad(f"posedirs has shape {posedirs.shape}, expected [{nv},3,(J-1)*9]")
    nj = posedirs.shape[2] // 9 + 1
    kind = KINDS_BY_JOINTS.get(nj)
    if kind is None:
        raise bad(f"posedirs has {posedirs.shape[2]} pose components, i.e. {nj} joints; supported are "
                  f"SMPL (24 joints, 207), SMPL-H (52, 459) and SMPL-X (55, 486)")
    if shapedirs.ndim == 2 and shapedirs.shape == (nv, 3):
        shapedirs = shapedirs[:, :, None]
    if shapedirs.ndim != 3 or shapedirs.shape[:2] != (nv, 3):
        raise bad(f"shapedirs has shape {shapedirs.shape}, expected [{nv},3,S]")
    if kind == "smplx":  # shape + expression components: 300+100, or 10+10 in the first release
        shapedirs = shapedirs[:, :, :300] if shapedirs.shape[2] >= 400 else shapedirs[:, :, :10]
    if a["J_regressor"].shape != (nj, nv):
        raise bad(f"J_regressor has shape {a['J_regressor'].shape}, expected [{nj},{nv}] for {kind}")
    if a["weights"].shape != (nv, nj):
        raise bad(f"weights has shape {a['weights'].shape}, expected [{nv},{nj}] for {kind}")
    kintree = a["kintree_table"]
    if kintree.ndim != 2 or kintree.shape != (2, nj):
        raise bad(f"kintree_table has shape {kintree.shape}, expected [2,{nj}]")
    parents = _parents(kintree, nj)
    if parents is None:
        raise bad("kintree_table is not a tree whose parents come before their children")
    expected = np.asarray(SKELETONS[kind][1])
    if not np.array_equal(parents, expected):
        raise bad(f"kintree_table does not match the {kind} joint tree")
    faces = a["f"]
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise bad(f"f has shape {faces.shape} / dtype {faces.dtype}, expected integer [T,3]")
    faces = faces.astype(np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= nv):
        raise bad(f"f indexes vertices outside 0..{nv - 1}")
    return BodyModelData(kind=kind, path=str(path), v_template=v.astype(np.float64), shapedirs=shapedirs,
                         posedirs=posedirs, J_regressor=a["J_regressor"].astype(np.float64),
                         weights=a["weights"].astype(np.float64), parents=parents, faces=faces)


def _parents(kintree: np.ndarray, nj: int) -> np.ndarray | None:
    ids = kintree[1].astype(np.int64)
    if not np.array_equal(ids, np.arange(nj)):
        order = np.argsort(ids)
        if not np.array_equal(ids[order], np.arange(nj)):
            return None
        kintree = kintree[:, order]
    raw = kintree[0].astype(np.int64)
    parents = np.where((raw < 0) | (raw >= nj), -1, raw)  # root: 4294967295 (uint32 -1) or -1
    ok = parents[0] == -1 and all(0 <= p < j for j, p in enumerate(parents[1:], 1))
    return parents if ok else None
