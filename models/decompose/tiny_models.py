"""Tiny random SAM 2 and Depth Anything V2 checkpoints, with the real architectures and the real
file layouts, for tests and demos (random weights: the masks and depths they give mean nothing).

* SAM 2: a released config (default hiera-t, SAM 2.1) built with random weights at a small input
  size (default 256 instead of 1024, ~16x faster), saved as the official ``{"model": sd}`` ``.pt`` and
  as a flat ``.safetensors`` (ComfyUI's layout; fp16 by default, as ComfyUI's fp16 files). The input
  size is recorded in the file (``.pt`` key / safetensors metadata ``image_size``), which
  ``sam2_build.load_sam2`` reads; real checkpoints record nothing and run at 1024.
* Depth Anything V2: a 4-layer, 64-wide DINOv2 + DPT head (same key layout as vits..vitg), saved in
  the original layout (``pretrained.*`` / ``depth_head.*``) as ``.pth`` and ``.safetensors``, or in the
  transformers layout.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import depth as depth_lib
from . import sam2_build

TINY_SAM2_SIZE = 256
TINY_DEPTH = dict(hidden=64, layers=4, fusion=16, channels=[8, 16, 32, 64], grid=37)


def sam2_file_stem(size: str = "t", version: str = "2.1") -> str:
    """The official file name stem, e.g. ``sam2.1_hiera_tiny`` / ``sam2_hiera_large``."""
    return f"{'sam2.1' if version == '2.1' else 'sam2'}_hiera_{sam2_build.SIZE_NAMES[size]}"


def tiny_sam2_state_dict(size: str = "t", version: str = "2.1", image_size: int = TINY_SAM2_SIZE,
                         seed: int = 0) -> dict[str, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = sam2_build.build_sam2(sam2_build.sam2_config_name(size, version), image_size=image_size)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def write_tiny_sam2(folder: str | Path, *, size: str = "t", version: str = "2.1", image_size: int = TINY_SAM2_SIZE,
                    seed: int = 0, layouts: tuple[str, ...] = ("pt", "safetensors"),
                    safetensors_dtype: torch.dtype = torch.float16, stem: str | None = None) -> dict[str, Path]:
    """Write a random SAM 2 as ``<stem>.pt`` and/or ``<stem>.safetensors``; returns {layout: path}."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = stem or sam2_file_stem(size, version)
    sd = tiny_sam2_state_dict(size, version, image_size, seed)
    written = {}
    if "pt" in layouts:
        written["pt"] = folder / f"{stem}.pt"
        torch.save({"model": sd, sam2_build.META_IMAGE_SIZE: image_size}, written["pt"])
    if "safetensors" in layouts:
        written["safetensors"] = folder / f"{stem}.safetensors"
        save_file({k: v.to(safetensors_dtype) if v.is_floating_point() else v for k, v in sd.items()},
                  str(written["safetensors"]), metadata={sam2_build.META_IMAGE_SIZE: str(image_size)})
    return written


def tiny_depth_config(metric: bool = False, swiglu: bool = False):
    """The transformers config the tiny Depth Anything files load as (what the loader detects)."""
    from transformers import DepthAnythingConfig, Dinov2Config

    t = TINY_DEPTH
    backbone = Dinov2Config(image_size=t["grid"] * depth_lib.PATCH, patch_size=depth_lib.PATCH, hidden_size=t["hidden"],
                            num_hidden_layers=t["layers"], num_attention_heads=t["hidden"] // depth_lib.HEAD_DIM,
                            mlp_ratio=4, use_swiglu_ffn=swiglu, out_indices=[1, 2, 3, 4], apply_layernorm=True,
                            reshape_hidden_states=False, layerscale_value=1.0)
    return DepthAnythingConfig(backbone_config=backbone, patch_size=depth_lib.PATCH, reassemble_hidden_size=t["hidden"],
                               neck_hidden_sizes=list(t["channels"]), fusion_hidden_size=t["fusion"],
                               head_hidden_size=32,
                               depth_estimation_type="metric" if metric else "relative",
                               max_depth=20 if metric else 1)


def tiny_depth_anything(seed: int = 0, metric: bool = False, swiglu: bool = False):
    """A random tiny ``DepthAnythingForDepthEstimation`` (eval); its output varies over the image."""
    from transformers import DepthAnythingForDepthEstimation

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DepthAnythingForDepthEstimation(tiny_depth_config(metric, swiglu))
        with torch.no_grad():  # lift the last conv above the ReLU so the depth map is not all zeros
            model.head.conv3.bias.fill_(0.5)
            model.head.conv3.weight.normal_(0, 0.2)
    return model.eval()


def write_tiny_depth_anything(folder: str | Path, *, seed: int = 0, metric: bool = False, swiglu: bool = False,
                              layouts: tuple[str, ...] = ("pth", "safetensors"), stem: str | None = None,
                              dtype: torch.dtype = torch.float32) -> dict[str, Path]:
    """Write a tiny random Depth Anything V2: ``pth`` / ``safetensors`` in the original layout,
    ``transformers`` as ``<stem>_hf.safetensors``; returns {layout: path}. Metric files get
    ``metric_hypersim`` in their name (that is how the loader recognises them)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = stem or ("depth_anything_v2_metric_hypersim_tiny" if metric else "depth_anything_v2_tiny")
    model = tiny_depth_anything(seed, metric, swiglu)
    hf = {k: v.detach().to(dtype).clone().contiguous() for k, v in model.state_dict().items()}
    original = depth_lib.transformers_to_original(hf)
    written = {}
    if "pth" in layouts:
        written["pth"] = folder / f"{stem}.pth"
        torch.save(original, written["pth"])
    if "safetensors" in layouts:
        written["safetensors"] = folder / f"{stem}.safetensors"
        save_file(original, str(written["safetensors"]))
    if "transformers" in layouts:
        written["transformers"] = folder / f"{stem}_hf.safetensors"
        save_file(hf, str(written["transformers"]))
    return written


def write_tiny_decompose_weights(models_dir: str | Path, seed: int = 0) -> dict[str, Path]:
    """The tiny SAM 2 (``models/sam2``, both layouts) and Depth Anything (``models/depthanything``,
    both original layouts) under a ComfyUI models folder; returns {name: path}."""
    models_dir = Path(models_dir)
    sam = write_tiny_sam2(models_dir / "sam2", seed=seed)
    depth = write_tiny_depth_anything(models_dir / "depthanything", seed=seed)
    return {p.name: p for p in [*sam.values(), *depth.values()]}


__all__ = ["write_tiny_sam2", "tiny_sam2_state_dict", "sam2_file_stem", "tiny_depth_config", "tiny_depth_anything",
           "write_tiny_depth_anything", "write_tiny_decompose_weights", "TINY_SAM2_SIZE"]
