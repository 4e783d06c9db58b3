"""The person found without a prompt. A heuristic, not a person detector:

1. motion (``find_moving_person``): the median of the clip over time is taken as the background
   (static camera); the largest connected region of the prompt frame that differs from it (more than
   ``max(0.06, 4 x the median difference)`` in some channel; opened 3x3, parts within a 5x5 closing
   grouped, holes filled) is taken as the person. It fails when the camera moves (skipped when the
   typical pixel changes by more than 0.04 or half of the frame by more than 0.06), when the person
   hardly moves, or when something else moves more.
2. otherwise (``find_person_with_sam``) SAM 2's automatic mask generator on the prompt frame, and the
   most person-like of its masks (``person_score``): upright (box height/width near 2), a plausible
   size (0.5 %..85 % of the frame), central, not spanning the whole width, weighted by SAM's own
   quality scores.

A MASK from a real person detector/segmenter (any node) is the recommended prompt.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

from .. import image_ops
from .sam2_masks import automatic_masks, mask_generator

log = logging.getLogger("MIMO")

# the automatic mask generator's settings for the person search
PERSON_SETTINGS = dict(pred_iou_thresh=0.7, stability_score_thresh=0.85, box_nms_thresh=0.7)


def _binary(op: str, m: torch.Tensor, k: int) -> torch.Tensor:
    x = m[None, None].float()
    if op == "dilate":
        return F.max_pool2d(x, k, 1, k // 2)[0, 0] > 0.5
    return -F.max_pool2d(-x, k, 1, k // 2)[0, 0] > 0.5  # erode


def find_moving_person(frames: torch.Tensor, frame_idx: int = 0, max_side: int = 320) -> torch.Tensor | None:
    """The largest region of frame ``frame_idx`` that differs from the clip's temporal median, as a
    bool mask [H, W]; None when the clip is too short, the camera seems to move, or nothing fits."""
    from scipy import ndimage

    frames = image_ops.as_frames(frames)
    n, h, w = frames.shape[:3]
    if n < 3:
        return None
    scale = min(1.0, max_side / max(h, w))
    sh, sw = max(8, round(h * scale)), max(8, round(w * scale))
    picks = torch.linspace(0, n - 1, min(n, 48)).round().long().unique()
    picks = torch.cat([picks, torch.tensor([frame_idx])]).unique()

    def small(idx):
        x = frames[idx].permute(0, 3, 1, 2)
        return F.interpolate(x, size=(sh, sw), mode="area") if (sh, sw) != (h, w) else x

    sample = small(picks)
    background = sample.median(dim=0).values
    diff = (sample - background).abs().amax(dim=1)  # [S, sh, sw]
    if float(diff.median()) > 0.04 or (diff > 0.06).float().mean() > 0.5:
        log.info("Automatic person prompt: most of the frame changes (moving camera?); motion cue skipped.")
        return None
    threshold = max(0.06, 4.0 * float(diff.median()))  # above the noise (compression, grain)
    fg = diff[int((picks == frame_idx).nonzero()[0, 0])] > threshold
    fg = _binary("dilate", _binary("erode", fg, 3), 3)  # opening: drop specks
    joined = _binary("erode", _binary("dilate", fg, 5), 5)  # closing: limbs belong to the body
    labels, count = ndimage.label(joined.numpy())
    if count == 0:
        return None
    areas = np.bincount(labels.ravel(), weights=fg.numpy().ravel())[1:]
    best = int(np.argmax(areas)) + 1
    if not 0.003 <= areas[best - 1] / labels.size <= 0.7:
        return None
    region = torch.from_numpy(ndimage.binary_fill_holes((labels == best) & fg.numpy()))
    if (sh, sw) != (h, w):
        region = F.interpolate(region[None, None].float(), size=(h, w), mode="bilinear", align_corners=False)
        region = region[0, 0] > 0.5
    return region


def person_score(mask: np.ndarray, quality: float = 1.0) -> float:
    """How person-like a candidate mask is (0 = not at all): upright, plausible size, central."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return 0.0
    area = len(ys) / (h * w)
    bh, bw = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    if not 0.005 <= area <= 0.85 or bw >= 0.95 * w:
        return 0.0
    upright = math.exp(-0.5 * ((math.log(bh / bw) - math.log(2.0)) / 0.6) ** 2)
    fill = len(ys) / (bh * bw)
    solid = 1.0 if fill < 0.85 else 0.6  # people rarely fill their box; walls, doors and screens do
    centre = 1.0 - abs(xs.mean() / w - 0.5)  # 0.5 .. 1
    return float(quality * upright * solid * centre * math.sqrt(area))


def find_person_with_sam(model, frame: torch.Tensor, points_per_side: int = 16) -> torch.Tensor | None:
    """The most person-like mask of SAM 2's automatic mask generator on one frame [H, W, 3]."""
    generator = mask_generator(model, points_per_side=points_per_side, **PERSON_SETTINGS)
    candidates = automatic_masks(generator, image_ops.to_uint8(frame))
    scores = [person_score(c["segmentation"], c["predicted_iou"] * c["stability_score"]) for c in candidates]
    if not scores or max(scores) <= 0:
        return None
    return torch.from_numpy(np.asarray(candidates[int(np.argmax(scores))]["segmentation"], dtype=bool))


__all__ = ["find_moving_person", "find_person_with_sam", "person_score"]
