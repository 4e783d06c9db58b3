"""ComfyUI integration of the library models: memory management, progress, cancel, previews."""

import logging
import os
from contextlib import contextmanager

import torch
from torch import nn

import comfy.model_management as mm
import comfy.model_patcher
import comfy.utils
import latent_preview
from comfy.latent_formats import SD15

from ..models.generate.pipeline import MIMOModels
from ..models.generate.sampler import SamplerProgress

log = logging.getLogger("MIMO")

NETWORKS = ("denoiser", "reference_unet", "pose_guider", "vae", "image_encoder")


class _Holder(nn.Module):
    """A plain container, so ModelPatcher can set its bookkeeping attributes on any network."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network


class MIMOHandle:
    """The MIMO_MODEL payload: the library's networks, each behind a ComfyUI ModelPatcher so the
    memory manager can move it to the GPU when a node needs it and evict it when others do."""

    def __init__(self, models: MIMOModels, dtype: torch.dtype):
        self.models = models
        self.dtype = dtype
        load, offload = mm.get_torch_device(), mm.unet_offload_device()
        self.patchers = {
            name: comfy.model_patcher.ModelPatcher(_Holder(getattr(models, name)), load_device=load, offload_device=offload)
            for name in NETWORKS
        }

    def load(self, *names: str) -> MIMOModels:
        mm.load_models_gpu([self.patchers[n] for n in names])
        return self.models


def compute_dtype(precision: str, pick) -> torch.dtype:
    device = mm.get_torch_device()
    dtype = pick(precision, device)
    if device.type == "cpu" and dtype == torch.float16:
        log.warning("fp16 is not supported for computing on the CPU: using fp32.")
        dtype = torch.float32
    return dtype


class SamplerReporter:
    """Progress bar per window (each update is also a cancel point) and a latent preview per step."""

    def __init__(self, steps: int, windows: int):
        self.bar = comfy.utils.ProgressBar(steps * windows)
        self.previewer = latent_preview.get_previewer(mm.get_torch_device(), SD15())

    def __call__(self, progress: SamplerProgress) -> None:
        mm.throw_exception_if_processing_interrupted()
        preview = None
        if self.previewer is not None and progress.denoised is not None:
            x0 = progress.denoised[:1]
            preview = self.previewer.decode_latent_to_preview_image("JPEG", x0)
        self.bar.update_absolute(progress.done, progress.total, preview)


def progress_callback(what: str | None = None):
    """A ``(done, total)`` callback driving a ComfyUI progress bar (a new bar when the total changes);
    every call is also a cancel point."""
    state = {"bar": None, "total": 0}

    def report(done: int, total: int) -> None:
        mm.throw_exception_if_processing_interrupted()
        if state["bar"] is None and what:
            log.info("MIMO: %s ...", what)
        if state["bar"] is None or state["total"] != total:
            state["bar"], state["total"] = comfy.utils.ProgressBar(max(1, total)), total
        state["bar"].update_absolute(min(done, total), max(1, total))

    return report


@contextmanager
def model_step(path: str):
    """Around a library call that loads and frees a model file: ComfyUI evicts other models for it
    first (about 3x the file size), and the freed memory goes back after. Yields the device."""
    device = mm.get_torch_device()
    if device.type != "cpu":
        try:
            size = os.path.getsize(path)
        except OSError:
            size = 0
        mm.free_memory(3 * size + mm.minimum_inference_memory(), device)
    try:
        yield device
    finally:
        mm.soft_empty_cache()


def video_frames(video: torch.Tensor, what: str = "video") -> torch.Tensor:
    """An IMAGE batch as float RGB on the CPU, or a clear error."""
    if not isinstance(video, torch.Tensor) or video.ndim != 4 or video.shape[-1] not in (3, 4):
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"'{what}' must be an IMAGE batch [frames, height, width, 3], got {shape}.")
    if video.shape[0] < 1:
        raise ValueError(f"'{what}' has no frames.")
    return video[..., :3].float().cpu()
