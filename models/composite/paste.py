"""Paste-back of the official MIMO editing mode (run_edit.py; mimo_official.md §1.6, trap 13).

The sampler returns N square frames, one per crop of the ROI plan (``roi.py``). For every
clip k and every frame i of its context, in order:

1. ``uint8(frame * 255)`` (truncation), PIL bicubic resize to the padded square size;
2. strip the padding, which gives exactly the clip's crop; paste it at the box origin on a white
   canvas of the full frame size;
3. alpha = a border-aware feathered mask at the crop (below), zero elsewhere;
   ``res = canvas * alpha + scene * (1 - alpha)`` (float32), over the ORIGINAL full-frame
   inpainted scene: outside the box the output is the scene, the original person never shows;
4. occluders: ``res = res * (1 - occ) + video * occ`` with the soft occluder alpha (0..1, on the
   uint8 grid), which puts the original occluder pixels back on top;
5. the first time frame i is produced it is stored; a frame produced again (the re-included
   overlap frames at the start of the next clip) is cross-faded,
   ``old * (1 - f) + new * f`` with ``f = (i - context[0] + 1) / (overlap + 1)`` (1/5 ... 4/5);
6. ``astype(uint8)`` (truncation) after each store.

Feathered masks. The official masks are 16 PNGs (``assets/masks/alpha2_<mode>.png``) that are not
public. The mode says which box sides touch the frame border (x0 <= 0, x1 >= W, y0 <= 0,
y1 >= H), in the official order of ``MASK_MODES``. We synthesise them: alpha is 1 inside and
ramps **linearly** to 0 towards every side that does NOT touch the border, over
``feather_px = max(4, round(feather * min(crop_w, crop_h)))`` pixels (default feather 0.1, capped
at half the side); a pixel at distance d (0 = outermost row/column) gets ``min(1, d / feather_px)``,
so the outermost pixels are pure scene and the blend is seamless. Sides that touch the border get
no ramp (the crop reaches the picture's edge). The two directions multiply (rounded corners).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .roi import RoiPlan

MASK_MODES = ("up_down_left_right", "left_right_up", "left_right_down", "up_down_left", "up_down_right",
              "left_right", "up_down", "left_up", "right_up", "left_down", "right_down",
              "left", "right", "up", "down", "inner")
DEFAULT_FEATHER = 0.1
MIN_FEATHER_PX = 4


def border_mode(box, width: int, height: int) -> str:
    """Official ``get_mask`` mode: which sides of box (x0, x1, y0, y1) touch the frame border."""
    x0, x1, y0, y1 = box
    left, right, up, down = x0 <= 0, x1 >= width, y0 <= 0, y1 >= height
    if left and right and up and down:
        return "up_down_left_right"
    if left and right and up:
        return "left_right_up"
    if left and right and down:
        return "left_right_down"
    if left and up and down:
        return "up_down_left"
    if right and up and down:
        return "up_down_right"
    if left and right:
        return "left_right"
    if up and down:
        return "up_down"
    if left and up:
        return "left_up"
    if right and up:
        return "right_up"
    if left and down:
        return "left_down"
    if right and down:
        return "right_down"
    if left:
        return "left"
    if right:
        return "right"
    if up:
        return "up"
    if down:
        return "down"
    return "inner"


def feather_px(w: int, h: int, feather: float = DEFAULT_FEATHER) -> int:
    """Ramp width in pixels for a crop of w x h."""
    if feather <= 0:
        return 0
    px = max(MIN_FEATHER_PX, round(feather * min(w, h)))
    return max(0, min(px, min(w, h) // 2))


def _ramp(n: int, px: int, low: bool, high: bool) -> np.ndarray:
    """1D alpha over n pixels with a linear ramp of px pixels at the low and/or high end."""
    a = np.ones(n, np.float32)
    if px <= 0:
        return a
    d = np.minimum(1.0, np.arange(n, dtype=np.float32) / np.float32(px))
    if low:
        a = np.minimum(a, d)
    if high:
        a = np.minimum(a, d[::-1])
    return a


def feather_mask(mode: str, w: int, h: int, feather: float = DEFAULT_FEATHER) -> np.ndarray:
    """Synthetic official alpha mask [h, w] float32 for a mode of ``MASK_MODES``."""
    if mode not in MASK_MODES:
        raise ValueError(f"unknown mask mode {mode!r}; one of {MASK_MODES}")
    touching = set() if mode == "inner" else set(mode.split("_"))
    px = feather_px(w, h, feather)
    rx = _ramp(w, px, "left" not in touching, "right" not in touching)
    ry = _ramp(h, px, "up" not in touching, "down" not in touching)
    return ry[:, None] * rx[None, :]


def mask_set(w: int, h: int, feather: float = DEFAULT_FEATHER) -> list[np.ndarray]:
    """The 16 masks in the official order (e.g. to save them as ``alpha2_<mode>.png``)."""
    return [feather_mask(m, w, h, feather) for m in MASK_MODES]


def _truncate_uint8(frame: np.ndarray) -> np.ndarray:
    """Official ``(x * 255).astype(np.uint8)`` of a decoded frame in 0..1 (float32)."""
    x = np.asarray(frame, dtype=np.float32) * np.float32(255)
    return np.clip(x, 0, 255).astype(np.uint8)  # the clip only guards values outside 0..1


def paste_frame(generated: np.ndarray, plan: RoiPlan, k: int, scene: np.ndarray, video: np.ndarray | None = None,
                occlusion: np.ndarray | None = None, feather: float = DEFAULT_FEATHER,
                generated_is_uint8: bool = False) -> np.ndarray:
    """Steps 1-4 for one crop of clip k: returns the float blend [H,W,3] (float32, or float64 with occluders).

    generated: the sampler frame [h,w,3] in 0..1 (or uint8 with ``generated_is_uint8``);
    scene, video: uint8 [H,W,3] full frames; occlusion: uint8 [H,W] (0..255) or None."""
    img = np.asarray(generated)
    img = img.astype(np.uint8) if generated_is_uint8 else _truncate_uint8(img)
    side, (top, bottom, left, right) = plan.padding(k)
    pil = Image.fromarray(np.ascontiguousarray(img[..., :3]))
    if pil.size != (side, side):
        pil = pil.resize((side, side), resample=Image.BICUBIC)
    piece = np.asarray(pil)[top:side - bottom, left:side - right]
    height, width = scene.shape[:2]
    x0, _, y0, _ = plan.clip_boxes[k]
    canvas = np.full((height, width, 3), 255, np.uint8)
    alpha = np.zeros((height, width), np.float32)
    ph, pw = piece.shape[:2]
    mask = feather_mask(border_mode(plan.clip_boxes[k], width, height), pw, ph, feather)
    # PIL paste / numpy slice assignment: whatever falls outside the frame is dropped
    cx0, cy0 = max(0, x0), max(0, y0)
    cx1, cy1 = min(width, x0 + pw), min(height, y0 + ph)
    if cx1 > cx0 and cy1 > cy0:
        canvas[cy0:cy1, cx0:cx1] = piece[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
        alpha[cy0:cy1, cx0:cx1] = mask[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    a = alpha[:, :, None]
    res = canvas * a + scene[..., :3] * (1 - a)  # float32, as the official uint8 * float32 arithmetic
    if occlusion is not None:
        if video is None:
            raise ValueError("occluder compositing needs the original video frames")
        occ = (np.asarray(occlusion).astype(np.uint8) / 255.0)[:, :, None]  # float64
        res = res * (1 - occ) + video[..., :3] * occ
    return res


def composite(generated, plan: RoiPlan, scene, video=None, occlusion=None, feather: float = DEFAULT_FEATHER,
              generated_is_uint8: bool = False, progress=None) -> np.ndarray:
    """The official paste-back of N generated frames over the L original frames -> uint8 [L,H,W,3].

    generated: N frames [N,h,w,3] (0..1 floats, numpy or torch, or a callable ``i -> frame``);
    scene, video: uint8 [L,H,W,3] (or callables ``i -> frame``; the scene may be 1 frame for all);
    occlusion: uint8 [L,H,W] soft occluder alpha 0..255 or None (needs ``video``).
    ``progress(done, total)`` is called after each crop (a cancel point in ComfyUI)."""
    _check(generated, "generated", plan.crops, None, single=False)
    for name, value in (("scene", scene), ("video", video), ("occlusion", occlusion)):
        _check(value, name, plan.frames, (plan.height, plan.width), single=name != "video")
    getters = {name: _getter(v) for name, v in (("generated", generated), ("scene", scene), ("video", video),
                                                 ("occlusion", occlusion))}
    n = plan.crops
    out = np.zeros((plan.frames, plan.height, plan.width, 3), np.uint8)
    done = np.zeros(plan.frames, bool)
    index = 0
    for k, ctx in enumerate(plan.contexts):
        start = ctx[0]
        for i in ctx:
            occ = getters["occlusion"](i) if occlusion is not None else None
            vid = getters["video"](i) if video is not None else None
            res = paste_frame(getters["generated"](index), plan, k, getters["scene"](i), vid, occ, feather,
                              generated_is_uint8)
            if done[i]:
                f = (i - start + 1) / (plan.overlap + 1)
                res = out[i] * (1 - f) + res * f
            out[i] = res.astype(np.uint8)
            done[i] = True
            index += 1
            if progress is not None:
                progress(index, n)
    return out


def _getter(value):
    if value is None or callable(value):
        return value
    arr = value
    if arr.shape[0] == 1:
        return lambda i: arr[0]
    return lambda i: arr[i]


def _check(value, name: str, count: int, size, single: bool) -> None:
    if value is None or callable(value):
        return
    n = value.shape[0]
    if n != count and not (single and n == 1):
        raise ValueError(f"{name}: {n} frames, but the ROI plan needs {count}" + (" (or 1)" if single else ""))
    if size is not None and tuple(value.shape[1:3]) != tuple(size):
        raise ValueError(f"{name}: frames are {value.shape[2]}x{value.shape[1]}, the ROI plan's frames "
                         f"{size[1]}x{size[0]}")
