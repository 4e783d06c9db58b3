"""Small image conversions shared by the pack (numpy uint8 <-> torch float, PIL resizes)."""

import numpy as np
import torch
from PIL import Image

_RESAMPLE = {"lanczos": Image.LANCZOS, "bicubic": Image.BICUBIC}


def to_uint8(images) -> np.ndarray:
    """Float [..., H, W, C] in 0..1 (torch or numpy) -> numpy uint8, round-to-nearest then clip.

    ComfyUI IMAGE tensors loaded from files hold uint8/255, so this recovers the bytes exactly.
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().to("cpu", torch.float32).numpy()
    x = np.rint(np.asarray(images, dtype=np.float32) * 255.0)
    return np.clip(x, 0, 255).astype(np.uint8)


def resize_frames(frames: np.ndarray, width: int, height: int, resample: str = "lanczos") -> np.ndarray:
    """Resize uint8 frames [F, H, W, C] to (height, width) with PIL, one frame at a time.

    Returns the input itself when it already has that size (PIL would return an identical copy).
    """
    if resample not in _RESAMPLE:
        raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}, got {resample!r}")
    if frames.shape[1] == height and frames.shape[2] == width:
        return frames
    out = [np.asarray(Image.fromarray(f).resize((width, height), resample=_RESAMPLE[resample])) for f in frames]
    return np.stack(out)


def to_unit_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 [F, H, W, C] -> float32 torch [F, C, H, W] in 0..1 (``x / 255`` in float32)."""
    t = torch.from_numpy(np.ascontiguousarray(frames)).to(torch.float32) / 255.0
    return t.permute(0, 3, 1, 2).contiguous()


def to_signed_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 [F, H, W, C] -> float32 torch [F, C, H, W] in -1..1 (``2x - 1`` of the 0..1 float, as VaeImageProcessor)."""
    return 2.0 * to_unit_tensor(frames) - 1.0
