"""MIMO's denoising loop: v-prediction DDIM (zero terminal SNR, trailing spacing) over
closed-loop context windows, classifier-free guidance with reference tokens in the conditional
branch only."""

from dataclasses import dataclass
from typing import Callable

import torch
from diffusers import DDIMScheduler

from .attention import ReferenceContext, ReferenceKV
from .pose_guider import PoseGuider
from .unet import MIMOUNet

SCHEDULER_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "steps_offset": 1,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
}


def make_scheduler() -> DDIMScheduler:
    return DDIMScheduler(**SCHEDULER_CONFIG)


def context_windows(frames: int, context_frames: int = 24, overlap: int = 4) -> list[list[int]]:
    """The official 'uniform' schedule at step 0 with closed loop: windows every
    ``context_frames - overlap`` frames, the last ones wrapping around to the start."""
    if context_frames < 1:
        raise ValueError("context_frames must be at least 1.")
    if frames <= context_frames:
        return [list(range(frames))]
    stride = context_frames - overlap
    if stride < 1:
        raise ValueError(f"overlap ({overlap}) must be smaller than context_frames ({context_frames}).")
    return [[(j + k) % frames for k in range(context_frames)] for j in range(0, frames, stride)]


@dataclass
class SamplerProgress:
    step: int  # 0-based denoising step
    steps: int
    window: int  # 0-based window within the step
    windows: int
    denoised: torch.Tensor | None = None  # x0 estimate [F,4,h,w], after the step's last window
    latents: torch.Tensor | None = None  # latents [F,4,h,w] after the step, likewise

    @property
    def done(self) -> int:
        return self.step * self.windows + self.window + 1

    @property
    def total(self) -> int:
        return self.steps * self.windows


def project_reference_tokens(unet: MIMOUNet, tokens: dict[str, torch.Tensor]) -> dict[str, ReferenceKV]:
    """Reference keys/values for every transformer block: computed once per video."""
    blocks = unet.transformer_blocks()
    missing = sorted(set(blocks) - set(tokens))
    if missing:
        raise ValueError(f"Reference tokens are missing for {len(missing)} blocks (e.g. {missing[0]}): "
                         "the identity was encoded with a different MIMO model.")
    device, dtype = unet.conv_in.weight.device, unet.dtype
    with torch.no_grad():
        return {p: blocks[p].project_reference(tokens[p].to(device), dtype) for p in blocks}


@torch.no_grad()
def encode_pose(pose_guider: PoseGuider, pose: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """pose: [F,3,H,W] in 0..1 -> pose features [F,C0,H/8,W/8] in the guider's dtype."""
    device, dtype = pose_guider.conv_in.weight.device, pose_guider.dtype
    return torch.cat([pose_guider(pose[i:i + chunk].to(device, dtype)) for i in range(0, pose.shape[0], chunk)])


class WindowPredictor:
    """The guided velocity of one context window: everything a window needs that is fixed for the
    whole video (reference K/V, CLIP context, pose features, scene) is prepared once here.

    This is the seam between the step loop (``denoise``) and where windows are computed: the local
    loop calls it window after window; other executors (e.g. several devices) hold one each."""

    def __init__(self, unet: MIMOUNet, reference_kv: dict[str, ReferenceKV], clip_embeds: torch.Tensor,
                 pose_features: torch.Tensor, scene_latents: torch.Tensor, cfg: float):
        frames = pose_features.shape[0]
        if scene_latents.shape[0] not in (1, frames):
            raise ValueError(f"The scene has {scene_latents.shape[0]} frames but the motion has {frames}: "
                             "give one scene frame per motion frame, or a single frame.")
        self.unet, self.reference_kv, self.cfg = unet, reference_kv, cfg
        self.device, self.dtype = unet.conv_in.weight.device, unet.dtype
        self.guided = cfg > 1.0
        cond = clip_embeds.to(self.device, self.dtype).reshape(1, 1, -1)
        self.context = torch.cat([torch.zeros_like(cond), cond]) if self.guided else cond
        self.pose_features = pose_features.to(self.device, self.dtype)
        self.scene = scene_latents.to(self.device, self.dtype)
        self.frames = frames

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, index: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x: scheduler-scaled latents of the window [n,4,h,w]; index: its frame indices [n]; -> v float32."""
        n = len(index)
        x = x.to(self.device, self.dtype)
        s = self.scene.expand(self.frames, -1, -1, -1)[index] if self.scene.shape[0] == 1 else self.scene[index]
        x = torch.cat([x, s], dim=1)
        p = self.pose_features[index]
        if self.guided:
            x, p = torch.cat([x, x]), torch.cat([p, p])
        v = self.unet(x, t, self.context, frames=n, pose_features=p,
                      reference=ReferenceContext(self.reference_kv, plain_rows=n if self.guided else 0)).float()
        if self.guided:
            uncond, cond_v = v.chunk(2)
            v = uncond + self.cfg * (cond_v - uncond)
        return v


@torch.no_grad()
def denoise(
    unet: MIMOUNet,
    reference_kv: dict[str, ReferenceKV],
    clip_embeds: torch.Tensor,
    pose_features: torch.Tensor,
    scene_latents: torch.Tensor,
    noise: torch.Tensor,
    steps: int = 25,
    cfg: float = 3.5,
    context_frames: int = 24,
    overlap: int = 4,
    callback: Callable[[SamplerProgress], None] | None = None,
) -> torch.Tensor:
    """Returns the final latents [F,4,h,w] (scaled by 0.18215, float32).

    clip_embeds [1,D]; pose_features [F,C0,h,w]; scene_latents [F,4,h,w] or [1,4,h,w] (static);
    noise [F,4,h,w] (the initial latents).
    """
    frames = noise.shape[0]
    if pose_features.shape[0] != frames:
        raise ValueError(f"{pose_features.shape[0]} motion frames for {frames} latent frames.")
    predict = WindowPredictor(unet, reference_kv, clip_embeds, pose_features, scene_latents, cfg)
    device = predict.device

    scheduler = make_scheduler()
    scheduler.set_timesteps(steps, device=device)
    windows = context_windows(frames, context_frames, overlap)
    indices = [torch.tensor(idx, device=device) for idx in windows]  # the same windows at every step
    counter = torch.zeros(frames, 1, 1, 1, device=device)
    for index in indices:
        counter.index_add_(0, index, torch.ones(len(index), 1, 1, 1, device=device))
    latents = noise.to(device, torch.float32) * scheduler.init_noise_sigma

    for step, t in enumerate(scheduler.timesteps):
        prediction = torch.zeros_like(latents)
        for w, index in enumerate(indices):
            v = predict(scheduler.scale_model_input(latents[index], t), index, t)
            prediction.index_add_(0, index, v)
            if callback is not None and w < len(windows) - 1:
                callback(SamplerProgress(step, steps, w, len(windows)))
        out = scheduler.step(prediction / counter, t, latents)
        latents = out.prev_sample
        if callback is not None:
            callback(SamplerProgress(step, steps, len(windows) - 1, len(windows), out.pred_original_sample, latents))
    return latents
