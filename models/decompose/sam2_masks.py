"""SAM 2's automatic mask generator on single frames, with the user's SAM 2 weights: candidate objects
for the occluder layer (the official generator settings) and for the automatic person prompt.

The generator's image predictor assumes 1024 px inputs; ``mask_generator`` sizes it to the model's
own input (an attribute of this generator only).
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import torch

from .. import image_ops
from ..memory import release
from .occlusion import CandidateFn, mask_nms
from .sam2_build import autocast, load_sam2

# official SamAutomaticMaskGenerator settings of the occluder search (demo_occ.py)
OFFICIAL_SETTINGS = dict(points_per_side=32, pred_iou_thresh=0.7, box_nms_thresh=0.7, stability_score_thresh=0.85,
                         crop_n_layers=1, crop_n_points_downscale_factor=1, min_mask_region_area=100)


def mask_generator(sam2_model, **settings):
    """``SAM2AutomaticMaskGenerator`` on a built SAM 2 model with ``settings``."""
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    with warnings.catch_warnings():  # SAM 2's image transforms use the deprecated torch.jit.script
        warnings.filterwarnings("ignore", message=".*torch.jit.script", category=FutureWarning)
        generator = SAM2AutomaticMaskGenerator(sam2_model, **settings)
    s = int(getattr(sam2_model, "image_size", 1024))
    generator.predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
    return generator


def automatic_masks(generator, image: np.ndarray) -> list[dict]:
    """The generator's records (``segmentation``, ``predicted_iou``, ``stability_score``, ...) on one
    uint8 frame [H, W, 3], in inference mode (bfloat16 autocast on CUDA)."""
    device = getattr(getattr(generator, "predictor", None), "device", torch.device("cpu"))
    with torch.inference_mode(), autocast(device), warnings.catch_warnings():
        # without SAM 2's optional CUDA extension the generator warns on every call (hole filling skipped)
        warnings.filterwarnings("ignore", message=r".*cannot import name '_C'.*")
        return generator.generate(image)


def sam2_candidates(generator) -> CandidateFn:
    """Occluder candidates from a SAM 2 automatic mask generator (``SAM2AutomaticMaskGenerator``-like:
    its ``generate(uint8 HxWx3)`` returns dicts with ``segmentation`` and ``predicted_iou``), followed
    by the mask NMS."""

    def propose(frame: np.ndarray, depth: np.ndarray, human: np.ndarray) -> list[np.ndarray]:
        records = automatic_masks(generator, image_ops.to_uint8(frame))
        masks = [np.asarray(r["segmentation"], dtype=bool) for r in records]
        scores = [float(r.get("predicted_iou", 1.0)) for r in records]
        return mask_nms(masks, scores)

    return propose


@contextlib.contextmanager
def sam2_proposer(model_path, *, device=None, image_size: int | None = None, **settings):
    """``with sam2_proposer(path) as propose:`` occluder candidates from SAM 2's automatic mask
    generator with the user's SAM 2 weights and the official settings (``settings`` override them);
    the model is freed on exit."""
    model = load_sam2(model_path, device=device, image_size=image_size)
    try:
        yield sam2_candidates(mask_generator(model, **{**OFFICIAL_SETTINGS, **settings}))
    finally:
        release(model)


__all__ = ["mask_generator", "automatic_masks", "sam2_candidates", "sam2_proposer", "OFFICIAL_SETTINGS"]
