"""The person's mask in every frame, and objects tracked from keyframes: SAM 2's video predictor
(``sam2`` 1.1.0) run on the clip in memory.

The model is built for the call (``sam2_build``) and freed after it; frames reach the predictor
without JPEG files and without patching the sam2 package (``sam2_video``). Prompt on the first frame
(on the last one with ``reverse=True``): a mask, points (pixels, with labels 1 = person / 0 = not the
person), a box (``prompts``), or nothing: then the person is found automatically, by motion first
and SAM 2's automatic masks second (``person_finder``; a heuristic, not a person detector).

A MASK from a real person detector/segmenter (any node) is the recommended prompt.
``mask_prompt="points"`` reproduces the official MIMO decomposition (``video_decomp/run.py``): the
first mask is turned into 10 positive points picked evenly (row-major order) among its pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from .. import image_ops
from ..memory import release
from .person_finder import find_moving_person, find_person_with_sam
from .prompts import OFFICIAL_POINTS, check_points, keyframe_objects, mask_to_points, prompt_mask
from .sam2_build import autocast, device_of, load_sam2
from .sam2_video import init_state, propagate

log = logging.getLogger("MIMO")
Progress = Callable[[int, int], None]

MASK_PROMPTS = ("mask", "points")


def _propagate(model, state, start: int, reverse: bool, out: torch.Tensor, done: list, total: int,
               progress: Progress | None) -> None:
    """Run SAM 2 from ``start`` one way, OR-ing every object's mask into ``out`` [F, H, W] (bool)."""
    for frame_idx, _, logits in propagate(model, state, start, reverse):
        out[frame_idx] |= (logits[:, 0] > 0).any(dim=0).cpu()
        done[0] += 1
        if progress is not None:
            progress(done[0], total)


def track_human(frames: torch.Tensor, model_path: str | Path, *, mask: torch.Tensor | None = None,
                points: Sequence[tuple[float, float]] | None = None, labels: Sequence[int] | None = None,
                box: tuple[float, float, float, float] | None = None, reverse: bool = False, device=None,
                chunk: int = 16, image_size: int | None = None, config: str | None = None,
                mask_prompt: str = "mask", auto_points_per_side: int = 16,
                progress: Progress | None = None) -> torch.Tensor:
    """The person's mask in every frame, [F, H, W] float 0/1 on the CPU.

    The prompt (``mask`` [H, W] (or a [F, H, W] batch: its prompt frame is used), ``points`` in
    pixels with ``labels`` (default all 1), ``box`` x0,y0,x1,y1 in pixels) is placed on frame 0, or on
    the last frame with ``reverse=True`` (tracking then runs backwards). Points and a box can be
    combined; a mask is given alone, unless ``mask_prompt="points"`` (official MIMO: the mask becomes
    10 positive points, to which given points are added). With no prompt the person is found
    automatically (``person_finder``: motion, then SAM 2's automatic masks; a heuristic).
    """
    frames = image_ops.as_frames(frames)
    n, h, w = frames.shape[:3]
    if mask_prompt not in MASK_PROMPTS:
        raise ValueError(f"mask_prompt must be one of {MASK_PROMPTS}, got {mask_prompt!r}.")
    points, labels, box = check_points(points, labels, box, h, w)
    frame_idx = n - 1 if reverse else 0
    if mask is not None and mask_prompt == "mask" and (points is not None or box is not None):
        raise ValueError("Give either a mask or points/box as the prompt (SAM 2 takes one kind per frame), "
                         "or set mask_prompt='points' to turn the mask into points.")
    start_mask = prompt_mask(mask, frame_idx, n, h, w) if mask is not None else None
    if start_mask is None and points is None and box is None:
        start_mask = find_moving_person(frames, frame_idx)
        if start_mask is not None:
            log.info("Automatic person prompt: the moving region of frame %d (%d px).",
                     frame_idx, int(start_mask.sum()))

    device = device_of(device)
    model = load_sam2(model_path, device=device, image_size=image_size, config=config)
    try:
        if start_mask is None and points is None and box is None:
            start_mask = find_person_with_sam(model, frames[frame_idx], auto_points_per_side)
            if start_mask is None:
                raise ValueError(
                    "Could not find the person automatically (no moving region and no person-like SAM 2 mask). "
                    "Connect a first-frame MASK (e.g. from a person segmentation node) or give points or a box.")
            log.info("Automatic person prompt: SAM 2's most person-like mask on frame %d (%d px).",
                     frame_idx, int(start_mask.sum()))
        if start_mask is not None and mask_prompt == "points":
            extra, extra_labels = list(points or []), list(labels or [])
            points = mask_to_points(start_mask) + extra
            labels = [1] * OFFICIAL_POINTS + extra_labels
            start_mask = None
        out = torch.zeros(n, h, w, dtype=torch.bool)
        with torch.inference_mode(), autocast(device):
            state = init_state(model, frames, chunk)
            if start_mask is not None:
                model.add_new_mask(state, frame_idx=frame_idx, obj_id=1, mask=start_mask)
            else:
                model.add_new_points_or_box(
                    state, frame_idx=frame_idx, obj_id=1,
                    points=None if points is None else np.asarray(points, np.float32),
                    labels=None if labels is None else np.asarray(labels, np.int32),
                    box=None if box is None else np.asarray(box, np.float32))
            _propagate(model, state, frame_idx, reverse, out, [0], n, progress)
            del state
    finally:
        release(model)
    return out.float()


def track_objects(frames: torch.Tensor, model_path: str | Path, masks_at: dict[int, torch.Tensor],
                  both_directions: bool = True, *, device=None, chunk: int = 16, image_size: int | None = None,
                  config: str | None = None, progress: Progress | None = None) -> torch.Tensor:
    """Objects given as masks on keyframes, tracked through the clip, OR-ed per frame: [F, H, W] 0/1.

    ``masks_at`` maps a frame index to one mask [H, W] or several [N, H, W] (one object each; empty
    ones are skipped). As the official occlusion tracker: each keyframe's objects start from their
    masks (``add_new_mask``) and are propagated forward and, with ``both_directions``, backwards;
    keyframes are tracked one after the other (state reset in between).
    """
    frames = image_ops.as_frames(frames)
    n, h, w = frames.shape[:3]
    groups = keyframe_objects(masks_at, n, h, w)
    out = torch.zeros(n, h, w, dtype=torch.bool)
    if not groups:
        return out.float()
    device = device_of(device)
    model = load_sam2(model_path, device=device, image_size=image_size, config=config)
    total = sum(n - k + (k + 1 if both_directions and k > 0 else 0) for k, _ in groups)
    done = [0]
    try:
        with torch.inference_mode(), autocast(device):
            state = init_state(model, frames, chunk)
            for k, objects in groups:
                model.reset_state(state)
                for obj_id, m in enumerate(objects, start=1):
                    model.add_new_mask(state, frame_idx=k, obj_id=obj_id, mask=m)
                _propagate(model, state, k, False, out, done, total, progress)
                if both_directions and k > 0:
                    _propagate(model, state, k, True, out, done, total, progress)
            del state
    finally:
        release(model)
    return out.float()


__all__ = ["track_human", "track_objects", "MASK_PROMPTS"]
