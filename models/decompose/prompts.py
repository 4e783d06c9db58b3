"""What tells SAM 2 which person (or objects) to track: a mask, points (pixels, with labels 1 =
person / 0 = not the person), a box, given as tensors or typed as text in a node, checked against the
video with errors that say how to write them.

``mask_to_points`` reproduces the official MIMO decomposition (``video_decomp/run.py``): the first
mask is turned into 10 positive points picked evenly (row-major order) among its pixels.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import numpy as np
import torch

from .. import image_ops

log = logging.getLogger("MIMO")

OFFICIAL_POINTS = 10  # video_decomp/run.py get_video_track: 10 positive points from the first mask
Point = tuple[float, float]
Box = tuple[float, float, float, float]


def parse_points(text: str | None) -> list[Point]:
    """``"x,y; x,y"`` (pixels; ``;`` or new lines between points) -> [(x, y), ...]."""
    points = []
    for part in re.split(r"[;\n]+", text or ""):
        if not part.strip():
            continue
        values = [v for v in re.split(r"[,\s]+", part.strip().strip("()[]")) if v]
        try:
            xy = tuple(float(v) for v in values)
        except ValueError:
            xy = ()
        if len(xy) != 2:
            raise ValueError(f"Bad point {part.strip()!r}: write points as 'x,y; x,y' (pixels from the top left).")
        points.append(xy)
    return points


def parse_box(text: str | None) -> Box | None:
    """``"x0,y0,x1,y1"`` (pixels) -> the box, or None for an empty text."""
    if not text or not text.strip():
        return None
    values = [v for v in re.split(r"[,;\s]+", text.strip().strip("()[]")) if v]
    try:
        box = tuple(float(v) for v in values)
    except ValueError:
        box = ()
    if len(box) != 4:
        raise ValueError(f"Bad box {text!r}: write it as 'x0,y0,x1,y1' (pixels, top-left and bottom-right corners).")
    return box


def mask_to_points(mask: torch.Tensor | np.ndarray, n: int = OFFICIAL_POINTS) -> list[Point]:
    """Official MIMO: ``n`` positive points at ``linspace(0, count-1, n).astype(int)`` indices of the
    mask's pixels in row-major order, as (x, y)."""
    m = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask) > 0.5
    yx = np.argwhere(m)
    if len(yx) == 0:
        raise ValueError("The prompt mask is empty: nothing to track.")
    idx = np.linspace(0, len(yx) - 1, n).astype(int)
    return [(float(x), float(y)) for y, x in yx[idx]]


def prompt_mask(mask, frame_idx: int, n: int, h: int, w: int) -> torch.Tensor:
    """The mask prompt of frame ``frame_idx`` as bool [H, W] at the video's size: a single mask, or a
    batch (its prompt frame when it has one mask per video frame, else its first)."""
    t = torch.as_tensor(mask)
    index = frame_idx if t.ndim == 3 and t.shape[0] == n and n > 1 else 0
    m = image_ops.one_mask(t, (h, w), index, "prompt mask") > 0.5
    if not m.any():
        raise ValueError("The prompt mask is empty (no pixel above 0.5) on the prompt frame: nothing to track.")
    return m


def check_points(points: Sequence[Point] | None, labels: Sequence[int] | None, box: Box | None, h: int, w: int):
    """(points, labels, box) checked against a w x h video: labels default to 1, the box is clipped
    to the frame; no points -> (None, None)."""
    if labels is not None and points is None:
        raise ValueError("labels were given without points.")
    if points is not None:
        points = [tuple(map(float, p)) for p in points]
        if any(len(p) != 2 for p in points):
            raise ValueError("points must be (x, y) pairs in pixels.")
        labels = [1] * len(points) if labels is None else [int(v) for v in labels]
        if len(labels) != len(points):
            raise ValueError(f"{len(points)} points but {len(labels)} labels: "
                             "give one label (1 = person, 0 = not) per point.")
        if any(v not in (0, 1) for v in labels):
            raise ValueError("Point labels are 1 (on the person) or 0 (not the person).")
        outside = [p for p in points if not (0 <= p[0] <= w and 0 <= p[1] <= h)]
        if outside:
            raise ValueError(f"Points {outside} lie outside the {w}x{h} video (pixels, x to the right, y down).")
        if not points:
            points, labels = None, None
    if box is not None:
        x0, y0, x1, y1 = map(float, box)
        if not (x1 > x0 and y1 > y0):
            raise ValueError(f"Box {box}: write it as x0,y0,x1,y1 with x1 > x0 and y1 > y0 (pixels).")
        if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            raise ValueError(f"Box {box} lies outside the {w}x{h} video.")
        box = (max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1))
    return points, labels, box


def keyframe_objects(masks_at: dict, n: int, h: int, w: int) -> list[tuple[int, list[torch.Tensor]]]:
    """``{frame: one mask [H,W] or several [N,H,W]}`` -> [(frame, [bool [H,W] per object])], frames
    sorted and checked, masks resized to the video, empty ones skipped (with a warning)."""
    groups = []
    for k in sorted(masks_at):
        if not -n <= int(k) < n:
            raise ValueError(f"Keyframe {k} is outside the {n}-frame video.")
        m = image_ops.mask_stack(masks_at[k], (h, w), f"masks of keyframe {k}")
        objects = [o > 0.5 for o in m if (o > 0.5).any()]
        if len(objects) < len(m):
            log.warning("Keyframe %d: %d empty mask(s) skipped.", k, len(m) - len(objects))
        if objects:
            groups.append((int(k) % n, objects))
    return groups


__all__ = ["parse_points", "parse_box", "mask_to_points", "prompt_mask", "check_points", "keyframe_objects",
           "OFFICIAL_POINTS"]
