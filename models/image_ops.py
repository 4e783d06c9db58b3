"""Frames and masks, checked and converted in one place.

Every stage takes videos as ComfyUI IMAGE batches ([frames, height, width, 3], float 0..1; uint8 and
an alpha channel are accepted) and masks as MASK batches ([frames, height, width], 0..1; one mask for
the whole clip, or an IMAGE whose first channel is used). The functions here check them once, say
what is wrong in words a user can act on, and convert: IMAGE <-> uint8, masks resized to the video,
per-frame maps, grey IMAGEs of maps, and the resizes / network tensors of the generator.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

log = logging.getLogger("MIMO")

_RESAMPLE = {"lanczos": Image.LANCZOS, "bicubic": Image.BICUBIC}
CHUNK = 16  # frames converted at a time (long videos never exist twice in float)
BODY_LEVEL = 10  # a motion render's body pixel is brighter than grey 10 (the ROI planner's rule)


# ----------------------------------------------------------------------------- frames

def _shape_of(x) -> str:
    return str(tuple(x.shape)) if hasattr(x, "shape") else type(x).__name__


def frame_shape(frames, what: str = "video", *, single_ok: bool = False, min_side: int = 1) -> tuple[int, int, int]:
    """(frames, height, width) of an IMAGE batch [F,H,W,3] (or 4 channels; torch or numpy), checked
    without converting anything. ``single_ok``: a single image [H,W,3] counts as one frame."""
    shape = tuple(frames.shape) if hasattr(frames, "shape") else ()
    if single_ok and len(shape) == 3 and shape[-1] in (3, 4):
        shape = (1,) + shape
    if len(shape) != 4 or shape[-1] not in (3, 4):
        raise ValueError(f"The {what} must be frames [F,H,W,3] (an IMAGE batch [frames, height, width, 3], RGB "
                         f"in 0..1), got shape {_shape_of(frames)}.")
    n, h, w = shape[:3]
    if n < 1:
        raise ValueError(f"The {what} has no frames.")
    if min(h, w) < min_side:
        raise ValueError(f"The {what} has {n} frames of {w}x{h} pixels; it needs at least one frame of "
                         f"{min_side}x{min_side} pixels or more.")
    return n, h, w


def as_frames(frames, what: str = "video", *, single_ok: bool = False) -> torch.Tensor:
    """The frames as float32 RGB [F,H,W,3] in 0..1 on the CPU (uint8 is divided by 255, alpha
    dropped); a float32 CPU IMAGE is returned without a copy."""
    frame_shape(frames, what, single_ok=single_ok)
    x = torch.as_tensor(frames)
    x = x[None] if x.ndim == 3 else x
    if x.dtype == torch.uint8:
        return to_image(x[..., :3].cpu())
    return x[..., :3].to("cpu", torch.float32)


def frame_ranges(frames) -> str:
    """[5, 6, 7, 9] -> '5-7, 9' (at most 8 ranges, then how many more), for messages."""
    frames = sorted(int(f) for f in frames)
    ranges: list[list[int]] = []
    for f in frames:
        if ranges and f == ranges[-1][1] + 1:
            ranges[-1][1] = f
        else:
            ranges.append([f, f])
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges[:8])
    return text + (f" and {len(ranges) - 8} more ranges" if len(ranges) > 8 else "")


def empty_frames(frames, level: int = BODY_LEVEL) -> list[int]:
    """Indices of the frames of an IMAGE batch (float 0..1 or uint8) in which no pixel is brighter than
    grey ``level`` in any channel: motion renders with no body visible."""
    x = torch.as_tensor(frames)
    x = x[None] if x.ndim == 3 else x
    limit = level if x.dtype == torch.uint8 else (level + 0.5) / 255.0
    empty = []
    for s in range(0, x.shape[0], CHUNK):
        peak = x[s:s + CHUNK, ..., :3].reshape(min(CHUNK, x.shape[0] - s), -1).amax(dim=1)
        empty += [s + i for i in torch.nonzero(peak <= limit).flatten().tolist()]
    return empty


def to_uint8(images) -> np.ndarray:
    """Float [..., H, W, C] in 0..1 (torch or numpy) -> numpy uint8, round-to-nearest then clip.

    ComfyUI IMAGE tensors loaded from files hold uint8/255, so this recovers the bytes exactly.
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().to("cpu", torch.float32).numpy()
    x = np.rint(np.asarray(images, dtype=np.float32) * 255.0)
    return np.clip(x, 0, 255).astype(np.uint8)


def uint8_frames(frames, start: int = 0, end: int | None = None) -> np.ndarray:
    """Frames ``start..end-1`` as numpy uint8, converted a few frames at a time: an IMAGE batch
    [F,H,W,C] (RGB, alpha dropped), a MASK batch [F,H,W] or one mask [H,W] (one frame). uint8 input
    is taken as it is."""
    x = frames if isinstance(frames, torch.Tensor) else np.asarray(frames)
    x = x[None] if x.ndim == 2 else x
    x = x[..., :3] if x.ndim == 4 else x
    end = x.shape[0] if end is None else min(end, x.shape[0])
    if x.dtype in (torch.uint8, np.uint8):
        part = x[start:end]
        return part.cpu().numpy() if isinstance(part, torch.Tensor) else np.asarray(part)
    parts = [to_uint8(x[i:min(end, i + CHUNK)]) for i in range(start, end, CHUNK)]
    return np.concatenate(parts) if parts else np.zeros((0, *x.shape[1:]), np.uint8)


def uint8_frame(frames, i: int) -> np.ndarray:
    """Frame ``i`` of an IMAGE / MASK batch as uint8 (``uint8_frames``); a one-frame batch (a still)
    gives its frame for every ``i``."""
    j = 0 if frames.ndim == 2 or frames.shape[0] == 1 else i
    return uint8_frames(frames, j, j + 1)[0]


def to_image(frames) -> torch.Tensor:
    """uint8 frames (numpy or torch, any shape: [F,H,W,3], [H,W,3], [F,H,W]) -> float32 torch in 0..1
    of the same shape (a ComfyUI IMAGE / MASK)."""
    t = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if t.dtype != torch.uint8:
        raise TypeError(f"to_image takes uint8 frames, got {t.dtype}.")
    return t.to(torch.float32).div_(255.0)


def grey_image(maps: torch.Tensor) -> torch.Tensor:
    """Maps [F,H,W] (0..1; depth, masks) -> a grey IMAGE [F,H,W,3], clamped to 0..1."""
    return maps.float().clamp(0, 1)[..., None].expand(*maps.shape, 3).contiguous()


# ----------------------------------------------------------------------------- masks

def mask_stack(masks, size: tuple[int, int], what: str = "mask") -> torch.Tensor:
    """Masks as float [N,H,W] on the CPU at ``size`` (H, W): one mask [H,W], a batch [N,H,W], or an
    IMAGE [N,H,W,C] used as a mask (first channel). Masks of another size are resized (bilinear); the
    caller decides how to threshold them."""
    m = torch.as_tensor(masks).detach().to("cpu", torch.float32)
    if m.ndim == 2:
        m = m[None]
    if m.ndim == 4:
        m = m[..., 0]
    if m.ndim != 3:
        raise ValueError(f"The {what} must be [height, width] or [frames, height, width] (a MASK), got shape "
                         f"{tuple(m.shape)}.")
    h, w = size
    if m.shape[1:] != (h, w):
        log.info("Resizing the %s from %dx%d to the video's %dx%d.", what, m.shape[2], m.shape[1], w, h)
        m = F.interpolate(m[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    return m


def as_maps(maps, frames, what: str = "mask") -> torch.Tensor:
    """Per-frame maps [F,H,W] float at the video's size (``frames``: the video, or its (F, H, W)): one
    map per frame, or a single one for all (a MASK, or an IMAGE's first channel; values kept)."""
    n, h, w = tuple(frames.shape[:3]) if hasattr(frames, "shape") else tuple(frames)
    m = torch.as_tensor(maps)
    count = m.shape[0] if m.ndim >= 3 else 1
    if count not in (1, n):
        raise ValueError(f"The {what} has {count} frames but the video has {n}: give one per frame (or a single one "
                         "for the whole clip). Trim or resample them to the same length.")
    return mask_stack(m, (h, w), what).expand(n, h, w)


def as_masks(masks, frames, what: str = "mask") -> torch.Tensor:
    """``as_maps`` clamped to 0..1: one mask per frame of the video."""
    return as_maps(masks, frames, what).clamp(0, 1)


def one_mask(mask, size: tuple[int, int], index: int = 0, what: str = "mask") -> torch.Tensor:
    """Mask ``index`` of a batch (the only one of a single mask) as float [H,W] at ``size``."""
    m = mask_stack(mask, size, what)
    return m[index if index < m.shape[0] else 0]


def check_count(images, count: int, what: str, single_ok: bool = True) -> None:
    """That the input ``what`` (an IMAGE or MASK batch) has ``count`` frames (or one, with ``single_ok``)."""
    n = 1 if images.ndim == 2 else images.shape[0]
    if n != count and not (single_ok and n == 1):
        single = " (or 1 for the whole clip)" if single_ok else ""
        raise ValueError(f"'{what}' has {n} frames but {count}{single} are needed: connect frames of the same clip "
                         "(same frame count).")


def check_size(images, width: int, height: int, what: str, against: str) -> None:
    """That the input ``what`` has ``width`` x ``height`` frames, as ``against`` has."""
    h, w = images.shape[-3:-1] if images.ndim == 4 else images.shape[-2:]
    if (w, h) != (width, height):
        raise ValueError(f"'{what}' is {w}x{h} but {against} is {width}x{height}: connect full frames of the same "
                         "video (resize them to that size if they come from elsewhere).")


# ----------------------------------------------------------------------------- the generator's inputs

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
