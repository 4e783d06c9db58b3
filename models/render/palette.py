"""Per-vertex colour palettes: the official ``sdc_info.npy`` (read without running pickled code)
and a documented default for users who do not have it."""

import math
import pickle
from pathlib import Path

import numpy as np
import torch
from numpy.lib import format as npy_format

from ..errors import MIMOInputError

SMPL_VERTICES = 6890


class PaletteError(MIMOInputError):
    """A palette file that cannot be used; the message says why."""


def _allowed_globals() -> dict[tuple[str, str], object]:
    """What an ``np.save``-d dict of arrays needs: array/scalar reconstruction and dtypes."""
    reconstruct = np.zeros(1).__reduce__()[0]  # numpy's private ndarray rebuild function
    scalar = np.float64(0).__reduce__()[0]  # and its scalar one
    allowed = {("builtins", "dict"): dict, ("builtins", "list"): list, ("_codecs", "encode"): _latin1_encode}
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x / 2.x pickles
        allowed[(core, "_reconstruct")] = reconstruct
        allowed[(core, "scalar")] = scalar
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    return allowed


def _latin1_encode(text, encoding="latin1"):
    """Protocol-2 pickles store bytes as ``_codecs.encode(str, 'latin1')``: allow only that."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("refusing _codecs.encode with unexpected arguments")
    return text.encode("latin1")


class _ArrayUnpickler(pickle.Unpickler):
    def __init__(self, file):
        super().__init__(file, encoding="latin1")
        self._allowed = _allowed_globals()

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: the file may contain code, not just arrays") from None


def read_npy(path: str | Path):
    """``np.load`` for .npy files, where pickled (object) content may only hold arrays, dicts and
    lists; anything else raises PaletteError. Returns an ndarray (object arrays unwrapped by the caller)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Palette file not found: {path}")
    with open(path, "rb") as fp:
        try:
            version = npy_format.read_magic(fp)
            if version == (1, 0):
                shape, fortran, dtype = npy_format.read_array_header_1_0(fp)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = npy_format.read_array_header_2_0(fp)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except Exception as e:  # bad magic, or a header that does not parse (ValueError, SyntaxError, ...)
            raise PaletteError(f"{path.name} is not a valid .npy file (expected numpy's .npy format, as "
                               f"np.save writes it): {type(e).__name__}: {e}") from e
        if dtype.hasobject:
            try:
                array = _ArrayUnpickler(fp).load()
            except Exception as e:
                raise PaletteError(f"{path.name}: {e}") from e
            if not isinstance(array, np.ndarray):
                raise PaletteError(f"{path.name}: pickled content is not an array")
            return array
        count = math.prod(shape)
        left = path.stat().st_size - fp.tell()
        if count * dtype.itemsize > left or dtype.itemsize == 0:
            raise PaletteError(f"{path.name} is truncated or damaged: its header declares {shape} {dtype} "
                               f"({count * dtype.itemsize} bytes), the file holds {left} bytes of data")
        data = np.frombuffer(fp.read(count * dtype.itemsize), dtype=dtype)
        return data.reshape(shape, order="F" if fortran else "C")


def _to_unit_rgb(colours: np.ndarray, name: str) -> np.ndarray:
    if colours.dtype == np.uint8 or np.issubdtype(colours.dtype, np.integer):
        rgba = colours.astype(np.float64) / 255.0
    elif np.issubdtype(colours.dtype, np.floating):
        rgba = colours.astype(np.float64)
        if not np.isfinite(rgba).all():
            raise PaletteError(f"{name}: colours are not finite")
        if rgba.max() > 1.0 + 1e-6:  # floats stored on the 0..255 scale
            rgba = rgba / 255.0
    else:
        raise PaletteError(f"{name}: colours of dtype {colours.dtype} are not numbers")
    rgb = rgba[:, :3]
    if rgba.shape[1] == 4:  # pyrender blends alpha over the black background
        rgb = rgb * rgba[:, 3:4]
    return np.clip(rgb, 0.0, 1.0)


def load_sdc_info(path: str | Path, num_vertices: int | None = SMPL_VERTICES) -> torch.Tensor:
    """The official per-vertex colours: ``sdc_info.npy`` (an ``np.save``-d dict) entry ``'smpl'``,
    one RGB or RGBA colour per SMPL vertex, uint8 0..255 or float 0..1 (detected). A plain
    [V,3|4] array file is accepted too. Returns [V,3] float32 in 0..1 (alpha, if any, multiplied
    in, as pyrender blends it over black). Refuses pickled content other than arrays/dicts/lists."""
    path = Path(path)
    data = read_npy(path)
    if data.dtype.hasobject:
        if data.shape != ():
            raise PaletteError(f"{path.name}: expected a saved dict, got an object array of shape {data.shape}")
        data = data.item()
    if isinstance(data, dict):
        if "smpl" not in data:
            raise PaletteError(f"{path.name} has no 'smpl' entry (keys: {sorted(map(str, data))})")
        data = data["smpl"]
    colours = np.asarray(data)
    if colours.dtype.hasobject or colours.ndim != 2 or colours.shape[1] not in (3, 4):
        raise PaletteError(f"{path.name}: expected [V,3] or [V,4] colours, got {colours.shape} {colours.dtype}")
    if num_vertices is not None and colours.shape[0] != num_vertices:
        raise PaletteError(f"{path.name} colours {colours.shape[0]} vertices; the body has {num_vertices}")
    return torch.from_numpy(_to_unit_rgb(colours, path.name)).float()


def default_palette(rest_vertices) -> torch.Tensor:
    """Default colours when no ``sdc_info.npy`` is available: the rest-pose coordinates normalised
    per axis to 0..1 over the mesh (min-max), x -> R, y -> G, z -> B. Deterministic; NOT the
    official palette (which the released PoseGuider was trained on), so expect weaker motion control.
    rest_vertices: [V,3] -> [V,3] float32."""
    v = torch.as_tensor(rest_vertices, dtype=torch.float64)
    if v.dim() != 2 or v.shape[1] != 3:
        raise ValueError(f"rest_vertices must be [V,3], got {tuple(v.shape)}")
    lo, hi = v.min(0).values, v.max(0).values
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    return ((v - lo) / span).float()
