"""The occluder layer: objects in front of the person, per frame.

Follows the official MIMO decomposition (``video_decomp/run.py: get_occ`` and ``demo_occ.py:
OccTracker``, mimo_official.md §4.2 step 9):

1. **Keyframes**: frames ranked by the number of 8-connected components of the cleaned human mask
   (an object in front cuts the person into pieces), most first; up to 5 taken greedily at least 20
   frames apart, then sorted.
2. **Candidate regions** at each keyframe: the official code uses SAM's automatic mask generator
   (``points_per_side 32``, ``pred_iou_thresh 0.7``, ``stability_score_thresh 0.85``, ...). Here:
   ``"depth"`` (the default, no model): the connected regions of the depth map that are nearer than
   the person, cut apart where the depth jumps (and, optionally, along colour edges), regions under
   100 px dropped. It finds whatever sticks out towards the camera around the person; objects at the
   person's depth or touching a nearer floor without a depth step are merged or missed, which a SAM
   mask generator separates better. ``sam2_masks.sam2_proposer`` runs SAM 2's automatic mask
   generator with the user's SAM 2 weights and the official generator settings (the official code
   used SAM v1 ViT-H here); a mask NMS of our own with the official 0.8 IoU / 0.7 score / 0.5 inner thresholds follows.
3. **Selection** (``select_occluders``; official ``get_obscure_obj``), candidates largest first:
   ``d_h`` = mean depth over the person (depth 0 ignored); "nearer" = depth > ``d_h`` outside the
   person. A candidate is skipped when it is the person (overlap > 0.8 of the person or > 0.5 of
   itself). It is "ground" when its bottom 10 rows are >= 90 % covered. It is cleaned, the person
   removed from it, and kept when >= 40 % of it is nearer and its nearer part overlaps the body by at
   least: 10 % of the body (ground), 600 px (bigger than the person) or 100 px (smaller).
   "The body" is the official SDC render mask (the whole estimated body, hidden parts included):
   pass ``body_masks`` (e.g. MIMO Rasterize Motion's silhouette of the motion estimated from this
   clip); without it the convex hull of the person's mask stands in (it bridges an object that cuts
   the person in two, but not one that hides a whole end of the body, e.g. the legs behind a table).
4. **Tracking** both ways through the clip from each keyframe (official: SAM 2 video predictor,
   ``add_new_mask`` at the keyframe, ``propagate_in_video`` forward and reverse, OR-ed). Candidates
   that repeat what is already tracked at their keyframe (same 0.8 / 0.5 rule) are skipped. ``track``
   is a callable ``track(frames, {keyframe: [N,H,W] masks, one per object}) -> [F,H,W]`` (the pack's
   SAM 2 ``track_objects``, called once per keyframe that has new objects), or
   ``"static"`` (occluders assumed not to move: the keyframe selections held over the whole clip) or
   ``"per-frame"`` (no tracking: the selection re-run on every frame; moving occluders, noisier).
   The person's own pixels are removed from the result (nothing is in front where the person is seen).
5. **Soft alpha**: the official ``refine_mask.onnx`` matting network (RGB + raw mask -> alpha) is not
   public, so it is not reproduced. ``soft="feather"`` gives a linear alpha ramp ``feather`` px wide
   across the outline (0.5 on it; thin objects keep full opacity inside).

The pixel thresholds (600 / 100 px) are the official ones, at the official working resolution
(short side at most 720 px); scale them with the image area for other sizes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .. import image_ops

log = logging.getLogger("MIMO")

Mask = np.ndarray  # bool [H,W]
Tracker = Callable[[torch.Tensor, dict], torch.Tensor]  # (frames, {keyframe: [N,H,W] objects}) -> [F,H,W]
CandidateFn = Callable[[np.ndarray, np.ndarray, np.ndarray], Sequence[np.ndarray]]
Progress = Callable[[int, int], None]

SOFT_MODES = ("hard", "feather")
TRACK_MODES = ("static", "per-frame")


@dataclass
class OcclusionRules:
    """The official selection thresholds (mimo_official.md §4.2 step 9)."""

    nearer_ratio: float = 0.4  # |m ∩ nearer| >= 0.4 |m|
    min_pixels_large: int = 600  # |m ∩ nearer ∩ body| for a candidate bigger than the person
    min_pixels_small: int = 100  # ... for a smaller one
    ground_ratio: float = 0.1  # ... for the ground: 10 % of the body
    ground_rows: int = 10
    ground_cover: float = 0.9
    same_big: float = 0.8  # "is the same object": overlap > 0.8 of the reference ...
    same_small: float = 0.5  # ... or > 0.5 of the candidate
    min_region: int = 100  # SAM's min_mask_region_area; also the built-in proposal's minimum
    max_keyframes: int = 5
    keyframe_gap: int = 20


# ----------------------------------------------------------------------------- mask helpers


def clean_mask(mask: Mask) -> Mask:
    """Official ``clean_mask``: closing with a 5x5 rectangle, then opening with a 2x2 one.

    OpenCV's ``morphologyEx`` opening with an even kernel shifts the mask by one pixel (erosion and
    dilation share the anchor); the opening here pairs the anchors so a clean mask stays in place."""
    import cv2

    m = mask.astype(np.uint8)
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5)))
    k2 = np.ones((2, 2), np.uint8)
    m = cv2.dilate(cv2.erode(m, k2), k2, anchor=(0, 0))
    return m > 0


def count_components(mask: Mask) -> int:
    import cv2

    n, _ = cv2.connectedComponents(clean_mask(mask).astype(np.uint8), connectivity=8)
    return n - 1


def same_object(candidate: Mask, reference: Mask, big: float = 0.8, small: float = 0.5) -> bool:
    """Official duplicate test: overlap > ``big`` of the reference or > ``small`` of the candidate."""
    ref = int(reference.sum())
    if ref == 0:
        return False
    inter = int(np.logical_and(candidate, reference).sum())
    return inter > big * ref or inter > small * int(candidate.sum())


def convex_hull(mask: Mask) -> Mask:
    """The filled convex hull of a mask's pixels (all components together)."""
    import cv2

    pts = cv2.findNonZero(mask.astype(np.uint8))
    out = np.zeros(mask.shape, np.uint8)
    if pts is None:
        return out > 0
    cv2.fillConvexPoly(out, cv2.convexHull(pts), 1)
    return (out > 0) | mask


def pick_keyframes(human_masks, max_keyframes: int = 5, min_gap: int = 20) -> list[int]:
    """Official ``get_occ_frame``: most connected components first, greedy, >= ``min_gap`` apart, sorted.

    Frames without a person are never keyframes (nothing can be in front of no one)."""
    masks = _np_masks(human_masks)
    counts = np.array([count_components(m) for m in masks])
    order = np.argsort(-counts, kind="stable")
    chosen: list[int] = []
    for i in order:
        if counts[i] == 0 or len(chosen) >= max_keyframes:
            break
        if all(abs(int(i) - k) >= min_gap for k in chosen):
            chosen.append(int(i))
    return sorted(chosen)


def mask_nms(masks: Sequence[Mask], scores: Sequence[float] | None = None, *, iou_thr: float = 0.8,
             score_thr: float = 0.7, inner_thr: float = 0.5) -> list[Mask]:
    """Duplicate removal for automatic masks (our own rule with the official thresholds of
    ``masks_update_single``), best score first: masks scoring under ``score_thr`` are dropped, so are
    masks with IoU > ``iou_thr`` against a kept one. Of two nested masks (>= 85 % of one inside the
    other, which it covers less than half of, and ``1 - a*b >= inner_thr`` with a, b the two inclusion
    ratios) the inner one is dropped, whichever scores better: whole objects are kept, not parts."""
    scores = list(scores) if scores is not None else [1.0] * len(masks)
    order = sorted(range(len(masks)), key=lambda i: -scores[i])
    kept: list[Mask] = []
    for i in order:
        m = masks[i]
        area = int(m.sum())
        if scores[i] < score_thr or area == 0:
            continue
        drop, inner_kept = False, []
        for j, k in enumerate(kept):
            inter = int(np.logical_and(m, k).sum())
            if inter == 0:
                continue
            ka = int(k.sum())
            if inter / (area + ka - inter) > iou_thr:
                drop = True
                break
            a, b = inter / area, inter / ka  # share of m inside k, share of k inside m
            if 1.0 - a * b >= inner_thr:
                if a >= 0.85 and b < 0.5:
                    drop = True
                    break
                if b >= 0.85 and a < 0.5:
                    inner_kept.append(j)
        if not drop:
            kept = [k for j, k in enumerate(kept) if j not in inner_kept] + [m]
    return kept


# ----------------------------------------------------------------------------- candidates


def depth_candidates(frame: np.ndarray, depth: np.ndarray, human: Mask, *, depth_edge: float = 0.05,
                     colour_edges: bool = False, min_region: int = 100) -> list[Mask]:
    """Built-in candidate proposal (no model): regions nearer than the person, split at depth jumps.

    frame [H,W,3] 0..1, depth [H,W] (larger = nearer), human bool [H,W]. A pixel is an edge where the
    depth range in its 5x5 neighbourhood exceeds ``depth_edge`` (depth normalised 0..1 per frame), or,
    with ``colour_edges``, on a Canny edge of the lightly blurred frame. The 8-connected regions of
    (nearer and not edge) of at least ``min_region`` px are grown back over the edge pixels they touch
    (still nearer), so the regions keep their outlines."""
    import cv2

    nearer = nearer_than_person(depth, human)
    if not nearer.any():
        return []
    d = depth.astype(np.float32)
    span = float(d.max() - d.min()) or 1.0
    k5 = np.ones((5, 5), np.uint8)
    edges = (cv2.dilate(d, k5) - cv2.erode(d, k5)) / span > depth_edge
    if colour_edges:
        grey = cv2.cvtColor(image_ops.to_uint8(frame), cv2.COLOR_RGB2GRAY)
        edges |= cv2.Canny(cv2.GaussianBlur(grey, (5, 5), 1.0), 50, 150) > 0
    inner = nearer & ~edges
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inner.astype(np.uint8), connectivity=8)
    keep = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_region]
    if not keep:
        return []
    grown = np.where(np.isin(labels, keep), labels, 0).astype(np.int32)
    free = nearer & (grown == 0)
    k3 = np.ones((3, 3), np.uint8)
    for _ in range(3):  # edge bands are <= 5 px wide: 3 steps from either side close them
        if not free.any():
            break
        spread = cv2.dilate(grown.astype(np.float32), k3).astype(np.int32)  # the largest neighbour label
        take = free & (spread > 0)
        grown[take] = spread[take]
        free &= ~take
    return [grown == i for i in keep]


# ----------------------------------------------------------------------------- selection


def person_depth(depth: np.ndarray, human: Mask) -> float | None:
    vals = depth[human & (depth > 0)]
    return float(vals.mean()) if vals.size else None


def nearer_than_person(depth: np.ndarray, human: Mask) -> Mask:
    """depth > d_h, with the person's own pixels excluded (official: set to d_h)."""
    d_h = person_depth(depth, human)
    if d_h is None:
        return np.zeros(depth.shape, bool)
    return (depth > d_h) & ~human


def select_occluders(human: Mask, candidates: Sequence[Mask], depth: np.ndarray, *, body: Mask | None = None,
                     rules: OcclusionRules | None = None) -> list[Mask]:
    """Official ``get_obscure_obj`` on one frame: the candidates in front of the person (see the module doc)."""
    rules = rules or OcclusionRules()
    human = human.astype(bool)
    n_human = int(human.sum())
    if n_human == 0:
        return []
    nearer = nearer_than_person(depth, human)
    body = convex_hull(clean_mask(human)) if body is None else body.astype(bool)
    n_body = int(body.sum())
    kept = []
    for m in sorted((c.astype(bool) for c in candidates), key=lambda c: -int(c.sum())):
        inter = int(np.logical_and(m, human).sum())
        if inter > rules.same_big * n_human or inter > rules.same_small * int(m.sum()):
            continue  # the person
        rows = m[-rules.ground_rows:]
        ground = rows.size > 0 and rows.mean() >= rules.ground_cover
        m = clean_mask(m) & ~human
        area = int(m.sum())
        if area == 0:
            continue
        front = m & nearer
        if int(front.sum()) < rules.nearer_ratio * area:
            continue
        if ground:
            need = int(rules.ground_ratio * n_body)
        else:
            need = rules.min_pixels_large if area > n_human else rules.min_pixels_small
        if int((front & body).sum()) < need:
            continue
        kept.append(m)
    return kept


# ----------------------------------------------------------------------------- soft alpha


def soften(masks: torch.Tensor, mode: str = "feather", feather: float = 3.0) -> torch.Tensor:
    """A soft alpha from hard [F,H,W] masks: a linear ramp ``feather`` px wide centred on the outline
    (alpha 0.5 on it), computed from distance transforms so thin objects keep their full opacity."""
    import cv2

    if mode not in SOFT_MODES:
        raise ValueError(f"Unknown soft mode '{mode}': use one of {', '.join(SOFT_MODES)}.")
    if mode == "hard" or feather <= 0:
        return masks.float()
    out = []
    for m in masks.bool().numpy():
        if not m.any() or m.all():
            out.append(m.astype(np.float32))
            continue
        u8 = m.astype(np.uint8)
        inside = cv2.distanceTransform(u8, cv2.DIST_L2, 5)  # distance to the nearest outside pixel
        outside = cv2.distanceTransform(1 - u8, cv2.DIST_L2, 5)
        signed = np.where(m, inside - 0.5, 0.5 - outside)
        out.append(np.clip(0.5 + signed / float(feather), 0.0, 1.0).astype(np.float32))
    return torch.from_numpy(np.stack(out))


# ----------------------------------------------------------------------------- the layer


def _np_masks(masks) -> np.ndarray:
    m = torch.as_tensor(masks).detach().cpu()
    return (m > 0.5).numpy() if m.dtype != torch.bool else m.numpy()


def search_frames(human_masks, rules: OcclusionRules | None = None, track: str | Tracker = "static") -> list[int]:
    """The frames whose candidates are examined: the official keyframes, or (``track="per-frame"``)
    every frame with a person."""
    rules = rules or OcclusionRules()
    human = _np_masks(human_masks)
    if track == "per-frame":
        return [i for i in range(len(human)) if human[i].any()]
    return pick_keyframes(human, rules.max_keyframes, rules.keyframe_gap)


def occluder_masks(frames, human_masks, depth, *, keyframes: Sequence[int] | None = None,
                   candidates: str | CandidateFn | dict = "depth", track: str | Tracker = "static",
                   soft: bool | str = False, feather: float = 3.0, body_masks=None,
                   rules: OcclusionRules | None = None, depth_edge: float = 0.05, colour_edges: bool = False,
                   progress: Progress | None = None) -> torch.Tensor:
    """The occluders in front of the person, per frame: float [F,H,W] 0..1 on the CPU.

    frames [F,H,W,3] 0..1; human_masks [F,H,W] (1 = the person); depth [F,H,W] (or an IMAGE
    [F,H,W,3]), relative inverse depth, larger = nearer.
    keyframes: frames to look for occluders in (default: the official pick, ``pick_keyframes``).
    candidates: ``"depth"`` (built-in proposal), a callable ``(frame, depth, human) -> masks`` (e.g. from
    ``sam2_masks.sam2_proposer``), or ``{frame: masks}`` computed beforehand (pass the same ``keyframes``).
    track: a callable ``(frames, {keyframe: [N,H,W] objects}) -> [F,H,W]``, ``"static"`` or ``"per-frame"``.
    soft: False/"hard" or True/"feather"; ``feather`` in px (the ramp's width).
    body_masks: the whole body per frame (the official SDC mask); default the person's convex hull.
    """
    rules = rules or OcclusionRules()
    x = image_ops.as_frames(frames, single_ok=True)
    n, h, w = x.shape[:3]
    human_t = image_ops.as_maps(human_masks, x, "human mask") > 0.5
    depth_t = image_ops.as_maps(depth, x, "depth")
    body_t = None if body_masks is None else image_ops.as_maps(body_masks, x, "body mask") > 0.5
    human = human_t.numpy()
    depth_np = depth_t.numpy()
    frames_np = x.numpy()
    soft_mode = ("feather" if soft else "hard") if isinstance(soft, bool) else soft
    if soft_mode not in SOFT_MODES:
        raise ValueError(f"Unknown soft mode '{soft}': use one of {', '.join(SOFT_MODES)}.")
    if isinstance(track, str) and track not in TRACK_MODES:
        raise ValueError(f"Unknown tracking '{track}': use a tracker or one of {', '.join(TRACK_MODES)}.")

    if isinstance(candidates, str):
        if candidates != "depth":
            raise ValueError(f"Unknown candidates '{candidates}': use 'depth', a callable or a dict of masks.")

        def propose_at(i):
            return depth_candidates(frames_np[i], depth_np[i], human[i], depth_edge=depth_edge,
                                    colour_edges=colour_edges, min_region=rules.min_region)
    elif isinstance(candidates, dict):
        def propose_at(i):
            return [np.asarray(torch.as_tensor(m).cpu()) > 0.5 for m in candidates.get(i, [])]
    else:
        def propose_at(i):
            return candidates(frames_np[i], depth_np[i], human[i])

    def occluders_at(i: int) -> list[Mask]:
        body = None if body_t is None else body_t[i].numpy()
        return select_occluders(human[i], propose_at(i), depth_np[i], body=body, rules=rules)

    result = np.zeros((n, h, w), bool)
    keys = search_frames(human, rules, track) if keyframes is None else sorted(int(k) for k in keyframes)
    if any(not 0 <= k < n for k in keys):
        raise ValueError(f"Keyframes {keys} must lie in the clip's frames 0..{n - 1}.")
    if track == "per-frame":
        for j, i in enumerate(keys):
            for m in occluders_at(i):
                result[i] |= m
            if progress is not None:
                progress(j + 1, len(keys))
    else:
        log.info("Occluders: keyframes %s.", keys)
        for j, k in enumerate(keys):
            found = occluders_at(k)
            new = [m for m in found if not same_object(m, result[k], rules.same_big, rules.same_small)]
            log.info("Occluders: %d candidate(s) in front at frame %d, %d new.", len(found), k, len(new))
            if new:
                if track == "static":
                    result |= np.logical_or.reduce(new)[None]
                else:
                    tracked = torch.as_tensor(track(x, {k: torch.from_numpy(np.stack(new))}))
                    if tracked.shape != (n, h, w):
                        raise RuntimeError(f"The tracker returned {tuple(tracked.shape)}, expected {(n, h, w)}.")
                    result |= (tracked.float() > 0.5).numpy()
            if progress is not None:
                progress(j + 1, len(keys))
    result &= ~human
    return soften(torch.from_numpy(result), soft_mode, feather)
