"""One entry point that builds ``MIMOModels`` from the files a user has, as the official release
lays them out (``pretrained_weights/``) or as single files in ComfyUI's model folders."""

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoints as ck
from .image_encoder import load_image_encoder
from .pipeline import MIMOModels
from .vae import load_vae

log = logging.getLogger("MIMO")

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class MIMOFiles:
    denoising_unet: Path
    reference_unet: Path | None = None
    pose_guider: Path | None = None
    motion_module: Path | None = None
    vae: Path | None = None
    image_encoder: Path | None = None
    base_unet: Path | None = None  # optional SD1.5 unet folder (official from_pretrained_2d start)

    @classmethod
    def official_layout(cls, root: str | Path) -> "MIMOFiles":
        """The official ``pretrained_weights/`` folder."""
        root = Path(root)
        base = root / "stable-diffusion-v1-5" / "unet"
        return cls(
            denoising_unet=root / "denoising_unet.pth",
            reference_unet=root / "reference_unet.pth",
            pose_guider=root / "pose_guider.pth",
            motion_module=root / "motion_module.pth",
            vae=root / "sd-vae-ft-mse",
            image_encoder=root / "image_encoder",
            base_unet=base if base.is_dir() else None,
        )


def _mimo_parts(files: MIMOFiles) -> dict[str, tuple[dict, str]]:
    """Reads the four MIMO slots; a combined checkpoint in any slot fills the slots it contains."""
    parts: dict[str, tuple[dict, str]] = {}
    for slot in ck.MIMO_FILES:
        path = getattr(files, slot)
        if path is None or slot in parts:
            continue
        sd = ck.read_state_dict(path)
        allowed = (slot, "combined") if slot != "denoising_unet" else (slot, "combined", "sd15_unet")
        if ck.classify(sd) == "combined":
            for name, part in ck.split_combined(sd).items():
                parts.setdefault(name, (part, f"{Path(path).name}:{name}"))
            continue
        ck.expect_kind(sd, path, slot, allowed)
        parts[slot] = (sd, Path(path).name)
    return parts


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype for ``precision`` on ``device``. auto: fp16 on a GPU, as the official release
    runs (bf16 keeps 3 fewer mantissa bits: its video is 7-8x farther from the fp32 one than the
    official fp16's, at the same speed), fp32 on the CPU, where fp16 is not supported either (fp32 is
    used, with a warning)."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision not in DTYPES:
        raise ValueError(f"precision must be auto, fp32, fp16 or bf16 (got {precision!r}).")
    if device.type == "cpu" and precision == "fp16":
        log.warning("fp16 is not supported for computing on the CPU: using fp32.")
        return torch.float32
    return DTYPES[precision]


def load_mimo_networks(files: MIMOFiles):
    """(denoiser, reference_unet, pose_guider) in float32 on the CPU."""
    parts = _mimo_parts(files)
    for slot in ("reference_unet", "pose_guider"):
        if slot not in parts:
            raise ck.CheckpointError(f"No {slot} given: select {ck.MIMO_FILES[slot]} (models/mimo).")
    base = ck.load_base_unet(files.base_unet) if files.base_unet else None
    ref_sd, ref_name = parts["reference_unet"]
    reference = ck.build_reference_unet(ref_sd, name=ref_name)
    config = base[0] if base else reference.config
    den_sd, den_name = parts.get("denoising_unet", (None, "denoising_unet"))
    if den_sd is not None and ck.classify(den_sd) == "sd15_unet":
        log.warning("%s is a plain SD1.5 UNet: building the denoiser from it (conv_in zero-padded).", den_name)
    mot_sd, mot_name = parts.get("motion_module", (None, "motion_module"))
    denoiser = ck.build_denoiser(den_sd, mot_sd, base=base, config=config, names=(den_name, mot_name))
    if denoiser.config.block_out_channels != reference.config.block_out_channels:
        raise ck.CheckpointError(
            f"{den_name} ({denoiser.config.block_out_channels}) and {parts['reference_unet'][1]} "
            f"({reference.config.block_out_channels}) are different model sizes: use files of one release."
        )
    pose_guider = ck.build_pose_guider(parts["pose_guider"][0], name=parts["pose_guider"][1])
    if pose_guider.conv_out.out_channels != config.block_out_channels[0]:
        raise ck.CheckpointError(
            f"{parts['pose_guider'][1]} outputs {pose_guider.conv_out.out_channels} channels but the UNet "
            f"expects {config.block_out_channels[0]}: the pose guider belongs to another model."
        )
    return denoiser, reference, pose_guider


def load_mimo(files: MIMOFiles, vae=None, image_encoder=None, device="cpu", dtype=torch.float32) -> MIMOModels:
    """Builds every network. ``vae`` / ``image_encoder`` may be given as ready modules."""
    denoiser, reference, pose_guider = load_mimo_networks(files)
    if vae is None:
        if files.vae is None:
            raise ck.CheckpointError("No VAE given: select sd-vae-ft-mse (models/vae).")
        vae = load_vae(files.vae)
    if image_encoder is None:
        if files.image_encoder is None:
            raise ck.CheckpointError("No image encoder given: select the sd-image-variations image encoder (models/clip_vision).")
        image_encoder = load_image_encoder(files.image_encoder)
    models = MIMOModels(denoiser, reference, pose_guider, vae, image_encoder)
    return models.to(device=device, dtype=dtype)
