"""Structured motion codes (MIMO paper, sec. 3.2): one C-dimensional code per body vertex, posed
with the body and rasterized into a C-channel feature map. The official release froze them to RGB
(``sdc_info.npy``), i.e. the C = 3 case; learned codes are stored as safetensors."""

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import MIMOInputError

CODES_KEY = "codes"


class MotionCodeError(MIMOInputError):
    """A motion-code file that cannot be used with this body; the message says why."""


def load_motion_codes(path: str | Path, num_vertices: int | None = None) -> torch.Tensor:
    """Per-vertex codes [V,C] float32 from a safetensors file: the tensor ``codes``, or the file's
    only tensor. ``num_vertices``: the body's vertex count, checked when given."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Motion code file not found: {path}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise MotionCodeError(f"Could not read {path.name} as safetensors: {e}") from e
    if CODES_KEY in tensors:
        codes = tensors[CODES_KEY]
    elif len(tensors) == 1:
        codes = next(iter(tensors.values()))
    else:
        raise MotionCodeError(f"{path.name} holds {len(tensors)} tensors ({sorted(tensors)}) and none is "
                              f"named '{CODES_KEY}'")
    return validate_codes(codes, num_vertices, path.name)


def validate_codes(codes: torch.Tensor, num_vertices: int | None = None, name: str = "motion codes") -> torch.Tensor:
    if codes.dim() != 2 or codes.shape[1] < 1:
        raise MotionCodeError(f"{name}: codes must be [V,C], got shape {tuple(codes.shape)}")
    if num_vertices is not None and codes.shape[0] != num_vertices:
        raise MotionCodeError(f"{name} has codes for {codes.shape[0]} vertices but the body has {num_vertices}; "
                              "use codes made for this body model")
    if not (codes.is_floating_point() or codes.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32)):
        raise MotionCodeError(f"{name}: codes of dtype {codes.dtype} are not numbers")
    codes = codes.float()
    if not torch.isfinite(codes).all():
        raise MotionCodeError(f"{name}: codes contain NaN or infinity")
    return codes.contiguous()


def save_motion_codes(path: str | Path, codes: torch.Tensor) -> None:
    """Write codes [V,C] under the key ``codes``."""
    save_file({CODES_KEY: validate_codes(codes).cpu()}, str(path))
