"""Relative depth of every frame: Depth Anything V2 (Yang et al. 2024) through transformers'
``DepthAnythingForDepthEstimation``.

Checkpoints (``models/depthanything``): the original ``depth_anything_v2_vit{s,b,l}.pth`` (keys
``pretrained.*`` / ``depth_head.*``, what official MIMO loads), ComfyUI's / Kijai's
``depth_anything_v2_vit{s,b,l,g}_fp{16,32}.safetensors`` and ``depth_anything_v2_metric_{hypersim,vkitti}_vitl``
(same layout), or a transformers-layout state dict (``backbone.*`` / ``neck.*`` / ``head.*``). The
architecture comes from the shapes: the DINOv2 width (384 s, 768 b, 1024 l, 1536 g; 64 channels per
head), its depth, the DPT feature width and reassemble channels; the backbone taps are the official
ones (s/b ``[2,5,8,11]``, l ``[4,11,17,23]``, g ``[9,19,29,39]``, 0-based). The original keys are
renamed to transformers' (the qkv and SwiGLU projections split), so no original code is needed.
Licences: code Apache-2.0; Small weights Apache-2.0, Base/Large/Giant weights CC-BY-NC-4.0.

Inference follows the original ``infer_image(image, 518)``: RGB 0..1, resized keeping the aspect
ratio so that both sides are at least ``input_size`` and multiples of 14 (the original's
``lower_bound`` rule; bicubic like its ``cv2.INTER_CUBIC``), ImageNet-normalised; the prediction is
resized back to the frame (bilinear, corners aligned) and min-max normalised per frame to 0..1, as
official MIMO does before its occlusion test. The output is relative **inverse** depth: larger =
nearer. Metric models (file name containing ``metric``; max depth 20 m for hypersim, 80 m otherwise,
Kijai's convention) predict metres, which are inverted (1/d) first so the orientation is the same.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .. import image_ops
from ..memory import release
from ..weights import CheckpointError, read_state_dict

log = logging.getLogger("MIMO")
Progress = Callable[[int, int], None]

PATCH = 14
ENCODERS = {384: "vits", 768: "vitb", 1024: "vitl", 1536: "vitg"}
TAPS = {12: [2, 5, 8, 11], 24: [4, 11, 17, 23], 40: [9, 19, 29, 39]}  # by depth, 0-based (original)
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
HEAD_DIM = 64
HEAD_CONVS = {"1": "conv1", "2.0": "conv2", "2.2": "conv3"}  # original output_conv{..} -> transformers head.*


# ----------------------------------------------------------------------------- key remap

def _split(value: torch.Tensor, parts: int) -> list[torch.Tensor]:
    return list(value.chunk(parts, dim=0))


def original_to_transformers(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original Depth Anything V2 keys -> transformers 5.x ``DepthAnythingForDepthEstimation`` keys."""
    out, unknown = {}, []
    simple = {
        "pretrained.cls_token": "backbone.embeddings.cls_token",
        "pretrained.mask_token": "backbone.embeddings.mask_token",
        "pretrained.pos_embed": "backbone.embeddings.position_embeddings",
        "pretrained.patch_embed.proj.weight": "backbone.embeddings.patch_embeddings.projection.weight",
        "pretrained.patch_embed.proj.bias": "backbone.embeddings.patch_embeddings.projection.bias",
        "pretrained.norm.weight": "backbone.layernorm.weight",
        "pretrained.norm.bias": "backbone.layernorm.bias",
    }
    block_parts = {"norm1": "norm1", "norm2": "norm2", "attn.proj": "attention.o_proj", "mlp.fc1": "mlp.fc1",
                   "mlp.fc2": "mlp.fc2", "mlp.w3": "mlp.down_proj"}
    for key, value in sd.items():
        if key in simple:
            out[simple[key]] = value
        elif m := re.fullmatch(r"pretrained\.blocks\.(\d+)\.(.+)\.(weight|bias|gamma)", key):
            i, part, kind = m.groups()
            base = f"backbone.encoder.layer.{i}."
            if part in ("ls1", "ls2") and kind == "gamma":
                out[base + f"layer_scale{part[-1]}.lambda1"] = value
            elif part == "attn.qkv":
                for name, piece in zip(("q_proj", "k_proj", "v_proj"), _split(value, 3)):
                    out[base + f"attention.{name}.{kind}"] = piece
            elif part == "mlp.w12":
                for name, piece in zip(("gate_proj", "up_proj"), _split(value, 2)):
                    out[base + f"mlp.{name}.{kind}"] = piece
            elif part in block_parts:
                out[base + f"{block_parts[part]}.{kind}"] = value
            else:
                unknown.append(key)
        elif m := re.fullmatch(r"depth_head\.projects\.(\d)\.(weight|bias)", key):
            out[f"neck.reassemble_stage.layers.{m[1]}.projection.{m[2]}"] = value
        elif m := re.fullmatch(r"depth_head\.resize_layers\.([013])\.(weight|bias)", key):
            out[f"neck.reassemble_stage.layers.{m[1]}.resize.{m[2]}"] = value
        elif m := re.fullmatch(r"depth_head\.scratch\.layer(\d)_rn\.weight", key):
            out[f"neck.convs.{int(m[1]) - 1}.weight"] = value
        elif m := re.fullmatch(r"depth_head\.scratch\.refinenet(\d)\.(.+)\.(weight|bias)", key):
            layer = f"neck.fusion_stage.layers.{4 - int(m[1])}."
            if m[2] == "out_conv":
                out[layer + f"projection.{m[3]}"] = value
            elif r := re.fullmatch(r"resConfUnit(\d)\.conv(\d)", m[2]):
                out[layer + f"residual_layer{r[1]}.convolution{r[2]}.{m[3]}"] = value
            else:
                unknown.append(key)
        elif m := re.fullmatch(r"depth_head\.scratch\.output_conv(1|2\.0|2\.2)\.(weight|bias)", key):
            out[f"head.{HEAD_CONVS[m[1]]}.{m[2]}"] = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"Unexpected keys for Depth Anything V2 (original layout): {unknown[:8]}"
                              f"{' ...' if len(unknown) > 8 else ''}.")
    return out


def transformers_to_original(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`original_to_transformers` (writes original-layout files)."""
    out, pending = {}, {}
    simple = {
        "backbone.embeddings.cls_token": "pretrained.cls_token",
        "backbone.embeddings.mask_token": "pretrained.mask_token",
        "backbone.embeddings.position_embeddings": "pretrained.pos_embed",
        "backbone.embeddings.patch_embeddings.projection.weight": "pretrained.patch_embed.proj.weight",
        "backbone.embeddings.patch_embeddings.projection.bias": "pretrained.patch_embed.proj.bias",
        "backbone.layernorm.weight": "pretrained.norm.weight",
        "backbone.layernorm.bias": "pretrained.norm.bias",
    }
    block_parts = {"norm1": "norm1", "norm2": "norm2", "attention.o_proj": "attn.proj", "mlp.fc1": "mlp.fc1",
                   "mlp.fc2": "mlp.fc2", "mlp.down_proj": "mlp.w3"}
    fused = {"q_proj": ("attn.qkv", 0, 3), "k_proj": ("attn.qkv", 1, 3), "v_proj": ("attn.qkv", 2, 3),
             "gate_proj": ("mlp.w12", 0, 2), "up_proj": ("mlp.w12", 1, 2)}
    for key, value in sd.items():
        if key in simple:
            out[simple[key]] = value
        elif m := re.fullmatch(r"backbone\.encoder\.layer\.(\d+)\.(.+)\.(weight|bias|lambda1)", key):
            i, part, kind = m.groups()
            base = f"pretrained.blocks.{i}."
            name = part.rsplit(".", 1)[-1]
            if kind == "lambda1":
                out[base + f"ls{part[-1]}.gamma"] = value
            elif name in fused and part.startswith(("attention.", "mlp.")):
                target, index, count = fused[name]
                pending.setdefault(base + f"{target}.{kind}", [None] * count)[index] = value
            else:
                out[base + f"{block_parts[part]}.{kind}"] = value
        elif m := re.fullmatch(r"neck\.reassemble_stage\.layers\.(\d)\.(projection|resize)\.(weight|bias)", key):
            out[f"depth_head.{'projects' if m[2] == 'projection' else 'resize_layers'}.{m[1]}.{m[3]}"] = value
        elif m := re.fullmatch(r"neck\.convs\.(\d)\.weight", key):
            out[f"depth_head.scratch.layer{int(m[1]) + 1}_rn.weight"] = value
        elif m := re.fullmatch(r"neck\.fusion_stage\.layers\.(\d)\.(.+)\.(weight|bias)", key):
            layer = f"depth_head.scratch.refinenet{4 - int(m[1])}."
            r = re.fullmatch(r"residual_layer(\d)\.convolution(\d)", m[2])
            out[layer + (f"resConfUnit{r[1]}.conv{r[2]}" if r else "out_conv") + f".{m[3]}"] = value
        elif m := re.fullmatch(r"head\.(conv[123])\.(weight|bias)", key):
            original = {v: k for k, v in HEAD_CONVS.items()}[m[1]]
            out[f"depth_head.scratch.output_conv{original}.{m[2]}"] = value
        else:
            raise KeyError(f"No original name for {key}")
    for key, parts in pending.items():
        out[key] = torch.cat(parts, dim=0)
    return out


_LEGACY = (("attention.attention.query.", "attention.q_proj."), ("attention.attention.key.", "attention.k_proj."),
           ("attention.attention.value.", "attention.v_proj."), ("attention.output.dense.", "attention.o_proj."))


def _to_model_names(sd: dict[str, torch.Tensor], model_keys) -> dict[str, torch.Tensor]:
    """transformers renamed the DINOv2 attention (4.x ``attention.attention.query`` ->
    5.x ``attention.q_proj``) and SwiGLU (``weights_in`` -> ``gate_proj``/``up_proj``) keys: bring a
    transformers-layout dict to the names of the installed version."""
    model_keys = set(model_keys)
    new_style = any(".attention.q_proj." in k for k in model_keys)
    out = {}
    for key, value in sd.items():
        if new_style:
            for old, new in _LEGACY:
                key = key.replace(old, new)
            if key.endswith(("mlp.weights_in.weight", "mlp.weights_in.bias")):
                gate, up = value.chunk(2, dim=0)
                kind = key.rsplit(".", 1)[-1]
                out[key.replace(f"weights_in.{kind}", f"gate_proj.{kind}")] = gate
                out[key.replace(f"weights_in.{kind}", f"up_proj.{kind}")] = up
                continue
            key = key.replace("mlp.weights_out.", "mlp.down_proj.")
        else:
            for old, new in _LEGACY:
                key = key.replace(new, old)
            key = key.replace("mlp.down_proj.", "mlp.weights_out.")
        out[key] = value
    if not new_style:  # pack gate/up into the 4.x weights_in
        for key in [k for k in out if ".mlp.gate_proj." in k]:
            up = out.pop(key.replace("gate_proj", "up_proj"))
            out[key.replace("gate_proj", "weights_in")] = torch.cat([out.pop(key), up], dim=0)
    return out


# ----------------------------------------------------------------------------- config and loading

def is_original_layout(sd) -> bool:
    return any(k.startswith("pretrained.") for k in sd)


def depth_anything_config(sd: dict[str, torch.Tensor], name: str = ""):
    """The ``DepthAnythingConfig`` of a transformers-layout state dict (from its shapes and, for the
    metric variants, the file name)."""
    from transformers import DepthAnythingConfig, Dinov2Config

    pos = sd.get("backbone.embeddings.position_embeddings")
    if pos is None or "neck.convs.0.weight" not in sd:
        raise CheckpointError(f"{name or 'The file'} is not a Depth Anything (V2) checkpoint: use "
                              "depth_anything_v2_vit{s,b,l}.pth or depth_anything_v2_*.safetensors "
                              "in models/depthanything.")
    hidden = int(pos.shape[-1])
    depth = len({int(m[1]) for k in sd if (m := re.match(r"backbone\.encoder\.layer\.(\d+)\.", k))})
    grid = math.isqrt(int(pos.shape[1]) - 1)
    taps = TAPS.get(depth) or [depth * i // 4 - 1 for i in range(1, 5)]
    swiglu = any(".mlp.gate_proj." in k or ".mlp.weights_in." in k for k in sd)
    fc1 = sd.get("backbone.encoder.layer.0.mlp.fc1.weight")
    mlp_ratio = 4 if fc1 is None else int(fc1.shape[0]) // hidden
    metric = "metric" in name.lower()
    backbone = Dinov2Config(
        image_size=grid * PATCH, patch_size=PATCH, hidden_size=hidden, num_hidden_layers=depth,
        num_attention_heads=max(1, hidden // HEAD_DIM), mlp_ratio=mlp_ratio, use_swiglu_ffn=swiglu,
        out_indices=[t + 1 for t in taps], apply_layernorm=True, reshape_hidden_states=False,
        layerscale_value=1.0)
    return DepthAnythingConfig(
        backbone_config=backbone, patch_size=PATCH, reassemble_hidden_size=hidden,
        neck_hidden_sizes=[int(sd[f"neck.reassemble_stage.layers.{i}.projection.weight"].shape[0]) for i in range(4)],
        fusion_hidden_size=int(sd["neck.convs.0.weight"].shape[0]),
        head_hidden_size=int(sd["head.conv2.weight"].shape[0]),
        depth_estimation_type="metric" if metric else "relative",
        max_depth=(20 if "hypersim" in name.lower() else 80) if metric else 1)


def load_depth_anything(model_path: str | Path, *, device=None, dtype: torch.dtype = torch.float32):
    """A ready ``DepthAnythingForDepthEstimation`` (eval, on ``device``) from any supported file.
    ``model.config.depth_estimation_type`` says whether it predicts metric depth."""
    from transformers import DepthAnythingForDepthEstimation

    path = Path(model_path)
    sd = read_state_dict(path)
    if is_original_layout(sd):
        sd = original_to_transformers(sd)
    config = depth_anything_config(_to_model_names(sd, ["x.attention.q_proj.weight"]), path.name)
    model = DepthAnythingForDepthEstimation(config)
    sd = _to_model_names(sd, model.state_dict().keys())
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatches
        detail = " ".join(str(e).split("\n")[1:3]).strip()
        raise CheckpointError(
            f"{path.name} does not fit the detected Depth Anything V2 architecture: {detail}") from None
    if missing or unexpected:
        raise CheckpointError(f"{path.name} does not fit the detected Depth Anything V2 architecture "
                              f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}).")
    encoder = ENCODERS.get(config.backbone_config.hidden_size, f"custom {config.backbone_config.hidden_size}-wide")
    log.info("Depth Anything V2 %s (%s) loaded from %s.", encoder, config.depth_estimation_type, path.name)
    return model.to(_device(device), dtype).eval()


def _device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ----------------------------------------------------------------------------- inference

def network_size(height: int, width: int, input_size: int = 518) -> tuple[int, int]:
    """The original ``Resize(lower_bound, keep_aspect_ratio, ensure_multiple_of=14)`` output size."""
    scale = max(input_size / height, input_size / width)

    def fit(x: float) -> int:
        y = int(np.round(x / PATCH) * PATCH)
        return int(np.ceil(x / PATCH) * PATCH) if y < input_size else y

    return fit(scale * height), fit(scale * width)


def predict_depth(model, frames: torch.Tensor, *, input_size: int = 518, chunk: int = 4, normalize: bool = True,
                  progress: Progress | None = None) -> torch.Tensor:
    """Relative inverse depth [F, H, W] (CPU float32) with a loaded model; per-frame 0..1 when
    ``normalize``."""
    frames = image_ops.as_frames(frames)
    if input_size < PATCH:
        raise ValueError(f"input_size must be at least {PATCH}, got {input_size}.")
    n, h, w = frames.shape[:3]
    param = next(model.parameters())
    size = network_size(h, w, input_size)
    mean = torch.tensor(IMAGE_MEAN, device=param.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=param.device).view(1, 3, 1, 1)
    metric = getattr(model.config, "depth_estimation_type", "relative") == "metric"
    out = torch.empty(n, h, w, dtype=torch.float32)
    chunk = max(1, int(chunk))
    with torch.inference_mode():
        for start in range(0, n, chunk):
            x = frames[start:start + chunk, ..., :3].to(param.device, torch.float32).permute(0, 3, 1, 2)
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
            x = ((x - mean) / std).to(param.dtype)
            d = model(pixel_values=x).predicted_depth.float()
            d = F.interpolate(d[:, None], size=(h, w), mode="bilinear", align_corners=True)[:, 0]
            if metric:
                d = 1.0 / d.clamp_min(1e-6)
            if normalize:
                lo = d.amin(dim=(1, 2), keepdim=True)
                hi = d.amax(dim=(1, 2), keepdim=True)
                flat = (hi - lo) <= 1e-5 * hi.abs().clamp_min(1e-6)  # a constant map (rounding noise only)
                d = torch.where(flat, torch.zeros_like(d), (d - lo) / (hi - lo).clamp_min(1e-12))
            out[start:start + len(d)] = d.cpu()
            if progress is not None:
                progress(min(start + chunk, n), n)
    return out


def estimate_depth(frames: torch.Tensor, model_path: str | Path, *, input_size: int = 518, device=None,
                   chunk: int = 4, normalize: bool = True, dtype: torch.dtype = torch.float32,
                   progress: Progress | None = None) -> torch.Tensor:
    """Depth Anything V2 on every frame: [F, H, W] float, relative inverse depth (larger = nearer),
    min-max normalised to 0..1 per frame (``normalize=False``: the raw prediction, metric models
    inverted). The model is loaded for the call and freed after it; ``chunk`` frames at a time."""
    image_ops.frame_shape(frames)  # before loading the model
    model = load_depth_anything(model_path, device=device, dtype=dtype)
    try:
        return predict_depth(model, frames, input_size=input_size, chunk=chunk, normalize=normalize,
                             progress=progress)
    finally:
        release(model)


def depth_files_hint() -> str:
    return ("Put a Depth Anything V2 checkpoint in ComfyUI/models/depthanything: depth_anything_v2_vit{s,b,l}.pth "
            "(official; official MIMO uses vitl) or depth_anything_v2_vit*_fp32.safetensors (ComfyUI).")


__all__ = ["estimate_depth", "predict_depth", "load_depth_anything", "depth_anything_config",
           "original_to_transformers", "transformers_to_original", "network_size", "is_original_layout",
           "depth_files_hint"]
