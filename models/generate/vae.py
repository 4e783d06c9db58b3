"""The SD VAE (``sd-vae-ft-mse``) as diffusers' AutoencoderKL: loading from any common layout,
and the official pipeline's encode (posterior mean x 0.18215) and frame-by-frame decode."""

import json
import logging
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
from ..weights import read_state_dict

log = logging.getLogger("MIMO")

SCALING = 0.18215
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin")
_FOLDER_WEIGHTS = (
    "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin",
)
_ANCHOR = "encoder.conv_in.weight"
_DIFFUSERS_KEY = "encoder.down_blocks.0.resnets.0.conv1.weight"
_LDM_KEY = "encoder.down.0.block.0.conv1.weight"
_EXPECTED = (
    f"VAE keys such as '{_ANCHOR}' with '{_DIFFUSERS_KEY}' (diffusers layout) or '{_LDM_KEY}' "
    "(original Stable Diffusion layout, optionally prefixed 'first_stage_model.')"
)
# diffusers < 0.14 attention names -> current ones
_OLD_ATTN = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def _describe(sd: dict) -> str:
    keys = list(sd)
    if any(k.startswith("model.diffusion_model.") or k.startswith("input_blocks.") for k in keys) or (
        "conv_in.weight" in sd and any(k.startswith("down_blocks.") for k in keys)
    ):
        return "it looks like a UNet"
    if any("vision_model." in k or k.startswith("visual.") for k in keys):
        return "it looks like a CLIP image encoder"
    return f"its first keys are {keys[:3]}"


def _strip_prefix(sd: dict) -> dict:
    prefixes = [k[: -len(_ANCHOR)] for k in sd if k == _ANCHOR or k.endswith("." + _ANCHOR)]
    if not prefixes:
        return sd
    p = min(prefixes, key=len)
    return {k[len(p):]: v for k, v in sd.items() if k.startswith(p)} if p else sd


def _rename_old_attention(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if ".mid_block.attentions." in k and len(parts) >= 2 and parts[-2] in _OLD_ATTN:
            k = ".".join(parts[:-2] + [_OLD_ATTN[parts[-2]], parts[-1]])
            if v.ndim > 2:  # 1x1 conv weights stored as linear
                v = v.reshape(v.shape[0], v.shape[1])
        out[k] = v
    return out


def _count(sd: dict, pattern: str) -> int:
    n = 0
    while pattern.format(n) in sd:
        n += 1
    return n


def to_diffusers_keys(sd: dict, name: str = "state dict") -> dict:
    """Any supported VAE layout -> diffusers AutoencoderKL key names (raises ValueError otherwise)."""
    sd = _strip_prefix(sd)
    if _DIFFUSERS_KEY in sd:
        return _rename_old_attention(sd)
    if _LDM_KEY in sd:
        n = _count(sd, "encoder.down.{}.block.0.conv1.weight")
        blocks = {"down_block_types": ["DownEncoderBlock2D"] * n, "up_block_types": ["UpDecoderBlock2D"] * n}
        return convert_ldm_vae_checkpoint(sd, blocks)
    raise ValueError(f"{name} is not a VAE: expected {_EXPECTED}; {_describe(sd)}.")


def infer_vae_config(sd: dict) -> dict:
    """AutoencoderKL config from diffusers-named weights (any width)."""
    needed = ("encoder.conv_in.weight", "decoder.conv_in.weight", "decoder.conv_out.weight", _DIFFUSERS_KEY)
    missing = [k for k in needed if k not in sd]
    if missing:
        raise ValueError(f"incomplete VAE weights: missing {missing}")
    n = _count(sd, "encoder.down_blocks.{}.resnets.0.conv1.weight")
    widths = [int(sd[f"encoder.down_blocks.{i}.resnets.0.conv1.weight"].shape[0]) for i in range(n)]
    return dict(
        in_channels=int(sd["encoder.conv_in.weight"].shape[1]),
        out_channels=int(sd["decoder.conv_out.weight"].shape[0]),
        down_block_types=["DownEncoderBlock2D"] * n,
        up_block_types=["UpDecoderBlock2D"] * n,
        block_out_channels=widths,
        layers_per_block=_count(sd, "encoder.down_blocks.0.resnets.{}.conv1.weight"),
        latent_channels=int(sd["decoder.conv_in.weight"].shape[1]),
        norm_num_groups=32,
        scaling_factor=SCALING,
        use_quant_conv="quant_conv.weight" in sd,
        use_post_quant_conv="post_quant_conv.weight" in sd,
        mid_block_add_attention="encoder.mid_block.attentions.0.to_q.weight" in sd,
    )


def _infer(sd: dict, name: str) -> dict:
    try:
        return infer_vae_config(sd)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


def _build(sd: dict, config: dict, name: str) -> AutoencoderKL:
    with torch.device("meta"):
        model = AutoencoderKL.from_config(config)
    own = model.state_dict()
    for k, v in sd.items():
        if k in own and own[k].shape != v.shape:
            raise ValueError(f"{name}: '{k}' has shape {tuple(v.shape)}, the VAE config expects {tuple(own[k].shape)}")
    missing = sorted(set(own) - set(sd))
    if missing:
        raise ValueError(f"{name} is an incomplete VAE: {len(missing)} weights missing, e.g. {missing[:3]}")
    unexpected = sorted(set(sd) - set(own))
    if unexpected:
        log.warning("%s: %d unexpected VAE keys ignored, e.g. %s", name, len(unexpected), unexpected[:3])
    sd = {k: v.to(torch.float32).contiguous() for k, v in sd.items() if k in own}
    model.load_state_dict(sd, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def vae_from_state_dict(sd: dict, name: str = "state dict", config: dict | None = None) -> AutoencoderKL:
    """An fp32 eval AutoencoderKL from diffusers or LDM keys (e.g. ComfyUI's ``vae.get_sd()``)."""
    sd = to_diffusers_keys(dict(sd), name)
    return _build(sd, config or _infer(sd, name), name)


def load_vae(path) -> AutoencoderKL:
    """Load a VAE from a diffusers folder (config.json + weights; a pipeline folder with ``vae/``
    works too) or from a single weights file in the diffusers or original LDM layout."""
    path = Path(path)
    if path.is_dir():
        if not (path / "config.json").is_file() and (path / "vae").is_dir():
            path = path / "vae"
        files = [path / f for f in _FOLDER_WEIGHTS if (path / f).is_file()]
        if not files:
            raise FileNotFoundError(f"no diffusion_pytorch_model.safetensors/.bin in the VAE folder {path}")
        sd = to_diffusers_keys(read_state_dict(files[0]), str(files[0]))
        config = None
        if (path / "config.json").is_file():
            config = json.loads((path / "config.json").read_text())
            if config.get("_class_name", "AutoencoderKL") != "AutoencoderKL":
                raise ValueError(f"{path} holds a {config['_class_name']}, not an AutoencoderKL VAE")
        return _build(sd, config or _infer(sd, str(files[0])), str(files[0]))
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise ValueError(f"{path}: expected a diffusers VAE folder or a {'/'.join(WEIGHT_SUFFIXES)} file")
    return vae_from_state_dict(read_state_dict(path), str(path))


def _device_dtype(module: torch.nn.Module):
    p = next(module.parameters())
    return p.device, p.dtype


@torch.no_grad()
def encode_mean(vae: AutoencoderKL, images: torch.Tensor, scaling: float = SCALING, chunk: int = 8) -> torch.Tensor:
    """[F, 3, H, W] in -1..1 -> [F, C, H/8, W/8]: posterior mean x scaling (official: mean, not a sample).

    Runs on the VAE's device and dtype; the result stays there."""
    device, dtype = _device_dtype(vae)
    out = [
        vae.encode(images[i:i + chunk].to(device, dtype)).latent_dist.mean * scaling
        for i in range(0, images.shape[0], chunk)
    ]
    return torch.cat(out)


@torch.no_grad()
def decode(vae: AutoencoderKL, latents: torch.Tensor, scaling: float = SCALING, chunk: int = 1,
           out_device=None) -> torch.Tensor:
    """[F, C, h, w] scaled latents -> float32 [F, 3, 8h, 8w] in 0..1, ``chunk`` frames per decode call
    (official: one at a time). The result is on ``out_device`` (default: the VAE's device)."""
    device, dtype = _device_dtype(vae)
    out = []
    for i in range(0, latents.shape[0], chunk):
        z = latents[i:i + chunk].to(device, dtype) * (1.0 / scaling)  # official: 1 / 0.18215 * latents
        x = vae.decode(z).sample.to(torch.float32)
        out.append((x / 2 + 0.5).clamp(0, 1).to(out_device or device))
    return torch.cat(out)
