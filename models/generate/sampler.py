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
    check_windows(context_frames, overlap)
    if frames <= context_frames:
        return [list(range(frames))]
    stride = context_frames - overlap
    return [[(j + k) % frames for k in range(context_frames)] for j in range(0, frames, stride)]


def check_windows(context_frames: int, overlap: int) -> None:
    if context_frames < 1:
        raise ValueError("context_frames must be at least 1.")
    if not 0 <= overlap < context_frames:
        raise ValueError(f"overlap ({overlap}) must be at least 0 and smaller than context_frames ({context_frames}).")


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


@dataclass
class SamplerPlan:
    """How the denoising loop uses memory (``memory_modes.plan_sampler`` picks one per mode).

    windows_per_forward: context windows batched into one UNet call; sequential_guidance: the two
    guidance halves one after the other; pose_cache_bytes: device memory for cached pose features;
    state_on_device: latents and accumulators on the compute device (else the host, for long videos);
    row_chunk: frames at a time through resnets and spatial attention (0: all); ff_tokens: tokens at
    a time through the feed-forwards, at 320 channels (``MIMOUNet.set_row_chunk``; 0: all); compile:
    the denoiser's memory-bound steps through torch.compile (``MIMOUNet.set_compiled``)."""

    windows_per_forward: int = 1
    sequential_guidance: bool = False
    pose_cache_bytes: int = 0
    state_on_device: bool = True
    row_chunk: int = 0
    ff_tokens: int = 0
    compile: bool = False


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


class PoseFeatures:
    """Pose-guider features of the motion, computed window by window from the motion frames kept
    on the host as uint8 at the working size, so device memory does not grow with the video's length.

    Features of up to ``cache_bytes`` worth of windows are kept on the device, keyed by the window's
    index tensor (the loop passes the same ones at every step, so there is no device sync to look
    one up); a window is always computed the same way, so cached and recomputed features are the
    same bits."""

    def __init__(self, pose_guider: PoseGuider, motion_uint8: torch.Tensor, cache_bytes: int = 0, chunk: int = 8):
        if motion_uint8.dtype != torch.uint8 or motion_uint8.ndim != 4 or motion_uint8.shape[-1] != 3:
            raise ValueError(f"motion frames must be uint8 [frames, H, W, 3], got {motion_uint8.dtype} "
                             f"{tuple(motion_uint8.shape)}.")
        self.guider, self.motion, self.chunk = pose_guider, motion_uint8, chunk
        self.device, self.dtype = pose_guider.conv_in.weight.device, pose_guider.dtype
        self.cache_bytes, self._cache, self._cached, self._host = cache_bytes, {}, 0, {}

    def __len__(self) -> int:
        return self.motion.shape[0]

    def _host_index(self, index: torch.Tensor) -> torch.Tensor:
        # The loop passes the same index tensors at every step: their host copies are made once.
        held = self._host.get(id(index))
        if held is None or held[0] is not index:
            held = self._host[id(index)] = (index, index.cpu())
        return held[1]

    @torch.no_grad()
    def compute(self, index: torch.Tensor) -> torch.Tensor:
        host, parts = self._host_index(index), []
        for i in range(0, len(host), self.chunk):
            frames = self.motion[host[i:i + self.chunk]].to(self.device, non_blocking=True)
            parts.append(self.guider((frames.permute(0, 3, 1, 2).float() / 255.0).to(self.dtype)))
        return torch.cat(parts)

    def __call__(self, index: torch.Tensor) -> torch.Tensor:
        hit = self._cache.get(id(index))
        if hit is not None and hit[0] is index:
            return hit[1]
        features = self.compute(index)
        size = features.numel() * features.element_size()
        if self._cached + size <= self.cache_bytes:
            self._cache[id(index)], self._cached = (index, features), self._cached + size
        return features


@torch.no_grad()
def encode_pose(pose_guider: PoseGuider, pose: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """pose: [F,3,H,W] in 0..1 -> pose features [F,C0,H/8,W/8] in the guider's dtype (all at once)."""
    device, dtype = pose_guider.conv_in.weight.device, pose_guider.dtype
    return torch.cat([pose_guider(pose[i:i + chunk].to(device, dtype)) for i in range(0, pose.shape[0], chunk)])


class WindowPredictor:
    """The guided velocity of context windows: everything a window needs that is fixed for the whole
    video (reference K/V, CLIP context, pose features, scene) is prepared once here.

    This is the seam between the step loop (``denoise``) and where windows are computed: the local
    loop calls it window after window; other executors (e.g. several devices) hold one each.

    ``pose``: pose features [F,C0,h,w] or a ``PoseFeatures``. ``sequential_guidance`` runs the
    unconditional and conditional halves one after the other (half the activations, low-VRAM mode)."""

    def __init__(self, unet: MIMOUNet, reference_kv: dict[str, ReferenceKV], clip_embeds: torch.Tensor,
                 pose: "torch.Tensor | PoseFeatures", scene_latents: torch.Tensor, cfg: float,
                 sequential_guidance: bool = False):
        frames = len(pose)
        if scene_latents.shape[0] not in (1, frames):
            raise ValueError(f"The scene has {scene_latents.shape[0]} frames but the motion has {frames}: "
                             "give one scene frame per motion frame, or a single frame.")
        self.unet, self.reference_kv, self.cfg = unet, reference_kv, cfg
        self.device, self.dtype = unet.conv_in.weight.device, unet.dtype
        self.guided, self.sequential = cfg > 1.0, sequential_guidance
        self.cond = clip_embeds.to(self.device, self.dtype).reshape(1, 1, -1)
        self.pose = pose if isinstance(pose, PoseFeatures) else pose.to(self.device, self.dtype)
        self.scene = scene_latents  # stays where the step state lives; windows are moved when used
        self.frames = frames

    def pose_features(self, index: torch.Tensor) -> torch.Tensor:
        if isinstance(self.pose, PoseFeatures):
            return self.pose(index)
        return self.pose[index.to(self.pose.device)]

    def scene_latents(self, index: torch.Tensor) -> torch.Tensor:
        s = self.scene[:1].expand(len(index), -1, -1, -1) if self.scene.shape[0] == 1 \
            else self.scene[index.to(self.scene.device)]
        return s.to(self.device, self.dtype, non_blocking=True)

    def _forward(self, x: torch.Tensor, p: torch.Tensor, t, n: int, videos: int, plain_videos: int) -> torch.Tensor:
        context = torch.cat([torch.zeros_like(self.cond)] * plain_videos + [self.cond] * (videos - plain_videos))
        reference = ReferenceContext(self.reference_kv, plain_rows=plain_videos * n) \
            if plain_videos < videos else None
        return self.unet(x, t, context, frames=n, pose_features=p, reference=reference).float()

    @torch.no_grad()
    def predict(self, xs: list[torch.Tensor], indices: list[torch.Tensor], t) -> list[torch.Tensor]:
        """Several windows of the same length in one forward: xs are scheduler-scaled latents [n,4,h,w],
        indices their frame indices [n]; returns one v (float32) per window."""
        n, k = len(indices[0]), len(indices)
        x = torch.cat([torch.cat([xi.to(self.device, self.dtype), self.scene_latents(i)], dim=1)
                       for xi, i in zip(xs, indices)])
        p = self.pose_features(indices[0]) if k == 1 else torch.cat([self.pose_features(i) for i in indices])
        if not self.guided:
            v = self._forward(x, p, t, n, k, 0)
        elif self.sequential:
            uncond = self._forward(x, p, t, n, k, k)
            cond = self._forward(x, p, t, n, k, 0)
            v = uncond + self.cfg * (cond - uncond)
        else:  # the pose features are added to both halves by the UNet (not copied)
            uncond, cond = self._forward(torch.cat([x, x]), p, t, n, 2 * k, k).chunk(2)
            v = uncond + self.cfg * (cond - uncond)
        return list(v.chunk(k))

    def __call__(self, x: torch.Tensor, index: torch.Tensor, t) -> torch.Tensor:
        """x: scheduler-scaled latents of one window [n,4,h,w]; index: its frame indices [n]; -> v float32."""
        return self.predict([x], [index], t)[0]


def window_groups(windows: list[list[int]], per_forward: int) -> list[list[int]]:
    """Window numbers batched into one forward: consecutive, of equal length, at most ``per_forward``."""
    groups: list[list[int]] = []
    for w, window in enumerate(windows):
        last = groups[-1] if groups else None
        if last and len(last) < per_forward and len(windows[last[0]]) == len(window):
            last.append(w)
        else:
            groups.append([w])
    return groups


@torch.no_grad()
def denoise(
    unet: MIMOUNet,
    reference_kv: dict[str, ReferenceKV],
    clip_embeds: torch.Tensor,
    pose: "torch.Tensor | PoseFeatures",
    scene_latents: torch.Tensor,
    noise: torch.Tensor,
    steps: int = 25,
    cfg: float = 3.5,
    context_frames: int = 24,
    overlap: int = 4,
    callback: Callable[[SamplerProgress], None] | None = None,
    plan: "SamplerPlan | None" = None,
    executor: "WindowExecutor | None" = None,
) -> torch.Tensor:
    """Returns the final latents [F,4,h,w] (scaled by 0.18215, float32, on the plan's state device).

    clip_embeds [1,D]; pose: features [F,C0,h,w] or a ``PoseFeatures``; scene_latents [F,4,h,w] or
    [1,4,h,w] (static); noise [F,4,h,w] (the initial latents).

    ``executor``: where the windows are computed (``WindowExecutor``; e.g. the window-parallel one in
    ``models.distributed``); None: here, on the denoiser's device. The averaging and the scheduler
    step stay in this loop either way, in the same order, so every executor gives the same bits.
    """
    frames = noise.shape[0]
    if len(pose) != frames:
        raise ValueError(f"{len(pose)} motion frames for {frames} latent frames.")
    plan = plan or SamplerPlan()
    predict = WindowPredictor(unet, reference_kv, clip_embeds, pose, scene_latents, cfg,
                              sequential_guidance=plan.sequential_guidance)
    state = predict.device if plan.state_on_device else torch.device("cpu")
    if predict.scene.shape[0] > 1:
        predict.scene = predict.scene.to(state)

    scheduler = make_scheduler()
    scheduler.set_timesteps(steps, device=state)
    windows = context_windows(frames, context_frames, overlap)
    indices = [torch.tensor(idx, device=state) for idx in windows]  # the same windows at every step
    groups = window_groups(windows, plan.windows_per_forward)
    counter = torch.zeros(frames, 1, 1, 1, device=state)
    for index in indices:
        counter.index_add_(0, index, torch.ones(len(index), 1, 1, 1, device=state))
    latents = noise.to(state, torch.float32) * scheduler.init_noise_sigma
    if executor is not None:
        with executor.video(predict, plan, windows, groups) as run:
            return _steps(predict, scheduler, latents, indices, groups, counter, steps, callback, run)
    if hasattr(unet, "set_row_chunk"):
        unet.set_row_chunk(plan.row_chunk, plan.ff_tokens)
        unet.set_compiled(plan.compile)
    try:
        return _steps(predict, scheduler, latents, indices, groups, counter, steps, callback)
    finally:
        if hasattr(unet, "set_row_chunk"):
            unet.set_row_chunk(0)
            unet.set_compiled(False)


class WindowExecutor:
    """Computes the windows of a video somewhere else than the step loop (the loop keeps the averaging
    and the scheduler step). ``video(predict, plan, windows, groups)`` is a context manager entered once
    per video: it gets the ``WindowPredictor`` holding everything fixed for the video (to be sent once)
    and yields ``run(inputs, t)``, which takes every group of one step as ``(group, xs)`` (xs: the
    scheduler-scaled latents of the group's windows, float32 on the host) and yields each group's
    predictions (one float32 v per window, on any device) in the order of ``inputs``. The step state
    stays where the local loop keeps it (``plan.state_on_device``), so the scheduler step is the same."""

    def video(self, predict: WindowPredictor, plan: SamplerPlan, windows: list[list[int]],
              groups: list[list[int]]):
        raise NotImplementedError


def _local_groups(predict, scheduler, latents, indices, groups, t):
    t_model = t.to(predict.device)
    for group in groups:
        chosen = [indices[w] for w in group]
        yield group, chosen, predict.predict([scheduler.scale_model_input(latents[i], t) for i in chosen], chosen,
                                             t_model)


def _remote_groups(run, scheduler, latents, indices, groups, t):
    inputs = [(group, [scheduler.scale_model_input(latents[indices[w]], t) for w in group]) for group in groups]
    results = iter(run(inputs, t))
    for group, _ in inputs:
        yield group, [indices[w] for w in group], next(results)
    if next(results, None) is not None:  # also lets the executor finish its step
        raise RuntimeError("The window executor returned more groups than it was given.")


def _steps(predict, scheduler, latents, indices, groups, counter, steps, callback, run=None) -> torch.Tensor:
    state, windows = latents.device, len(indices)
    for step, t in enumerate(scheduler.timesteps):
        prediction = torch.zeros_like(latents)
        results = _local_groups(predict, scheduler, latents, indices, groups, t) if run is None \
            else _remote_groups(run, scheduler, latents, indices, groups, t)
        for group, chosen, vs in results:
            for w, index, v in zip(group, chosen, vs):
                prediction.index_add_(0, index, v.to(state))
                if callback is not None and w < windows - 1:
                    callback(SamplerProgress(step, steps, w, windows))
        out = scheduler.step(prediction / counter, t, latents)
        latents = out.prev_sample
        if callback is not None:
            callback(SamplerProgress(step, steps, windows - 1, windows, out.pred_original_sample, latents))
    return latents


def progress_ticks(frames: int, steps: int, context_frames: int = 24, overlap: int = 4) -> int:
    """How many progress callbacks ``denoise`` makes: one per window per step."""
    return steps * len(context_windows(frames, context_frames, overlap))
