"""The MIMO generative pipeline as composable stages: identity, scene, motion -> latents -> frames.

Matches the official ``Pose2VideoPipeline``: reference and scene frames are resized with PIL
LANCZOS to the working size and VAE-encoded (posterior mean x 0.18215); the reference pass
runs once at t=0 and its tokens are reused by every window and step.
"""

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import image_ops
from .image_encoder import encode_image
from .pose_guider import PoseGuider
from .reference_prep import clip_pixel_values
from .sampler import (PoseFeatures, SamplerPlan, SamplerProgress, check_windows, denoise, encode_pose,
                      project_reference_tokens)
from .unet import MIMOUNet
from .vae import decode, encode_mean

log = logging.getLogger("MIMO")

LATENT_SCALE = 0.18215
WHITE = 255


@dataclass
class MIMOModels:
    denoiser: MIMOUNet
    reference_unet: MIMOUNet
    pose_guider: PoseGuider
    vae: torch.nn.Module  # diffusers AutoencoderKL
    image_encoder: torch.nn.Module  # transformers CLIPVisionModelWithProjection

    def to(self, device=None, dtype=None) -> "MIMOModels":
        """Move (and cast) every network, as the official pipeline runs all of them in one dtype."""
        for m in (self.denoiser, self.reference_unet, self.pose_guider, self.vae, self.image_encoder):
            m.to(device=device)
            if dtype is not None and next(m.parameters()).dtype != dtype:
                m.to(dtype=dtype)
        return self


@dataclass
class Identity:
    """The character: prepared reference picture, CLIP embedding and ReferenceNet tokens."""

    image: np.ndarray  # uint8 [S,S,3], the official crop/pad of the reference
    clip_embeds: torch.Tensor  # [1,D]
    width: int
    height: int
    tokens: dict[str, torch.Tensor] = field(repr=False)  # block path -> [1,L,C] float16


@dataclass
class Scene:
    """Scene latents [F or 1, 4, h, w] (scaled) at a working size; white when ``frames`` is None."""

    latents: torch.Tensor
    width: int
    height: int
    frames: np.ndarray | None = None  # uint8 [F,H,W,3] source, kept to re-encode at another size


@torch.no_grad()
def encode_identity(models: MIMOModels, reference_uint8: np.ndarray, width: int, height: int) -> Identity:
    """reference_uint8: the prepared square reference (``reference_prep.prepare_reference``)."""
    embeds = encode_image(models.image_encoder, clip_pixel_values(reference_uint8)).float().cpu()
    ref = image_ops.resize_frames(reference_uint8[None], width, height, "lanczos")
    latents = encode_mean(models.vae, image_ops.to_signed_tensor(ref), scaling=LATENT_SCALE)
    unet = models.reference_unet
    device, dtype = unet.conv_in.weight.device, unet.dtype
    record: dict[str, torch.Tensor] = {}
    unet(latents.to(device, dtype), 0, embeds.to(device, dtype).reshape(1, 1, -1), record=record)
    tokens = {k: v.to(torch.float16).cpu() for k, v in record.items()}
    return Identity(reference_uint8, embeds, width, height, tokens)


@torch.no_grad()
def encode_scene(models: MIMOModels, frames_uint8: np.ndarray | None, width: int, height: int,
                 chunk: int = 8) -> Scene:
    """frames_uint8 [F,H,W,3]; None gives the white scene of the official animation mode."""
    if frames_uint8 is None:
        white = np.full((1, height, width, 3), WHITE, np.uint8)
        return Scene(encode_mean(models.vae, image_ops.to_signed_tensor(white), scaling=LATENT_SCALE).cpu(),
                     width, height, None)
    parts = []
    for i in range(0, frames_uint8.shape[0], chunk):
        batch = image_ops.resize_frames(frames_uint8[i:i + chunk], width, height, "lanczos")
        parts.append(encode_mean(models.vae, image_ops.to_signed_tensor(batch), scaling=LATENT_SCALE).cpu())
    return Scene(torch.cat(parts), width, height, frames_uint8)


def motion_tensor(frames_uint8: np.ndarray, width: int, height: int) -> torch.Tensor:
    """Motion renders (SMPL codes) at the working size, 0..1 [F,3,H,W] (black padding stays black)."""
    return image_ops.to_unit_tensor(image_ops.resize_frames(frames_uint8, width, height, "lanczos"))


def initial_noise(frames: int, width: int, height: int, seed: int) -> torch.Tensor:
    """[F,4,h,w] standard normal from a CPU generator (same on every device)."""
    g = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn(1, 4, frames, height // 8, width // 8, generator=g).squeeze(0).transpose(0, 1).contiguous()


def networks_needed(identity: Identity, scene: Scene, width: int, height: int) -> list[str]:
    """The networks ``sample`` will run for this call: identity or scene encoded at another size are
    encoded again at the working size first."""
    needed = ["denoiser", "pose_guider"]
    if (identity.width, identity.height) != (width, height):
        needed += ["image_encoder", "vae", "reference_unet"]
    elif (scene.width, scene.height) != (width, height):
        needed.append("vae")
    return needed


def check_size(width: int, height: int) -> None:
    if width % 8 or height % 8 or width < 64 or height < 64:
        raise ValueError(f"Working size {width}x{height} must be multiples of 8 and at least 64 (MIMO uses 784x784).")


@torch.no_grad()
def sample(
    models: MIMOModels,
    identity: Identity,
    motion_uint8: np.ndarray,
    scene: Scene,
    width: int,
    height: int,
    steps: int = 25,
    cfg: float = 3.5,
    context_frames: int = 24,
    overlap: int = 4,
    seed: int = 42,
    noise: torch.Tensor | None = None,
    callback=None,
    plan: SamplerPlan | None = None,
    before_denoise=None,
    executor=None,
) -> torch.Tensor:
    """Returns scaled latents [F,4,H/8,W/8] (float32, CPU).

    ``executor``: where the windows are computed (``sampler.WindowExecutor``, e.g.
    ``models.distributed.window_parallel.WindowParallel``); None: on the denoiser's device.
    ``before_denoise`` is called once the encoders are done. The pose features are computed window by window from the motion at the working size (uint8 on
    the host), so device memory does not grow with the number of frames."""
    check_size(width, height)
    check_windows(context_frames, overlap)
    plan = plan or SamplerPlan()
    if (identity.width, identity.height) != (width, height):
        log.info("Re-encoding the identity at %dx%d (it was encoded at %dx%d).", width, height,
                 identity.width, identity.height)
        identity = encode_identity(models, identity.image, width, height)
    if (scene.width, scene.height) != (width, height):
        log.info("Re-encoding the scene at %dx%d.", width, height)
        scene = encode_scene(models, scene.frames, width, height)
    frames = motion_uint8.shape[0]
    motion = torch.from_numpy(np.ascontiguousarray(image_ops.resize_frames(motion_uint8, width, height, "lanczos")))
    pose = PoseFeatures(models.pose_guider, motion, cache_bytes=plan.pose_cache_bytes)
    if noise is None:
        noise = initial_noise(frames, width, height, seed)
    kv = project_reference_tokens(models.denoiser, identity.tokens)
    if before_denoise is not None:
        before_denoise()  # e.g. low-VRAM mode: the encoders leave the GPU
    latents = denoise(models.denoiser, kv, identity.clip_embeds, pose, scene.latents, noise, steps=steps, cfg=cfg,
                      context_frames=context_frames, overlap=overlap, callback=callback, plan=plan,
                      executor=executor)
    return latents.cpu()


@torch.no_grad()
def decode_latents(models: MIMOModels, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents [F,4,h,w] -> frames [F,3,H,W] in 0..1 (one frame at a time, as official)."""
    return decode(models.vae, latents, scaling=LATENT_SCALE, chunk=1).float().cpu()


__all__ = [
    "MIMOModels", "Identity", "Scene", "SamplerProgress", "encode_identity", "encode_scene", "sample",
    "decode_latents", "initial_noise", "motion_tensor", "networks_needed", "encode_pose", "LATENT_SCALE",
]
