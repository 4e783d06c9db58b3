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
from comfy_api.latest import ui

from ..models import image_ops
from ..models import memory
from ..models.cancel import checks_between_layers

from ..models.generate import memory_modes
from ..models.generate.pipeline import MIMOModels
from ..models.generate.sampler import SamplerPlan, SamplerProgress

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

    def load(self, *names: str, memory_required: int = 0) -> MIMOModels:
        mm.load_models_gpu([self.patchers[n] for n in names], memory_required=memory_required)
        return self.models

    def keep_only(self, *names: str, free_bytes: float = 1e30) -> None:
        """Before denoising: other models (ours and ComfyUI's) leave the GPU until ``free_bytes`` are
        free (low-VRAM mode: all of them; fast mode: as many as its activations need)."""
        device = mm.get_torch_device()
        if device.type == "cpu":
            return
        keep = [lm for lm in mm.current_loaded_models if lm.model in [self.patchers[n] for n in names]]
        mm.free_memory(free_bytes, device, keep_loaded=keep)

    def bytes_of(self, *names: str) -> int:
        return sum(p.numel() * p.element_size() for n in names for p in getattr(self.models, n).parameters())


def sampler_plan(handle: MIMOHandle, memory: str, compile: bool = False, **call) -> tuple[SamplerPlan, str, int]:
    """The library's memory plan for one sampler call, from ComfyUI's view of the device: what is
    free plus what the models it could evict hold; --lowvram / --novram force the low mode; ``compile``:
    the plan's torch.compile switch. Returns (plan, mode used, bytes the denoising needs beyond its weights)."""
    device = mm.get_torch_device()
    free = None
    if device.type != "cpu":
        free = mm.get_free_memory(device) + sum(lm.model_loaded_memory() for lm in mm.current_loaded_models
                                                if lm.device == device)
    forced = mm.vram_state in (mm.VRAMState.LOW_VRAM, mm.VRAMState.NO_VRAM)
    plan, used = memory_modes.plan_sampler(memory, device=device, free_bytes=free, dtype=handle.dtype,
                                           weight_bytes=handle.bytes_of("denoiser", "pose_guider"),
                                           force_low=forced, **call)
    plan.compile = bool(compile)
    log.info("MIMO Sampler: %s memory mode (%s).", used, plan)
    need = memory_modes.denoising_bytes(plan, used, dtype=handle.dtype,
                                        **{k: v for k, v in call.items() if k != "overlap"})
    return plan, used, need


class SamplerReporter:
    """Progress bar per window (each update is also a cancel point) and a latent preview per step."""

    def __init__(self, total: int):
        self.bar = comfy.utils.ProgressBar(total)
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


def warn(text: str) -> ui.PreviewText:
    """A warning in the log and on the running node in the UI (progress text); returns the same text
    as the node's ``ui`` output, so it is also in the prompt's history."""
    log.warning("MIMO: %s", text)
    try:
        from comfy_execution.utils import get_executing_context
        from server import PromptServer

        context = get_executing_context()
        if context is not None and PromptServer.instance is not None:
            PromptServer.instance.send_progress_text(f"Warning: {text}", context.node_id)
    except Exception as e:  # no server (scripts) or an older ComfyUI: the log and the output still say it
        log.debug("MIMO: the warning could not be shown in the UI (%s).", e)
    return ui.PreviewText(f"Warning: {text}")


def check_motion_frames(motion, what: str = "motion") -> ui.PreviewText | None:
    """Motion renders with no body visible: refused when every frame is empty, a warning naming the
    frames (``ui`` output) when some are."""
    empty = image_ops.empty_frames(motion)
    n = motion.shape[0]
    if len(empty) == n:
        raise ValueError(f"The {what} frames are all black: no body is visible in any of the {n} frames, so "
                         "there is nothing to animate. Check MIMO Rasterize Motion's camera (distance, yaw, "
                         "elevation, 'auto' framing) and that its 'motion' output (not the silhouette) is connected.")
    if empty:
        return warn(f"{len(empty)} of the {n} {what} frames are black (no body visible): frames "
                    f"{image_ops.frame_ranges(empty)}. The character is not guided there; check the camera "
                    "framing or trim the motion.")
    return None


def cancellable():
    """Cancel points between the layers of every network forward run inside the block (at most every
    0.1 s): Cancel in ComfyUI stops a long forward within a second."""
    return checks_between_layers(mm.throw_exception_if_processing_interrupted)


def check_device_memory(need: int, what: str, fix: str) -> None:
    """On a GPU: refuse when ``need`` bytes do not fit what is free plus what ComfyUI can evict."""
    device = mm.get_torch_device()
    if device.type == "cpu":
        return
    free = mm.get_free_memory(device) + sum(lm.model_loaded_memory() for lm in mm.current_loaded_models
                                            if lm.device == device)
    memory.check_fits(need, free, what, fix, where=f"memory on {device}", headroom=0.95)


@contextmanager
def model_step(path: str, what: str = "this step"):
    """Around a library call that loads and frees a model file: refused when the GPU cannot hold it
    (about 3x the file size, weights and activations), else ComfyUI evicts other models for it first,
    and the freed memory goes back after. Network forwards inside are cancel points. Yields the device."""
    device = mm.get_torch_device()
    if device.type != "cpu":
        try:
            size = os.path.getsize(path)
        except OSError:
            size = 0
        need = 3 * size + mm.minimum_inference_memory()
        check_device_memory(need, f"{what} with {os.path.basename(path)}",
                            "choose a smaller model file (e.g. SAM 2 tiny/small, Depth Anything vits), close "
                            "other GPU programs, or run ComfyUI with --lowvram.")
        mm.free_memory(need, device)
    try:
        with cancellable():
            yield device
    finally:
        mm.soft_empty_cache()
