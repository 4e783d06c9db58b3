"""Loading MIMO's released checkpoints (``denoising_unet.pth``, ``reference_unet.pth``,
``pose_guider.pth``, ``motion_module.pth``) and single-file safetensors of the same weights.

Files are told apart by their keys, so a file picked for the wrong slot gets an error that says
which file it is and where it belongs. Model files never run code: ``torch.load(weights_only=True)``.
"""

import json
import logging
from dataclasses import replace
from pathlib import Path

import torch

from .pose_guider import PoseGuider
from .unet import MIMOUNet, UNetConfig
from ..weights import CheckpointError, read_state_dict

log = logging.getLogger("MIMO")

MIMO_FILES = {
    "denoising_unet": "denoising_unet.pth",
    "reference_unet": "reference_unet.pth",
    "pose_guider": "pose_guider.pth",
    "motion_module": "motion_module.pth",
}
COMBINED_PREFIXES = tuple(f"{k}." for k in MIMO_FILES)


def classify(sd: dict[str, torch.Tensor]) -> str:
    """Which kind of weights a state dict holds."""
    keys = sd.keys()
    if any(k.startswith(COMBINED_PREFIXES) for k in keys) and all(k.startswith(COMBINED_PREFIXES) for k in keys):
        return "combined"
    if keys and all(".motion_modules." in k for k in keys):
        return "motion_module"
    if "blocks.0.weight" in sd and "conv_out.weight" in sd and not any(k.startswith("down_blocks") for k in keys):
        return "pose_guider"
    if any(k.startswith("model.diffusion_model.") or k.startswith("input_blocks.") for k in keys):
        return "ldm_unet"
    if any(k.startswith(("encoder.down", "decoder.up", "first_stage_model.")) for k in keys):
        return "vae"
    if any(k.startswith(("vision_model.", "visual_projection", "visual.")) for k in keys):
        return "clip_vision"
    if "conv_in.weight" in sd and sd["conv_in.weight"].dim() == 4 and any(k.startswith("down_blocks.") for k in keys):
        cin = sd["conv_in.weight"].shape[1]
        if cin == 8:
            return "denoising_unet"
        if cin == 4:
            return "sd15_unet" if "conv_out.weight" in sd else "reference_unet"
    return "unknown"


DESCRIPTIONS = {
    "denoising_unet": "MIMO's denoising UNet (denoising_unet.pth)",
    "reference_unet": "MIMO's reference UNet (reference_unet.pth)",
    "pose_guider": "MIMO's pose guider (pose_guider.pth)",
    "motion_module": "MIMO's motion module (motion_module.pth)",
    "combined": "a combined MIMO checkpoint (all four MIMO files in one)",
    "sd15_unet": "a Stable Diffusion 1.5 UNet in diffusers format (a base, not a MIMO file)",
    "ldm_unet": "an original-format Stable Diffusion checkpoint (models/checkpoints), not a MIMO file",
    "vae": "a VAE (it belongs in models/vae)",
    "clip_vision": "a CLIP image encoder (it belongs in models/clip_vision)",
    "unknown": "not a MIMO file",
}


def expect_kind(sd, path, slot: str, allowed: tuple[str, ...]) -> str:
    kind = classify(sd)
    if kind not in allowed:
        raise CheckpointError(
            f"The file given as {slot} ({Path(path).name}) looks like {DESCRIPTIONS[kind]}. "
            f"Select {MIMO_FILES.get(slot, slot)} from models/mimo for '{slot}'."
        )
    return kind


def split_combined(sd: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        head, rest = k.split(".", 1)
        parts.setdefault(head, {})[rest] = v
    return parts


def combine(parts: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Inverse of ``split_combined`` (used to write one-file checkpoints)."""
    return {f"{name}.{k}": v for name, sd in parts.items() for k, v in sd.items()}


def infer_unet_config(sd: dict[str, torch.Tensor], heads: int = 8) -> UNetConfig:
    """Architecture from spatial UNet keys (any width; SD1.5 uses 8 heads, which shapes can't tell)."""
    widths, attention = [], []
    i = 0
    while f"down_blocks.{i}.resnets.0.conv1.weight" in sd:
        widths.append(sd[f"down_blocks.{i}.resnets.0.conv1.weight"].shape[0])
        attention.append(f"down_blocks.{i}.attentions.0.norm.weight" in sd)
        i += 1
    if not widths:
        raise CheckpointError("No down_blocks.*.resnets.* keys: not a UNet state dict.")
    layers = 0
    while f"down_blocks.0.resnets.{layers}.conv1.weight" in sd:
        layers += 1
    k = "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    cross = sd[k].shape[1] if k in sd else 768
    groups = 32 if widths[0] % 32 == 0 else 1
    return UNetConfig(
        block_out_channels=tuple(widths), layers_per_block=layers, cross_attention_dim=cross,
        attention_heads=heads, norm_num_groups=groups, down_attention=tuple(attention),
    )


def motion_max_len(sd: dict[str, torch.Tensor]) -> int | None:
    for k, v in sd.items():
        if k.endswith("pos_encoder.pe"):
            return v.shape[1]
    return None


def load_base_unet(folder: str | Path) -> tuple[UNetConfig, dict[str, torch.Tensor]]:
    """An SD1.5 ``unet`` folder (config.json + diffusion_pytorch_model.safetensors|.bin)."""
    folder = Path(folder)
    if (folder / "unet").is_dir():
        folder = folder / "unet"
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"No config.json in the SD1.5 UNet folder {folder}.")
    cfg = UNetConfig.from_diffusers(json.loads(cfg_path.read_text()))
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
        if (folder / name).is_file():
            return cfg, read_state_dict(folder / name)
    raise FileNotFoundError(f"No diffusion_pytorch_model.safetensors/.bin in {folder}.")


def _assign(model: torch.nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    for k, v in sd.items():
        if k in own and own[k].shape != v.shape:
            raise CheckpointError(
                f"{source}: '{k}' has shape {tuple(v.shape)} but the model expects {tuple(own[k].shape)}. "
                "The files do not belong together (mixed model sizes?)."
            )
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if unexpected:
        log.warning("%s: %d unexpected keys ignored, e.g. %s", source, len(unexpected), unexpected[:3])
    log.debug("%s: %d keys loaded, %d not in this file", source, len(sd) - len(unexpected), len(missing))


def pad_conv_in(sd: dict[str, torch.Tensor], channels: int = 8) -> dict[str, torch.Tensor]:
    """A 4-channel conv_in (SD1.5) gets zero weights for the scene-latent channels 4..7."""
    w = sd.get("conv_in.weight")
    if w is not None and w.shape[1] < channels:
        sd = dict(sd)
        pad = torch.zeros(w.shape[0], channels - w.shape[1], *w.shape[2:], dtype=w.dtype)
        sd["conv_in.weight"] = torch.cat([w, pad], dim=1)
    return sd


def build_denoiser(
    denoising_sd: dict[str, torch.Tensor] | None,
    motion_sd: dict[str, torch.Tensor] | None,
    base: tuple[UNetConfig, dict[str, torch.Tensor]] | None = None,
    config: UNetConfig | None = None,
    names: tuple[str, str] = ("denoising_unet", "motion_module"),
) -> MIMOUNet:
    """Official load order: SD1.5 base -> conv_in zero-padded to 8 -> motion_module -> denoising_unet."""
    if config is None:
        if base is not None:
            config = base[0]
        elif denoising_sd is not None:
            config = infer_unet_config(denoising_sd)
        else:
            raise CheckpointError("Give denoising_unet.pth (or an SD1.5 base UNet folder).")
    pe_len = motion_max_len(motion_sd or {}) or motion_max_len(denoising_sd or {}) or 32
    model = MIMOUNet(replace(config.denoiser(), motion_max_len=pe_len))
    expected = set(model.state_dict())
    loaded: set[str] = set()
    if base is not None:
        sd = pad_conv_in(base[1])
        sd = {k: v for k, v in sd.items() if k in expected}
        _assign(model, sd, "SD1.5 base UNet")
        loaded |= set(sd)
    if motion_sd is not None:
        _assign(model, motion_sd, names[1])
        loaded |= set(motion_sd)
    if denoising_sd is not None:
        sd = pad_conv_in(denoising_sd)
        _assign(model, sd, names[0])
        loaded |= set(sd)
    missing = sorted(k for k in expected - loaded if not k.endswith("pos_encoder.pe"))
    if missing:
        motion_missing = [k for k in missing if ".motion_modules." in k]
        if motion_missing and len(motion_missing) == len(missing):
            raise CheckpointError(
                f"The denoising UNet has no motion-module weights ({len(motion_missing)} keys missing): "
                f"select motion_module.pth in 'motion_module' (models/mimo)."
            )
        raise CheckpointError(
            f"The denoising UNet is incomplete: {len(missing)} weights missing, e.g. {missing[:3]}. "
            "Check that denoising_unet.pth is complete (re-download it) and matches the other MIMO files."
        )
    log.info("MIMO denoiser: %d keys loaded (%d motion-module keys)", len(loaded),
             sum(".motion_modules." in k for k in loaded))
    return model.eval().requires_grad_(False)


def build_reference_unet(sd: dict[str, torch.Tensor], config: UNetConfig | None = None,
                         name: str = "reference_unet") -> MIMOUNet:
    """Strict load of the ReferenceNet (no conv_norm_out/conv_out; those are dropped if present)."""
    sd = {k: v for k, v in sd.items() if not k.startswith(("conv_norm_out.", "conv_out."))}
    config = config or infer_unet_config(sd)
    model = MIMOUNet(config.reference())
    expected = set(model.state_dict())
    _assign(model, sd, name)
    missing = sorted(expected - set(sd))
    if missing:
        raise CheckpointError(
            f"{name} is incomplete: {len(missing)} weights missing, e.g. {missing[:3]}. Re-download reference_unet.pth."
        )
    return model.eval().requires_grad_(False)


def build_pose_guider(sd: dict[str, torch.Tensor], name: str = "pose_guider") -> PoseGuider:
    model = PoseGuider.from_state_dict_shapes(sd)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{name} does not match the pose guider layout (missing {missing}, unexpected {unexpected}).")
    return model.eval().requires_grad_(False)
