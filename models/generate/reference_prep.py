"""Reference-image preparation of the official MIMO code: white composite, crop, square pad, CLIP pixels."""

import numpy as np
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_SIZE = 224
MIN_CHARACTER_SIDE = 32  # pixels of the character's box, longer side: less has nothing to crop, pad and scale up
MIN_CHARACTER_WIDTH = 4  # ... and its shorter side


def _alpha_bytes(alpha: np.ndarray):
    """Return (alpha float64, nonzero mask). Alpha on the k/255 grid is snapped so that the
    composite equals the official ``A / 255`` (float64) arithmetic bit for bit."""
    a = np.asarray(alpha)
    if a.dtype == np.uint8:
        return a / 255, a > 0
    a = a.astype(np.float64)
    k = np.rint(a * 255.0)
    if np.all(np.abs(a * 255.0 - k) < 1e-3):
        k = np.clip(k, 0, 255).astype(np.uint8)
        return k / 255, k > 0
    return np.clip(a, 0.0, 1.0), a > 0


def _composite_white(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    # official process_seg: color*alpha + 255*(1-alpha) in float64, then astype(uint8) (truncation)
    a = alpha[:, :, None]
    return (image * a + 255.0 * (1.0 - a)).astype(np.uint8)


def _bounding_rect(mask: np.ndarray):
    """cv2.boundingRect of the nonzero pixels: (x, y, w, h)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    y, x = int(rows[0]), int(cols[0])
    return x, y, int(cols[-1]) - x + 1, int(rows[-1]) - y + 1


def crop_box(mask: np.ndarray):
    """Official crop_img box (y0, y1, x0, x1): alpha bbox grown by int(0.05*h) vertically only, clamped."""
    x, y, w, h = _bounding_rect(mask)
    grow = int(0.05 * h)
    return max(0, y - grow), min(mask.shape[0], y + h + grow), x, x + w


def pad_square(image: np.ndarray, value: int = 255):
    """Official pad_img: pad to a square whose side is max(h, w) rounded up to a multiple of 16.

    Returns (padded, (top, bottom, left, right))."""
    h, w = image.shape[:2]
    side = -(-max(h, w) // 16) * 16
    top = (side - h) // 2
    left = (side - w) // 2
    bottom, right = side - h - top, side - w - left
    out = np.full((side, side) + image.shape[2:], value, dtype=image.dtype)
    out[top:top + h, left:left + w] = image
    return out, (top, bottom, left, right)


def prepare_reference(image: np.ndarray, alpha=None, min_side: int = 0) -> np.ndarray:
    """Official reference prep on uint8 RGB [H, W, 3] -> white-padded square uint8 [S, S, 3].

    ``alpha`` is the matte [H, W] (float 0..1, or uint8 0..255), 1 = person (ComfyUI's MASK from
    LoadImage is the inverse, 1 - alpha). With ``alpha=None`` the whole image is only padded.
    ``min_side``: the character's box (after the crop) must be at least this many pixels on its longer
    side and ``MIN_CHARACTER_WIDTH`` on the shorter (the nodes use ``MIN_CHARACTER_SIDE``; the official
    code has no minimum).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"reference image must be uint8 [H, W, 3], got {image.dtype} {tuple(image.shape)}")
    if alpha is not None:
        alpha = np.asarray(alpha)
        if alpha.ndim == 3 and alpha.shape[0] == 1:
            alpha = alpha[0]
        if alpha.shape != image.shape[:2]:
            raise ValueError(f"mask size {tuple(alpha.shape)} differs from the image size {image.shape[:2]}")
        a, nonzero = _alpha_bytes(alpha)
        if not nonzero.any():
            raise ValueError(
                "the reference mask is empty (all zero), so there is no person to crop. Connect the "
                "person's matte (1 = person; invert a ComfyUI LoadImage mask), or leave the mask "
                "unconnected to use the whole image as it is."
            )
        image = _composite_white(image, a)
        y0, y1, x0, x1 = crop_box(nonzero)
        image = image[y0:y1, x0:x1]
    h, w = image.shape[:2]
    if min_side and (max(h, w) < min_side or min(h, w) < min(min_side, MIN_CHARACTER_WIDTH)):
        what = "the character's box (cropped to its mask)" if alpha is not None else "the reference image"
        raise ValueError(f"The character is too small: {what} is {w}x{h} pixels, and MIMO's preparation (crop, "
                         f"pad to a square, scale to the working size and to {CLIP_SIZE} for CLIP) needs at least "
                         f"{min_side} pixels on the longer side and {min(min_side, MIN_CHARACTER_WIDTH)} on the "
                         "shorter. Use a larger picture of the character (MIMO was trained on "
                         "characters several hundred pixels tall), or check the mask.")
    return pad_square(image, 255)[0]


def clip_pixel_values(ref: np.ndarray) -> torch.Tensor:
    """uint8 [S, S, 3] -> float32 [1, 3, 224, 224]: PIL bicubic squash to 224, /255, OpenAI CLIP norm."""
    pil = Image.fromarray(np.asarray(ref)).resize((CLIP_SIZE, CLIP_SIZE), resample=Image.BICUBIC)
    x = np.asarray(pil).astype(np.float32) / np.float32(255.0)
    mean = np.asarray(CLIP_MEAN, dtype=np.float32)
    std = np.asarray(CLIP_STD, dtype=np.float32)
    x = (x - mean) / std
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
