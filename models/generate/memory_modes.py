"""Memory modes of the sampler: how much of the GPU one denoising run may take, decided up front.

fast: both guidance halves in one forward, pose features of the windows cached on the device,
several small windows in one forward when memory allows, feed-forwards in pieces of 65k tokens.
low (8 GB cards): the guidance halves one after the other, resnets/spatial attention a few frames
at a time, feed-forwards in pieces of 32k tokens, no pose cache, the step state on the host.
auto: fast when its estimate fits the free memory, else low; a low estimate that does not fit is
refused with what would.

The activation figures are fitted to counts of this sampler's own tensors on fake CUDA tensors
(``benchmarks/bench_footprint``, fp16, flash attention; the same count gives the official pipeline's
measured H100 peaks within 1%): fast 7.9 KiB per latent pixel of each image in a forward plus 0.4 GiB
of fixed-size pieces (feed-forward chunks, reference keys), low 8.4 KiB per frame of the window plus
0.2 GiB; the constants below are 5-8% above the counts at 256, 512 and 784.
``benchmarks/gpu_check.sh`` prints the measured peaks.
"""

from dataclasses import dataclass

import torch

from .. import memory

from .sampler import SamplerPlan, context_windows

MODES = ("auto", "fast", "low")
GIB = 2**30
# Activations of one forward, 16-bit: bytes per latent pixel of each image in it, plus fixed-size
# pieces (feed-forward chunks, reference K/V). Low: per frame of the window (one half at a time).
# Fitted to bench_footprint's counts at 256, 512 and 784 (within 0-13% above them).
ACTIVATION_PER_LATENT_PIXEL, ACTIVATION_FIXED = 8.75 * 1024, int(0.15 * 2**30)
LOW_ACTIVATION_PER_LATENT_PIXEL, LOW_ACTIVATION_FIXED = 9.5 * 1024, int(0.06 * 2**30)
# Latent pixels at a time through the frame-wise layers in low mode (MIMOUNet.set_row_chunk): 4
# frames at 784x784; more frames at smaller sizes, so that the pieces still fill a GPU.
LOW_CHUNK_PIXELS = 4 * 98 * 98
# On the CPU one full-size layer over a whole window (48 images with guidance) takes 1-2.5 s, longer
# than Cancel may wait: there those layers also go 4 frames at a time (measured: no slower).
CPU_ROW_CHUNK = 4
# Feed-forwards (their hidden layer is 8x as wide as their input) run in pieces of this many tokens
# at 320 channels, fewer where wider: on a GPU large enough to keep the matrix products efficient
# (fast: 65k tokens, 8 pieces of a guided 24-frame 784x784 window at 320 channels; 0.3 GiB of
# hidden activation per piece in fp16) and on the CPU 4 frames' worth at 256x256, as the row chunks.
FAST_FF_TOKENS = 65536
LOW_FF_TOKENS = 32768
CPU_FF_TOKENS = 4096
STATE_ON_DEVICE_MAX = 256 * 2**20  # latents + accumulators larger than this live on the host
POSE_CACHE_MAX = 1 * GIB  # device memory for cached pose features in fast mode
MAX_WINDOWS_PER_FORWARD = 4
# Windows share a forward only while it stays under one 512x512 window's latent pixels (48 images of
# 64x64): a forward that large already fills a GPU, so batching more would only add memory.
BATCH_WINDOWS_MAX_PIXELS = 48 * 64 * 64
HEADROOM = 0.85  # share of the free memory a plan may count on (allocator fragmentation, CUDA context)


@dataclass
class MemoryEstimate:
    weights: int  # bytes of the networks on the device while denoising
    activations: int  # peak bytes of one forward
    mode: str

    @property
    def total(self) -> int:
        return self.weights + self.activations


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def forward_activations(width: int, height: int, images: int, dtype: torch.dtype, low: bool = False) -> int:
    """Peak activation bytes of one denoiser forward over ``images`` latent images (``low``: in
    low-VRAM mode's pieces, ``images`` being the frames of one half)."""
    pixels = (width // 8) * (height // 8)
    per_pixel, fixed = ((LOW_ACTIVATION_PER_LATENT_PIXEL, LOW_ACTIVATION_FIXED) if low
                        else (ACTIVATION_PER_LATENT_PIXEL, ACTIVATION_FIXED))
    return int((per_pixel * pixels * images + fixed) * _element_size(dtype) / 2)


def low_row_chunk(width: int, height: int) -> int:
    """Frames a piece of the low mode's frame-wise layers holds (at least 1)."""
    return max(1, LOW_CHUNK_PIXELS // ((width // 8) * (height // 8)))


def state_bytes(frames: int, width: int, height: int) -> int:
    """Latents, prediction and x0 estimate of the whole video, float32."""
    return 3 * frames * 4 * (width // 8) * (height // 8) * 4


def pose_feature_bytes(frames: int, width: int, height: int, channels: int, dtype: torch.dtype) -> int:
    return frames * channels * (width // 8) * (height // 8) * _element_size(dtype)


def estimate(mode: str, *, width: int, height: int, context_frames: int, frames: int, cfg: float,
             dtype: torch.dtype, weight_bytes: int, windows_per_forward: int = 1) -> MemoryEstimate:
    n = min(frames, context_frames)
    halves = 2 if cfg > 1.0 else 1
    if mode == "low":
        act = forward_activations(width, height, n, dtype, low=True)
    else:
        act = forward_activations(width, height, n * halves * windows_per_forward, dtype)
    return MemoryEstimate(int(weight_bytes), int(act), mode)


def plan_sampler(mode: str, *, device: torch.device, free_bytes: int | None, width: int, height: int,
                 frames: int, context_frames: int, overlap: int, cfg: float, dtype: torch.dtype,
                 weight_bytes: int, pose_channels: int = 320, force_low: bool = False) -> tuple[SamplerPlan, str]:
    """(plan, mode used). ``free_bytes``: free device memory (None: unknown, e.g. the CPU);
    ``weight_bytes``: the denoiser + pose guider on the device; ``force_low``: --lowvram/--novram."""
    if mode not in MODES:
        raise ValueError(f"memory must be one of {', '.join(MODES)} (got {mode!r}).")
    windows = context_windows(frames, context_frames, overlap)
    budget = None if free_bytes is None or device.type == "cpu" else int(free_bytes * HEADROOM)
    common = dict(width=width, height=height, context_frames=context_frames, frames=frames, cfg=cfg,
                  dtype=dtype, weight_bytes=weight_bytes)
    if mode == "auto":
        fits = budget is None or estimate("fast", **common).total <= budget
        mode = "low" if force_low or not fits else "fast"
    if mode == "low":
        need = estimate("low", **common)
        if budget is not None and need.total > budget:
            raise MemoryError(_too_big(need, budget, width, height, context_frames))
        cpu = device.type == "cpu"
        return SamplerPlan(windows_per_forward=1, sequential_guidance=True, pose_cache_bytes=0,
                           state_on_device=False, row_chunk=CPU_ROW_CHUNK if cpu else low_row_chunk(width, height),
                           ff_tokens=CPU_FF_TOKENS if cpu else LOW_FF_TOKENS), "low"
    # fast: batch windows only on a GPU with room for them (on the CPU it gains nothing)
    per_forward = 1
    pixels = min(frames, context_frames) * (2 if cfg > 1.0 else 1) * (width // 8) * (height // 8)
    if budget is not None and len(windows) > 1:
        for k in range(MAX_WINDOWS_PER_FORWARD, 1, -1):
            small = k * pixels <= BATCH_WINDOWS_MAX_PIXELS
            if small and estimate("fast", windows_per_forward=k, **common).total <= budget:
                per_forward = k
                break
    pose = pose_feature_bytes(frames, width, height, pose_channels, dtype)
    cache = min(POSE_CACHE_MAX, pose) if budget is None else min(POSE_CACHE_MAX, pose, max(
        0, budget - estimate("fast", windows_per_forward=per_forward, **common).total))
    return SamplerPlan(windows_per_forward=per_forward, sequential_guidance=False, pose_cache_bytes=int(cache),
                       state_on_device=state_bytes(frames, width, height) <= STATE_ON_DEVICE_MAX,
                       row_chunk=CPU_ROW_CHUNK if device.type == "cpu" else 0,
                       ff_tokens=CPU_FF_TOKENS if device.type == "cpu" else FAST_FF_TOKENS), "fast"


def denoising_bytes(plan: SamplerPlan, mode: str, *, width: int, height: int, frames: int, context_frames: int,
                    cfg: float, dtype: torch.dtype) -> int:
    """Device bytes a planned denoising run needs beyond the denoiser's weights: the activations of
    one forward, the pose-feature cache and the step state when it lives on the device."""
    act = estimate(mode, width=width, height=height, context_frames=context_frames, frames=frames, cfg=cfg,
                   dtype=dtype, weight_bytes=0, windows_per_forward=plan.windows_per_forward).activations
    state = state_bytes(frames, width, height) if plan.state_on_device else 0
    return int(act + plan.pose_cache_bytes + state)


def _too_big(need: MemoryEstimate, budget: int, width: int, height: int, context_frames: int) -> str:
    scale = (budget - need.weights) / max(need.activations, 1)
    hint = []
    if scale > 0:
        side = int((width * height * scale) ** 0.5) // 8 * 8
        hint.append(f"a working size of about {side}x{side}")
        frames = int(context_frames * scale)
        if frames >= 1:
            hint.append(f"context_frames {frames}")
    hint.append("closing other GPU programs")
    return (f"MIMO Sampler needs about {need.total / GIB:.1f} GiB of GPU memory even in low-VRAM mode at "
            f"{width}x{height} with {context_frames}-frame windows ({need.weights / GIB:.1f} GiB of weights), "
            f"but only {budget / GIB:.1f} GiB can be used. Try " + ", or ".join(hint) + ".")


def host_bytes(*, width: int, height: int, frames: int, context_frames: int, cfg: float, dtype: torch.dtype,
               on_cpu: bool, block_out_channels: tuple = (320,)) -> int:
    """Peak host bytes of one sampler call beyond the weights: the motion at the working size (uint8),
    the video's latents/noise/accumulators/scene (float32, about 8 per latent pixel), and on the CPU
    the denoiser's activations (scaled to the network's width; SD1.5's 320 first channels = 1)."""
    latent = 4 * (width // 8) * (height // 8) * 4
    total = frames * width * height * 3 + 8 * frames * latent
    if on_cpu:
        scale = block_out_channels[0] / 320
        images = min(frames, context_frames) * (2 if cfg > 1.0 else 1)
        total += int(forward_activations(width, height, images, dtype) * scale)
    return int(total)


def check_host(*, width: int, height: int, frames: int, context_frames: int, cfg: float, dtype: torch.dtype,
               on_cpu: bool, block_out_channels: tuple = (320,)) -> None:
    """Refuse a sampler call whose ``host_bytes`` do not fit the host memory available, saying what to lower."""
    need = host_bytes(width=width, height=height, frames=frames, context_frames=context_frames, cfg=cfg,
                      dtype=dtype, on_cpu=on_cpu, block_out_channels=block_out_channels)
    what = (f"MIMO Sampler ({frames} frames at {width}x{height}, {context_frames}-frame windows"
            f"{', on the CPU' if on_cpu else ''})")
    fix = ("lower width/height, sample fewer frames (max_frames on the motion loader, or split the clip), lower "
           "context_frames, or use cfg 1.0 (half the work)." if on_cpu else
           "lower width/height or sample fewer frames (max_frames on the motion loader).")
    memory.check_host(need, what, fix)
