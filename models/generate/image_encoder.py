"""The CLIP image encoder (lambdalabs sd-image-variations ``image_encoder``, ViT-L/14) as
transformers' CLIPVisionModelWithProjection; MIMO conditions on its projected ``image_embeds``.

Attention heads cannot be read from weight shapes. Rule: a ``config.json`` (or ``<file stem>.json``)
beside a single file wins when its hidden_size matches; otherwise the standard CLIP widths
(768 -> 12, 1024/1280/1664 -> 16); otherwise hidden_size // 64 (at least 1), with a warning.
"""

import json
import logging
import math
from pathlib import Path

import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from ..weights import read_state_dict

log = logging.getLogger("MIMO")

_PATCH = "vision_model.embeddings.patch_embedding.weight"
_PROJ = "visual_projection.weight"
STANDARD_HEADS = {768: 12, 1024: 16, 1280: 16, 1664: 16}
_FOLDER_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.fp16.safetensors", "pytorch_model.fp16.bin")
_EXPECTED = (
    f"transformers CLIPVisionModelWithProjection keys ('{_PATCH}', "
    "'vision_model.encoder.layers.N.self_attn.q_proj.weight', ..., 'visual_projection.weight'), "
    "optionally behind a prefix such as 'clip_vision.'"
)


def to_transformers_keys(sd: dict, name: str = "state dict") -> dict:
    """Strip a prefix and drop text-tower / buffer keys; ValueError for other layouts."""
    hits = [k[: -len(_PATCH)] for k in sd if k == _PATCH or k.endswith("." + _PATCH)]
    if not hits:
        if any(k.endswith("transformer.resblocks.0.attn.in_proj_weight") for k in sd):
            raise ValueError(
                f"{name} is an OpenCLIP-layout CLIP ('visual.transformer.resblocks...'), which is not "
                f"supported: use a file with {_EXPECTED}, e.g. the image_encoder folder of "
                "lambdalabs/sd-image-variations-diffusers."
            )
        raise ValueError(f"{name} is not a CLIP image encoder: expected {_EXPECTED}; first keys {list(sd)[:3]}.")
    p = min(hits, key=len)
    if p + _PROJ not in sd:
        raise ValueError(
            f"{name} has no '{_PROJ}': a CLIP vision tower without its projection cannot give the "
            "image_embeds MIMO needs. Use a CLIPVisionModelWithProjection (or full CLIP) file."
        )
    out, dropped = {}, []
    for k, v in sd.items():
        if not k.startswith(p):
            continue
        k = k[len(p):]
        if k.startswith(("vision_model.", "visual_projection.")) and not k.endswith("position_ids"):
            out[k] = v
        else:
            dropped.append(k)
    if dropped:
        log.info("%s: %d non-vision keys ignored (e.g. %s)", name, len(dropped), dropped[:2])
    return out


def _side_config(path: Path, hidden: int) -> dict | None:
    """An optional json config beside a single weights file, used only if its width matches."""
    for cand in (path.with_suffix(".json"), path.parent / "config.json"):
        if not cand.is_file():
            continue
        cfg = json.loads(cand.read_text())
        cfg = cfg.get("vision_config", cfg)  # a full CLIPModel config holds the vision part
        if cfg.get("hidden_size") == hidden:
            return cfg
        log.warning("%s: hidden_size %s does not match the weights (%d); ignored", cand, cfg.get("hidden_size"), hidden)
    return None


def infer_clip_vision_config(sd: dict, side: dict | None = None, name: str = "state dict") -> CLIPVisionConfig:
    """CLIPVisionConfig from transformers-named weights (see the module docstring for the heads)."""
    patch = sd[_PATCH]
    hidden, channels, patch_size = int(patch.shape[0]), int(patch.shape[1]), int(patch.shape[-1])
    layers = 0
    while f"vision_model.encoder.layers.{layers}.layer_norm1.weight" in sd:
        layers += 1
    positions = int(sd["vision_model.embeddings.position_embedding.weight"].shape[0]) - 1
    grid = math.isqrt(positions)
    if grid * grid != positions:
        raise ValueError(f"{name}: {positions} patch positions is not a square grid")
    side = side or {}
    if "num_attention_heads" in side:
        heads = int(side["num_attention_heads"])
    elif hidden in STANDARD_HEADS:
        heads = STANDARD_HEADS[hidden]
    else:
        heads = max(1, hidden // 64)
        log.warning(
            "%s: hidden size %d is not a standard CLIP width and no config.json gives num_attention_heads; "
            "guessing %d heads. If the outputs look wrong, put the model's config.json beside the file.",
            name, hidden, heads,
        )
    return CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=int(sd["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0]),
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_channels=channels,
        patch_size=patch_size,
        image_size=grid * patch_size,
        projection_dim=int(sd[_PROJ].shape[0]),
        hidden_act=side.get("hidden_act", "quick_gelu"),
        layer_norm_eps=float(side.get("layer_norm_eps", 1e-5)),
    )


def image_encoder_from_state_dict(sd: dict, config=None, name: str = "state dict") -> CLIPVisionModelWithProjection:
    """fp32 eval CLIPVisionModelWithProjection; ``config``: CLIPVisionConfig, a dict, or None (inferred)."""
    sd = to_transformers_keys(sd, name)
    if config is None:
        config = infer_clip_vision_config(sd, name=name)
    elif isinstance(config, dict):
        config = CLIPVisionConfig(**{k: v for k, v in config.items() if not k.startswith("_")})
    sd = {k: v.to(torch.float32) for k, v in sd.items()}
    model, info = CLIPVisionModelWithProjection.from_pretrained(
        None, config=config, state_dict=sd, dtype=torch.float32, output_loading_info=True
    )
    missing = sorted(info.get("missing_keys", []))
    if missing:
        raise ValueError(f"{name} is an incomplete CLIP image encoder: {len(missing)} weights missing, e.g. {missing[:3]}")
    for kind in ("unexpected_keys", "mismatched_keys"):
        if info.get(kind):
            log.warning("%s: %s %s", name, kind.replace("_", " "), sorted(info[kind])[:5])
    return model.eval().requires_grad_(False)


def load_image_encoder(path) -> CLIPVisionModelWithProjection:
    """From a transformers folder (config.json + model.safetensors | pytorch_model.bin) or a single
    .safetensors/.bin/.pt/.pth file with transformers key names (e.g. ComfyUI models/clip_vision ViT-L)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "config.json").is_file() and (path / "image_encoder").is_dir():
            path = path / "image_encoder"
        files = [path / f for f in _FOLDER_WEIGHTS if (path / f).is_file()]
        if not files:
            raise FileNotFoundError(f"no model.safetensors / pytorch_model.bin in the image encoder folder {path}")
        sd = to_transformers_keys(read_state_dict(files[0]), str(files[0]))
        side = _side_config(files[0], int(sd[_PATCH].shape[0]))
        return image_encoder_from_state_dict(sd, infer_clip_vision_config(sd, side, str(files[0])), str(files[0]))
    sd = to_transformers_keys(read_state_dict(path), str(path))
    side = _side_config(path, int(sd[_PATCH].shape[0]))
    return image_encoder_from_state_dict(sd, infer_clip_vision_config(sd, side, str(path)), str(path))


@torch.no_grad()
def encode_image(encoder: CLIPVisionModelWithProjection, pixel_values: torch.Tensor) -> torch.Tensor:
    """[B, 3, 224, 224] normalised pixels -> projected ``image_embeds`` [B, projection_dim]
    (not normalised, not hidden states), on the encoder's device and dtype."""
    p = next(encoder.parameters())
    return encoder(pixel_values=pixel_values.to(p.device, p.dtype)).image_embeds
