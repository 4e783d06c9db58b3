"""Tiny MIMO weights for tests and the demo: the real architecture and key layout, narrow widths,
random values. Nothing here is a trained model; outputs are noise-like pictures.

``write_tiny_weights(models_dir)`` fills a ComfyUI-style ``models/`` folder:

- ``mimo/tiny/{denoising_unet,reference_unet,pose_guider,motion_module}.pth`` (the official split:
  spatial keys in denoising_unet.pth, the temporal ones in motion_module.pth);
- ``vae/mimo-tiny-vae.safetensors``: random weights with the SD1.5 VAE architecture (the core
  VAELoader only knows that size), original LDM key names;
- ``clip_vision/mimo-tiny-image-encoder.safetensors`` (+ ``.json`` with its head count).
"""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from .pose_guider import PoseGuider
from .unet import MIMOUNet, UNetConfig

TINY_UNET = UNetConfig(block_out_channels=(32, 32, 64, 64), layers_per_block=1, cross_attention_dim=32)
TINY_CLIP = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                 image_size=224, patch_size=32, projection_dim=32)
TINY_FILES = {
    "denoising_unet": "tiny/denoising_unet.pth",
    "reference_unet": "tiny/reference_unet.pth",
    "pose_guider": "tiny/pose_guider.pth",
    "motion_module": "tiny/motion_module.pth",
    "vae": "mimo-tiny-vae.safetensors",
    "image_encoder": "mimo-tiny-image-encoder.safetensors",
}


def _perturb(module: torch.nn.Module, generator: torch.Generator, scale: float = 0.02) -> None:
    """Make zero-initialised paths (pose guider conv_out, motion proj_out) active too."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * scale)


def tiny_networks(seed: int = 0, config: UNetConfig = TINY_UNET):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    denoiser = MIMOUNet(config.denoiser())
    reference = MIMOUNet(config.reference())
    pose_guider = PoseGuider(config.block_out_channels[0])
    for m in (denoiser, reference, pose_guider):
        _perturb(m, g)
    return denoiser, reference, pose_guider


def tiny_sampler_inputs(seed: int, frames: int, h: int = 8, w: int = 8) -> dict:
    """What ``sampler.denoise`` takes, with the tiny networks in float64 (they are ill-conditioned
    enough that float32 rounding of a different batch split grows over the steps; in float64 any real
    difference shows): denoiser, guider, kv (reference K/V), clip, motion (uint8 frames at 8x the
    latent size), scene and noise latents [frames,4,h,w]."""
    import numpy as np

    from .sampler import project_reference_tokens

    denoiser, reference, guider = (m.double() for m in tiny_networks(seed=seed))
    torch.manual_seed(0)
    record = {}
    clip = torch.randn(1, 32, dtype=torch.float64)
    with torch.no_grad():
        reference(torch.randn(1, 4, h, w, dtype=torch.float64), 0, clip.reshape(1, 1, -1), record=record)
    kv = project_reference_tokens(denoiser, record)
    motion = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (frames, 8 * h, 8 * w, 3), dtype=np.uint8))
    return dict(denoiser=denoiser, guider=guider, kv=kv, clip=clip, motion=motion,
                scene=torch.randn(frames, 4, h, w), noise=torch.randn(frames, 4, h, w))


def tiny_image_encoder(seed: int = 0):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    return CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY_CLIP)).eval()


def sd_vae(seed: int = 0, tiny: bool = False):
    """Random AutoencoderKL: the SD1.5 architecture, or a narrow one for library tests."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    if tiny:
        return AutoencoderKL(block_out_channels=(32, 32, 32, 32), layers_per_block=1, latent_channels=4,
                             down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                             norm_num_groups=32).eval()
    return AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         sample_size=512).eval()


def _ldm_vae_keys(vae) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderKL -> original (LDM) key names, as SD VAE files ship."""
    out = {}
    for k, v in vae.state_dict().items():
        n = k
        for side in ("encoder", "decoder"):
            n = n.replace(f"{side}.mid_block.resnets.0.", f"{side}.mid.block_1.")
            n = n.replace(f"{side}.mid_block.resnets.1.", f"{side}.mid.block_2.")
            n = n.replace(f"{side}.mid_block.attentions.0.", f"{side}.mid.attn_1.")
        n = n.replace("conv_norm_out.", "norm_out.").replace("conv_shortcut.", "nin_shortcut.")
        n = n.replace(".group_norm.", ".norm.").replace(".to_q.", ".q.").replace(".to_k.", ".k.")
        n = n.replace(".to_v.", ".v.").replace(".to_out.0.", ".proj_out.")
        parts = n.split(".")
        if parts[1] == "down_blocks":
            parts[1] = "down"
            if parts[3] == "resnets":
                parts[3] = "block"
            elif parts[3] == "downsamplers":
                parts[3:5] = ["downsample"]
        elif parts[1] == "up_blocks":
            parts[1], parts[2] = "up", str(3 - int(parts[2]))  # LDM numbers up blocks from the bottom
            if parts[3] == "resnets":
                parts[3] = "block"
            elif parts[3] == "upsamplers":
                parts[3:5] = ["upsample"]
        n = ".".join(parts)
        if ".mid.attn_1." in n and v.ndim == 2:  # attention projections are 1x1 convs in LDM files
            v = v[:, :, None, None]
        out[n] = v.contiguous()
    return out


def write_tiny_weights(models_dir: str | Path, seed: int = 0, dtype: torch.dtype = torch.float16) -> dict[str, Path]:
    """Writes the tiny model set; returns the path of each file. Idempotent for a given seed."""
    root = Path(models_dir)
    mimo = root / "mimo"
    (mimo / "tiny").mkdir(parents=True, exist_ok=True)
    (root / "vae").mkdir(parents=True, exist_ok=True)
    (root / "clip_vision").mkdir(parents=True, exist_ok=True)
    denoiser, reference, pose_guider = tiny_networks(seed)
    den = denoiser.state_dict()
    motion = {k: v for k, v in den.items() if ".motion_modules." in k}
    spatial = {k: v for k, v in den.items() if k not in motion}
    paths = {slot: mimo / TINY_FILES[slot] for slot in ("denoising_unet", "reference_unet", "pose_guider", "motion_module")}
    torch.save(spatial, paths["denoising_unet"])
    torch.save(motion, paths["motion_module"])
    torch.save(reference.state_dict(), paths["reference_unet"])
    torch.save(pose_guider.state_dict(), paths["pose_guider"])

    paths["vae"] = root / "vae" / TINY_FILES["vae"]
    if not paths["vae"].is_file():
        save_file({k: v.to(dtype) for k, v in _ldm_vae_keys(sd_vae(seed)).items()}, str(paths["vae"]))
    encoder = tiny_image_encoder(seed)
    paths["image_encoder"] = root / "clip_vision" / TINY_FILES["image_encoder"]
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, str(paths["image_encoder"]))
    paths["image_encoder"].with_suffix(".json").write_text(json.dumps(TINY_CLIP, indent=1))
    return paths


def write_tiny_official(root: str | Path, seed: int = 0) -> Path:
    """The tiny model set in the official release's ``pretrained_weights/`` layout (what
    ``loading.MIMOFiles.official_layout`` reads): the four ``.pth`` files, ``sd-vae-ft-mse/`` and
    ``image_encoder/`` folders. Returns ``root``."""
    import shutil
    import tempfile

    root = Path(root)
    (root / "sd-vae-ft-mse").mkdir(parents=True, exist_ok=True)
    (root / "image_encoder").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_tiny_weights(tmp, seed)
        for slot in ("denoising_unet", "reference_unet", "pose_guider", "motion_module"):
            shutil.copyfile(paths[slot], root / f"{slot}.pth")
        shutil.copyfile(paths["vae"], root / "sd-vae-ft-mse" / "diffusion_pytorch_model.safetensors")
        shutil.copyfile(paths["image_encoder"], root / "image_encoder" / "model.safetensors")
        (root / "image_encoder" / "config.json").write_text(json.dumps(TINY_CLIP, indent=1))
    return root
