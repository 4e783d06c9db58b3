"""Human-centred ROI clips of the official MIMO editing mode (``crop_human_clip_auto_context``).

The sampler works on square crops around the person, not on whole frames. From the motion
renders (SDC frames: body colours on black) every frame gets a box; consecutive frames are
grouped into clips that share one box (the union of their boxes), and a new clip starts when
the union has grown so much that an earlier frame of the clip covers less than half of it.
Each later clip re-includes the last (up to) four frames of the previous one, cropped with the
new box, so the paste-back can cross-fade them (``paste.py``).

Rules, as the official code (mimo_official.md §1.5, trap 12):

- frame mask: ``gray(sdc) > 10`` (RGB->gray, OpenCV weights), then close 5x5, open 2x2;
- box: bounding rect, +10% of its height above and below, +5% of its width left and right
  (``int()`` of each), clamped; width/height made even (``+1`` on the far side); then squared to
  the next multiple of 16 around its centre and clamped to the frame. Empty mask -> (0,0,0,0);
- boxes are tuples **(x0, x1, y0, y1)** (x-range first);
- split rule (``ROI_THE = 0.5``): with the union updated by frame i, the areas of the clip's
  *earlier* frames over the union area; if any is < 0.5 (and they do not sum to 0) the clip
  closes before i with the *previous* union and the union restarts from frame i's box; the last
  frame always joins the open clip;
- contexts: the first clip is ``range(start, end)``, every later one ``range(start - ov, end)``
  with ``ov = min(4, len(previous context))``;
- crops: ``frame[y0:y1, x0:x1]`` with the clip box; a degenerate box (x0>=x1 or y0>=y1) crops
  ``[0:H-1, 0:W-1]`` instead (the paste-back keeps the unmodified box); each crop is padded to a
  square whose side is a multiple of 16 (motion black, scene white) and resized (LANCZOS) to the
  working size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

ROI_THE = 0.5
OVERLAP = 4
SDC_THRESHOLD = 10
BLACK = 0
WHITE = 255

Box = tuple[int, int, int, int]  # (x0, x1, y0, y1)


def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - cv2 ships with the pack's requirements
        raise ImportError("The ROI planner needs OpenCV: pip install opencv-python-headless") from e
    return cv2


# ----------------------------------------------------------------------------- per-frame boxes

def sdc_mask(frame: np.ndarray) -> np.ndarray:
    """uint8 0/255 mask of the body in one motion render [H,W,3] RGB: gray > 10, then cleaned."""
    cv2 = _cv2()
    gray = cv2.cvtColor(np.ascontiguousarray(frame[..., :3]), cv2.COLOR_RGB2GRAY)
    mask = np.where(gray > SDC_THRESHOLD, 255, 0).astype(np.uint8)
    return clean_mask(mask)


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """Morphological close with a 5x5 rectangle, then open with a 2x2 one (OpenCV defaults)."""
    cv2 = _cv2()
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5)))
    return cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (2, 2)))


def bounding_rect(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the nonzero pixels, (0, 0, 0, 0) when there are none (cv2.boundingRect)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return 0, 0, 0, 0
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def grow_box(mask: np.ndarray) -> Box:
    """Official ``crop_img_sdc``: +int(0.10 h) vertically, +int(0.05 w) horizontally, clamped."""
    height, width = mask.shape[:2]
    x, y, w, h = bounding_rect(mask)
    x1, y1 = x + w, y + h
    y0 = max(0, y - int(h * 0.1))
    y1 = min(height, y1 + int(h * 0.1))
    x0 = max(0, x - int(w * 0.05))
    x1 = min(width, x1 + int(w * 0.05))
    return x0, x1, y0, y1


def make_even(box: Box) -> Box:
    """Official ``bbox_div2``: an odd width or height gets one more pixel on the far side."""
    x0, x1, y0, y1 = box
    if (y1 - y0) % 2:
        y1 += 1
    if (x1 - x0) % 2:
        x1 += 1
    return x0, x1, y0, y1


def ceil16(n: int) -> int:
    return n if n % 16 == 0 else (n // 16) * 16 + 16


def square_box(box: Box, width: int, height: int) -> Box:
    """Official ``bbox_pad``: grow to a square of side ceil16(max(w, h)) around the box, then clamp."""
    x0, x1, y0, y1 = box
    w, h = x1 - x0, y1 - y0
    side = ceil16(max(w, h))
    top = (side - h) // 2
    bottom = side - h - top
    left = (side - w) // 2
    right = side - w - left
    return max(0, x0 - left), min(width, x1 + right), max(0, y0 - top), min(height, y1 + bottom)


def frame_box(frame: np.ndarray) -> Box:
    """The official per-frame box of one motion render [H,W,3] uint8 RGB."""
    height, width = frame.shape[:2]
    return square_box(make_even(grow_box(sdc_mask(frame))), width, height)


def box_area(box: Box) -> int:
    x0, x1, y0, y1 = box
    return (x1 - x0) * (y1 - y0)


# ----------------------------------------------------------------------------- the plan

def padding_for(crop_h: int, crop_w: int) -> tuple[int, tuple[int, int, int, int]]:
    """Official ``pad_img`` geometry: (side, (top, bottom, left, right)), side = ceil16(max(h, w))."""
    side = ceil16(max(crop_h, crop_w))
    top = (side - crop_h) // 2
    left = (side - crop_w) // 2
    return side, (top, side - crop_h - top, left, side - crop_w - left)


@dataclass
class RoiPlan:
    """Clips of a video: one box per clip and the frame indices each clip covers.

    ``contexts[k]`` lists the original frame indices of clip k, its first ``overlaps[k]`` being
    frames re-included from the previous clip; the sampler sees the concatenation of all
    contexts (``len(order)`` = N frames), the paste-back gives back ``frames`` = L frames.
    """

    width: int  # original frame size
    height: int
    frame_boxes: list[Box]  # per original frame
    clip_boxes: list[Box]  # per clip, as used by the paste-back (never modified)
    contexts: list[list[int]]
    overlap: int = OVERLAP
    work_width: int | None = None  # size of the crops handed to the sampler (``plan_clips(work_size=)``)
    work_height: int | None = None

    @property
    def frames(self) -> int:
        return len(self.frame_boxes)

    @property
    def crops(self) -> int:
        """N: the number of crops (the sampler's sequence length), overlap frames included."""
        return sum(len(c) for c in self.contexts)

    @property
    def overlaps(self) -> list[int]:
        out, previous_end = [], 0
        for ctx in self.contexts:
            out.append(max(0, previous_end - ctx[0]) if out else 0)
            previous_end = ctx[-1] + 1
        return out

    @property
    def order(self) -> list[tuple[int, int]]:
        """(clip k, frame i) of every crop, in the sampler's order."""
        return [(k, i) for k, ctx in enumerate(self.contexts) for i in ctx]

    def crop_box(self, k: int) -> Box:
        """The region actually cropped for clip k (a degenerate box falls back to [0:W-1, 0:H-1])."""
        x0, x1, y0, y1 = self.clip_boxes[k]
        if x0 >= x1 or y0 >= y1:
            return 0, self.width - 1, 0, self.height - 1
        # numpy slicing clamps at the frame edge, as the official slice does
        return max(0, x0), min(self.width, x1), max(0, y0), min(self.height, y1)

    def crop_size(self, k: int) -> tuple[int, int]:
        """(h, w) of clip k's crops."""
        x0, x1, y0, y1 = self.crop_box(k)
        return max(0, y1 - y0), max(0, x1 - x0)

    def padding(self, k: int) -> tuple[int, tuple[int, int, int, int]]:
        """(padded side, (top, bottom, left, right)) of clip k's crops."""
        return padding_for(*self.crop_size(k))

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "frame_boxes": [list(b) for b in self.frame_boxes],
                "clip_boxes": [list(b) for b in self.clip_boxes], "contexts": [list(c) for c in self.contexts],
                "overlap": self.overlap, "work_width": self.work_width, "work_height": self.work_height}

    @classmethod
    def from_dict(cls, d: dict) -> RoiPlan:
        return cls(d["width"], d["height"], [tuple(b) for b in d["frame_boxes"]],
                   [tuple(b) for b in d["clip_boxes"]], [list(c) for c in d["contexts"]], d.get("overlap", OVERLAP),
                   d.get("work_width"), d.get("work_height"))

    def describe(self) -> str:
        parts = [f"{len(self.contexts)} clip(s), {self.frames} frames -> {self.crops} crops"]
        for k, (ctx, box) in enumerate(zip(self.contexts, self.clip_boxes)):
            parts.append(f"clip {k}: frames {ctx[0]}..{ctx[-1]} box x {box[0]}..{box[1]} y {box[2]}..{box[3]}")
        return "; ".join(parts)


def plan_from_boxes(boxes: list[Box], width: int, height: int, overlap: int = OVERLAP) -> RoiPlan:
    """The official clip split on given per-frame boxes (x0, x1, y0, y1)."""
    n = len(boxes)
    if n == 0:
        raise ValueError("The motion has no frames: the ROI plan needs at least one motion frame.")
    x0, x1, y0, y1 = 10000, 0, 10000, 0  # official init_bbox
    areas = np.zeros(n)
    start = 0
    contexts: list[list[int]] = []
    clip_boxes: list[Box] = []

    def close(end: int, box: Box) -> None:
        if contexts:
            ov = min(overlap, len(contexts[-1]))
            contexts.append(list(range(start - ov, end)))
        else:
            contexts.append(list(range(start, end)))
        clip_boxes.append(tuple(int(v) for v in box))

    for i, box in enumerate(boxes):
        bx0, bx1, by0, by1 = box
        previous = (x0, x1, y0, y1)
        x0, x1, y0, y1 = min(x0, bx0), max(x1, bx1), min(y0, by0), max(y1, by1)
        current = (x0, x1, y0, y1)
        areas[i] = (bx1 - bx0) * (by1 - by0) / 100
        area_max = (y1 - y0) * (x1 - x0) / 100
        ratios = areas[start:i] / area_max if area_max != 0 else np.zeros(i - start)
        if i == n - 1:
            close(n, current)
        elif np.any(ratios < ROI_THE) and ratios.sum() != 0:
            close(i, previous)
            x0, x1, y0, y1 = box
            start = i
    return RoiPlan(width, height, [tuple(int(v) for v in b) for b in boxes], clip_boxes, contexts, overlap)


def plan_clips(motion_frames: np.ndarray, overlap: int = OVERLAP,
               work_size: tuple[int, int] | None = None) -> RoiPlan:
    """The official ROI plan of motion renders uint8 [F,H,W,3] (SDC: body colours on black);
    ``work_size`` (width, height) is the size the crops will be handed to the sampler at."""
    frames = np.asarray(motion_frames)
    if frames.ndim != 4 or frames.shape[-1] < 3 or frames.dtype != np.uint8:
        raise ValueError(f"motion frames must be uint8 [frames, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    boxes = [frame_box(f) for f in frames]
    plan = plan_from_boxes(boxes, frames.shape[2], frames.shape[1], overlap)
    if work_size is not None:
        plan.work_width, plan.work_height = (int(v) for v in work_size)
    return plan


# ----------------------------------------------------------------------------- cropping

def pad_square(image: np.ndarray, value: int) -> np.ndarray:
    h, w = image.shape[:2]
    side, (top, _, left, _) = padding_for(h, w)
    out = np.full((side, side) + image.shape[2:], value, dtype=image.dtype)
    out[top:top + h, left:left + w] = image
    return out


@dataclass
class Crops:
    frames: np.ndarray  # uint8 [N, work_h, work_w, C]
    pads: list[tuple[int, tuple[int, int, int, int]]]  # per crop: (padded side, (top, bottom, left, right))


def crop(plan: RoiPlan, frames: np.ndarray, pad_value: int, width: int | None = None,
         height: int | None = None) -> Crops:
    """The plan's crops of ``frames`` uint8 [L,H,W,C] (one per context entry, in order), padded to
    squares with ``pad_value`` (0 for motion, 255 for the scene) and resized with LANCZOS to
    width x height (None: keep the padded size, which only works when every clip has the same).

    ``frames`` may also hold a single frame, used for every index (a static scene)."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.shape[1:3] != (plan.height, plan.width):
        raise ValueError(f"frames are {frames.shape[2]}x{frames.shape[1]} but the ROI plan was made on "
                         f"{plan.width}x{plan.height} motion frames; use frames of the motion's size.")
    if frames.shape[0] not in (1, plan.frames):
        raise ValueError(f"{frames.shape[0]} frames given for a {plan.frames}-frame plan (give {plan.frames}, "
                         "or 1 for a static picture).")
    out, pads = [], []
    for k, i in plan.order:
        x0, x1, y0, y1 = plan.crop_box(k)
        piece = frames[i if frames.shape[0] > 1 else 0, y0:y1, x0:x1]
        padded = pad_square(piece, pad_value)
        pads.append(plan.padding(k))
        if width is not None and height is not None and padded.shape[:2] != (height, width):
            channels = padded.shape[2]
            img = Image.fromarray(padded[..., 0] if channels == 1 else padded)
            padded = np.asarray(img.resize((width, height), resample=Image.LANCZOS))
            if channels == 1:
                padded = padded[..., None]
        out.append(padded)
    sizes = {o.shape for o in out}
    if len(sizes) > 1:
        raise ValueError(f"the clips have different padded sizes {sorted(s[:2] for s in sizes)}: give a working size")
    return Crops(np.stack(out), pads)
