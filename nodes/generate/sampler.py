"""MIMOSampler: identity + motion renders + scene -> video latents (core LATENT, decodable by VAE Decode)."""

import comfy.model_management as mm
import torch
from comfy_api.latest import io

from ...models import image_ops
from ...models.distributed import window_parallel
from ...models.generate import compiled, memory_modes, pipeline
from ...models.generate.sampler import progress_ticks
from ..runtime import SamplerReporter, cancellable, check_motion_frames, sampler_plan, warn
from ..types import CATEGORY_GENERATE, MIMOIdentity, MIMOModel, MIMOScene


class MIMOSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MIMOSampler",
            display_name="MIMO Sampler",
            category=CATEGORY_GENERATE,
            description="Generates the character performing the motion over the scene: v-prediction DDIM "
                        "(zero terminal SNR) over overlapping context windows, as the official pipeline.",
            inputs=[
                MIMOModel.Input("mimo_model", tooltip="From MIMO Model Loader."),
                MIMOIdentity.Input("identity", tooltip="From MIMO Identity Encode."),
                io.Image.Input("motion", tooltip="The motion frames: SMPL renders with MIMO's vertex colours on black "
                                                 "(one per output frame)."),
                MIMOScene.Input("scene", tooltip="From MIMO Scene Encode: one frame per motion frame, or one for all."),
                io.Int.Input("width", default=784, min=64, max=2048, step=8,
                             tooltip="Working width (multiple of 8). MIMO was trained at 784x784."),
                io.Int.Input("height", default=784, min=64, max=2048, step=8,
                             tooltip="Working height (multiple of 8). MIMO was trained at 784x784."),
                io.Int.Input("seed", default=42, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the initial noise (drawn on the CPU, so the same on every GPU). "
                                     "Ignored when a NOISE input is connected."),
                io.Int.Input("steps", default=25, min=1, max=200, tooltip="Denoising steps (official: 25)."),
                io.Float.Input("cfg", default=3.5, min=1.0, max=20.0, step=0.1, round=0.01,
                               tooltip="Guidance scale (official: 3.5). 1.0 disables guidance and halves the work."),
                io.Int.Input("context_frames", default=24, min=1, max=32,
                             tooltip="Frames the motion module sees at once (official: 24; at most 32)."),
                io.Int.Input("overlap", default=4, min=0, max=31,
                             tooltip="Frames shared by neighbouring windows (official: 4); windows wrap around the end."),
                io.Combo.Input("memory", options=["auto", "fast", "low"], default="auto",
                               tooltip="GPU memory use. fast: both guidance halves in one pass (about 10 GiB at "
                                       "784x784). low: for 8 GB cards, about half as fast (guidance halves one "
                                       "after the other, the other MIMO networks off the GPU while denoising). "
                                       "auto: fast when it fits the free memory, low with --lowvram/--novram."),
                io.String.Input("devices", default="auto", optional=True,
                                tooltip="Where the context windows are computed. auto: ComfyUI's device, as always. "
                                        "A comma list such as 'cuda:0,cuda:1' (or 'cpu,cpu'): one Ray worker per "
                                        "entry, each holding the denoiser once; every step each worker computes "
                                        "its share of the windows and the results are averaged exactly as on one "
                                        "device (same output). Needs 'pip install ray'; a local Ray runtime starts "
                                        "on the first run with two or more devices and is reused. The memory mode "
                                        "is planned for ComfyUI's device and used by every worker."),
                io.Boolean.Input("compile", default=False, optional=True,
                                 tooltip="Compile the denoiser's memory-bound steps with torch.compile (GroupNorm+SiLU "
                                         "with the convolution biases, residual sums with the LayerNorm after them, "
                                         "the GEGLU gate, the reordering into tokens: each fused into one pass, "
                                         "about 30% fewer bytes moved a step). The first run is slower while it compiles "
                                         "(kept on disk for later runs); the output is the same up to float "
                                         "rounding. Needs Triton on an NVIDIA GPU, a C++ compiler on the CPU; if "
                                         "compiling fails the run goes on uncompiled and says why."),
                io.Noise.Input("noise", optional=True,
                               tooltip="Initial noise from a core noise node (e.g. RandomNoise) instead of the seed."),
            ],
            outputs=[io.Latent.Output(display_name="latent",
                                      tooltip="Video latents [frames,4,H/8,W/8]; decode with the core VAE Decode.")],
        )

    @classmethod
    def execute(cls, mimo_model, identity, motion, scene, width, height, seed, steps, cfg, context_frames,
                overlap, memory="auto", devices="auto", compile=False, noise=None) -> io.NodeOutput:
        pipeline.check_size(width, height)
        executor = window_parallel.executor_for(devices, mm.get_torch_device())  # checks the list first
        frames = motion.shape[0]
        on_cpu = mm.get_torch_device().type == "cpu"
        memory_modes.check_host(width=width, height=height, frames=frames, context_frames=context_frames, cfg=cfg,
                                dtype=mimo_model.dtype, on_cpu=on_cpu,
                                block_out_channels=mimo_model.models.denoiser.config.block_out_channels)
        warning = check_motion_frames(motion)
        plan, mode, need = sampler_plan(mimo_model, memory, compile=compile, width=width, height=height,
                                        frames=frames, cfg=cfg, context_frames=context_frames, overlap=overlap)
        models = mimo_model.load(*pipeline.networks_needed(identity, scene, width, height))
        # low: everything else leaves the GPU; fast: other models only as far as the activations need
        room = {"free_bytes": need} if mode == "fast" else {}
        before_denoise = lambda: mimo_model.keep_only("denoiser", "pose_guider", **room)  # noqa: E731
        initial = None
        if noise is not None:
            shape = torch.zeros(frames, 4, height // 8, width // 8)
            initial = noise.generate_noise({"samples": shape}).float()
        reporter = SamplerReporter(progress_ticks(frames, steps, context_frames, overlap))
        with cancellable():
            latents = pipeline.sample(
                models, identity, image_ops.uint8_frames(motion), scene, width, height, steps=steps, cfg=cfg,
                context_frames=context_frames, overlap=overlap, seed=seed, noise=initial, callback=reporter,
                plan=plan, before_denoise=before_denoise, executor=executor,
            )
        if compile and compiled.failure():
            note = warn(f"compile is on but torch.compile failed, so this run was not compiled (same output, "
                        f"uncompiled speed): {compiled.failure()}. Install Triton (NVIDIA) or a C++ compiler (CPU) "
                        "and restart ComfyUI, or turn compile off.")
            warning = warning or note
        return io.NodeOutput({"samples": latents / pipeline.LATENT_SCALE}, ui=warning)
