"""Sampler speed and memory with random weights of the full SD1.5-size MIMO architecture.

    python -m benchmarks.bench_sampler --width 784 --height 784 --frames 24 --steps 25 --dtype fp16 --device cuda
    python -m benchmarks.bench_sampler --steps 4 --runs 784x784x24:fast 784x784x24:low 512x512x24:fast

Run from the repository root. Prints one JSON line (a run; ``--runs``: one a run, all on the same
networks, built once): step_s_median, first_step_s, decode_s, total_s,
s_per_frame_step, peak_gib (CUDA: max allocated; CPU: max resident set of the process), the memory
mode and the sampler plan it chose (``--compile``: also whether it ran compiled). ``--tiny`` uses the
tiny test architecture (scaling runs on a CPU). For comparison, the official pipeline measured
0.892 s/step and 14.1 GiB peak at 784x784, 24 frames, fp16, cfg 3.5 on an H100.
"""

import argparse
import json
import math
import re
import resource
import statistics
import time

import numpy as np
import torch

from . import load_pack
from .bench_kernels import SDPA_BACKENDS, attention_backend


def build_tiny_models(device: torch.device, dtype: torch.dtype):
    from mimo_pack.models.generate.pipeline import MIMOModels
    from mimo_pack.models.generate.tiny import sd_vae, tiny_image_encoder, tiny_networks

    denoiser, reference, pose_guider = tiny_networks(seed=0)
    models = MIMOModels(denoiser, reference, pose_guider, sd_vae(tiny=True), tiny_image_encoder())
    for m in (denoiser, reference, pose_guider, models.vae, models.image_encoder):
        m.eval().requires_grad_(False)
    return models.to(device=device, dtype=dtype)


def full_size_networks():
    """MIMO's networks at the released size with random weights, built on the current default device."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from mimo_pack.models.generate.pipeline import MIMOModels
    from mimo_pack.models.generate.pose_guider import PoseGuider
    from mimo_pack.models.generate.tiny import sd_vae
    from mimo_pack.models.generate.unet import MIMOUNet, UNetConfig

    torch.manual_seed(0)
    cfg = UNetConfig()
    denoiser, reference, pose_guider, vae = MIMOUNet(cfg.denoiser()), MIMOUNet(cfg.reference()), PoseGuider(320), sd_vae()
    clip = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=224, patch_size=14, projection_dim=768))
    models = MIMOModels(denoiser, reference, pose_guider, vae, clip)
    for m in (models.denoiser, models.reference_unet, models.pose_guider, models.vae, models.image_encoder):
        m.eval().requires_grad_(False)
    return models


def build_models(device: torch.device, dtype: torch.dtype):
    with torch.device(device):
        models = full_size_networks()
    return models.to(device=device, dtype=dtype)


def run_spec(text: str) -> tuple[int, int, int, str]:
    """``WIDTHxHEIGHTxFRAMES:MODE`` (e.g. ``784x784x24:fast``) -> (width, height, frames, mode)."""
    match = re.fullmatch(r"(\d+)x(\d+)x(\d+):(auto|fast|low)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHTxFRAMES:MODE (e.g. 784x784x24:fast)")
    return int(match[1]), int(match[2]), int(match[3]), match[4]


def main(argv=None) -> dict | list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=784)
    p.add_argument("--height", type=int, default=784)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--cfg", type=float, default=3.5)
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp16")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--memory", choices=["auto", "fast", "low"], default="auto")
    p.add_argument("--runs", type=run_spec, nargs="+", metavar="WxHxF:MODE",
                   help="several sizes and modes one after the other on the same networks (one process: no "
                        "start-up each), one JSON line each; instead of --width/--height/--frames/--memory")
    p.add_argument("--tiny", action="store_true", help="tiny test architecture instead of the full size")
    p.add_argument("--no-decode", action="store_true", help="skip the VAE decode")
    p.add_argument("--compile", action="store_true",
                   help="the denoiser's memory-bound steps through torch.compile (compiled in the first step)")
    p.add_argument("--profile", action="store_true",
                   help="profile the second step: its kernel time by kind, the largest kernels, and the aten ops "
                        "by input shape with the memory speed each reached (torch.profiler)")
    p.add_argument("--sdpa", nargs="+", choices=SDPA_BACKENDS, default=["default"],
                   help="attention back ends to run each run with, one line each (default: the one PyTorch "
                        "picks); a back end that cannot run these shapes is reported, not fatal")
    args = p.parse_args(argv)
    load_pack()
    from mimo_pack.models.generate.loading import DTYPES

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    models = (build_tiny_models if args.tiny else build_models)(device, dtype)
    runs = args.runs or [(args.width, args.height, args.frames, args.memory)]
    results = []
    for width, height, frames, memory in runs:
        for backend in args.sdpa:
            try:
                with attention_backend(backend):
                    result = run_once(models, args, device, dtype, width, height, frames, memory)
            except RuntimeError as error:  # e.g. "No available kernel" for a forced back end
                if backend == "default":
                    raise
                result = {"width": width, "height": height, "frames": frames, "memory": memory,
                          "failed": f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"}
            if len(args.sdpa) > 1 or backend != "default":
                result["sdpa"] = backend
            results.append(result)
            print(json.dumps(results[-1]), flush=True)
    return results if args.runs or len(args.sdpa) > 1 else results[0]


def run_once(models, args, device, dtype, width: int, height: int, frames: int, memory: str) -> dict:
    from mimo_pack.models.generate import compiled, memory_modes, pipeline

    encoders = (models.reference_unet, models.image_encoder, models.vae)
    for m in encoders:  # back on the device after a low run moved them off
        m.to(device)
    weights = sum(p.numel() * p.element_size() for m in (models.denoiser, models.pose_guider) for p in m.parameters())
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
    plan, mode = memory_modes.plan_sampler(memory, device=device, free_bytes=free, width=width,
                                           height=height, frames=frames, context_frames=24, overlap=4,
                                           cfg=args.cfg, dtype=dtype, weight_bytes=weights)
    plan.compile = args.compile
    if mode == "low" and device.type == "cuda":  # the encoders leave the GPU while denoising, as in ComfyUI
        offload = lambda: [m.to("cpu") for m in encoders]  # noqa: E731
    else:
        offload = None
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (height, height, 3), dtype=np.uint8)
    motion = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    identity = pipeline.encode_identity(models, reference, width, height)
    scene = pipeline.encode_scene(models, None, width, height)
    marks = [time.perf_counter()]

    profiler = StepProfiler(device, torch.empty((), dtype=dtype).element_size()) if args.profile else None

    def on_progress(progress):
        if progress.denoised is not None:
            if device.type == "cuda":
                torch.cuda.synchronize()
            marks.append(time.perf_counter())
            if profiler is not None:
                profiler.after_step(len(marks) - 1)

    latents = pipeline.sample(models, identity, motion, scene, width, height, steps=args.steps,
                              cfg=args.cfg, callback=on_progress, plan=plan, before_denoise=offload)
    t0 = time.perf_counter()
    if not args.no_decode:
        if offload is not None:
            models.vae.to(device)
        pipeline.decode_latents(models, latents)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:  # the process's largest resident set so far (with --runs: of this run and those before)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    end = time.perf_counter()
    steps = [b - a for a, b in zip(marks, marks[1:])]
    result = {
        "width": width, "height": height, "frames": frames, "steps": args.steps,
        "dtype": args.dtype, "device": str(device), "tiny": args.tiny, "memory": mode, "plan": vars(plan),
        "step_s_median": round(statistics.median(steps[1:] or steps), 4),
        "s_per_frame_step": round(statistics.median(steps[1:] or steps) / frames, 6),
        "first_step_s": round(steps[0], 4),
        "decode_s": round(end - t0, 4),
        "total_s": round(end - start, 4),
        "peak_gib": round(peak, 3),
    }
    if profiler is not None:
        result["profile"] = profiler.summary()
    if args.compile:  # did it run compiled (the first step also compiled: see first_step_s)
        from torch._dynamo.utils import counters

        result.update(compiled=compiled.failure() is None, compile_failure=compiled.failure(),
                      # calls into the compiled functions, and what dynamo made of them (graphs, frames)
                      compiled_calls={core.fn.__name__: core.compiled_calls for core in compiled.CORES},
                      dynamo={"unique_graphs": counters["stats"].get("unique_graphs", 0),
                              "frames_ok": counters["frames"].get("ok", 0),
                              "frames_total": counters["frames"].get("total", 0),
                              "graph_breaks": sum(counters["graph_break"].values())})
    return result


# Kernel (or CPU op) name fragments of each kind, the first match wins.
KINDS = (("attention", ("sdpa", "fmha", "flash", "attention")), ("memcpy", ("memcpy", "memset")),
         ("layout", ("nchwtonhwc", "nhwctonchw", "catarray", "copy", "cat", "clone", "contiguous")),
         ("conv", ("fprop", "implicit", "conv", "dgrad", "wgrad")), ("norm", ("norm", "moments")),
         ("gemm", ("gemm", "nvjet", "cutlass", "mm", "linear")),
         ("elementwise", ("elementwise", "kernel", "add", "mul", "silu", "gelu", "sub", "div")))


def kind_of(name: str) -> str:
    low = name.lower()
    return next((kind for kind, parts in KINDS if any(part in low for part in parts)), "other")


class StepProfiler:
    """torch.profiler over one denoising step (the second: the first compiles and fills caches).

    ``summary()`` gives, on CUDA, the kernels' device time by kind and the largest kernels, and for
    every aten op with its input shapes (the largest ``ops``) its own device time, calls and the memory
    speed it reached (``gb_s``: the bytes of its inputs and of an output as large as its largest input,
    at the run's element size, over its time; for the memory-bound ops this says which run far under
    the GPU's bandwidth). On the CPU the ops' own CPU time."""

    def __init__(self, device: torch.device, element_size: int = 2):
        from torch.profiler import ProfilerActivity, profile

        self.cuda = device.type == "cuda"
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        self.prof = profile(activities=activities, record_shapes=True)
        self.element_size = element_size
        self.events = self.ops = None

    def after_step(self, step: int) -> None:
        if step == 1:
            self.prof.start()
        elif step == 2:
            self.prof.stop()
            self.events = self.prof.key_averages()
            self.ops = self.prof.key_averages(group_by_input_shape=True)

    def _own_ms(self, e) -> float:
        if self.cuda:
            return (getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)) / 1e3
        return e.self_cpu_time_total / 1e3

    def _is_kernel(self, e) -> bool:  # a kernel's row (CUDA), or an op's (CPU)
        return "CUDA" in str(getattr(e, "device_type", "")) if self.cuda else True

    def _op_row(self, e) -> dict:
        ms = self._own_ms(e)
        sizes = [math.prod(shape) for shape in (e.input_shapes or []) if shape]
        moved = (sum(sizes) + max(sizes, default=0)) * self.element_size * e.count
        return {"op": e.key, "shapes": [s for s in (e.input_shapes or []) if s][:4], "calls": e.count,
                "ms": round(ms, 2), "gb_s": round(moved / (ms * 1e6), 1) if ms > 0 else None}

    def summary(self, top: int = 15, ops: int = 25) -> dict:
        if self.events is None:
            return {"error": "fewer than 3 steps: nothing profiled"}
        rows = [(e.key, self._own_ms(e), e.count) for e in self.events if self._is_kernel(e)]
        rows = [r for r in rows if r[1] > 0]
        by_kind: dict[str, float] = {}
        for name, ms, _ in rows:
            by_kind[kind_of(name)] = by_kind.get(kind_of(name), 0.0) + ms
        rows.sort(key=lambda r: -r[1])
        op_rows = sorted((e for e in self.ops if e.key.startswith("aten::") and self._own_ms(e) > 0),
                         key=lambda e: -self._own_ms(e))
        return {"step_ms": round(sum(r[1] for r in rows), 1), "device_time": self.cuda,
                "ms_by_kind": {k: round(v, 1) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
                "top": [{"name": n[:100], "ms": round(ms, 2), "calls": c} for n, ms, c in rows[:top]],
                "ops": [self._op_row(e) for e in op_rows[:ops]]}


if __name__ == "__main__":
    main()
