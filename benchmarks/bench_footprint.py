"""GPU memory and FLOPs of our sampler per memory mode, counted on any machine (no GPU needed).

    python -m benchmarks.bench_footprint --width 784 --height 784 --frames 24 --memory fast
    python -m benchmarks.bench_footprint --official ../shared/official_mimo   # the official code too

Runs what ``bench_sampler`` runs (full-size random networks, all on the GPU; low mode moves the
encoders off it before denoising) on fake CUDA tensors, one denoising step, and prints one JSON line:
``weights_gib`` (the networks), ``encode_peak_gib`` (identity and scene encoding), ``step_peak_gib``
(one step of every window), ``peak_gib`` (the larger), ``tflop_per_step``, the plan, what attention
computes (``attention``: exponentials, FLOPs at the head width and at the kernel's 64-wide tile), the
bytes the memory-bound ops move (``later_step_traffic``) and from these a step's least time on an H100
SXM and an H200 (``floor_ms``: every kernel at its ceiling, see ``footprint.floor_ms``). ``--free-gib``
is the free memory the planner is told (default 80: an H100). See ``footprint.py`` for what is counted.
With ``--official`` the official pipeline's step is counted the same way (``footprint_official``, in
its own process with its pinned libraries) and a last line gives the ratios.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from . import ROOT, footprint, load_pack, official_lib

TOP = int(os.environ.get("MIMO_TRAFFIC_TOP", "0"))  # >0: the largest op kinds by bytes too
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def _off_device(module: torch.nn.Module) -> None:
    """What ``module.to('cpu')`` does to GPU memory (fake parameters cannot be moved): they leave it."""
    for m in module.modules():
        for name, p in m._parameters.items():
            if p is not None:
                m._parameters[name] = torch.nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=False)


def ours(width: int, height: int, frames: int, memory: str, dtype: torch.dtype, cfg: float, free_gib: float,
         context_frames: int = 24, overlap: int = 4, compile: bool = False) -> dict:
    load_pack()
    from mimo_pack.models.generate import compiled, memory_modes, pipeline, sampler

    from .bench_sampler import full_size_networks

    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (height, height, 3), dtype=np.uint8)
    motion = torch.from_numpy(rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8))
    with footprint.fake_cuda() as mem, torch.no_grad():
        with footprint.built_in(dtype):
            models = full_size_networks()
        weights = mem.now
        identity = pipeline.encode_identity(models, reference, width, height)
        scene = pipeline.encode_scene(models, None, width, height)
        encode_peak = mem.peak
        denoiser_bytes = sum(p.numel() * p.element_size() for m in (models.denoiser, models.pose_guider)
                             for p in m.parameters())
        plan, mode = memory_modes.plan_sampler(
            memory, device=torch.device("cuda"), free_bytes=int(free_gib * footprint.GIB), width=width,
            height=height, frames=frames, context_frames=context_frames, overlap=overlap, cfg=cfg, dtype=dtype,
            weight_bytes=denoiser_bytes)
        if mode == "low":
            for m in (models.reference_unet, models.image_encoder, models.vae):
                _off_device(m)
        plan.compile = compile
        mem.reset_peak()
        resident = mem.now
        step = _stepper(sampler, models, identity, scene, motion, plan, cfg, context_frames, overlap)
        traffic = footprint.Traffic()
        # compiled cores (plan.compile) run as written, counted as the one kernel torch.compile makes of each
        with mock.patch.object(compiled.CompiledCore, "__call__", lambda core, *args: traffic.fused(core.fn, *args)):
            with footprint.flop_counter() as flops, footprint.Transfers() as first, footprint.AttentionWork() as attention:
                step()
            with footprint.Transfers() as later, traffic:  # each later step (caches filled)
                step()
        return {"impl": "ours", "width": width, "height": height, "frames": frames, "memory": mode, "compile": compile,
                "dtype": str(dtype).replace("torch.", ""), "cfg": cfg, "plan": vars(plan),
                "weights_gib": footprint.gib(weights), "encode_peak_gib": footprint.gib(encode_peak),
                "step_peak_gib": footprint.gib(mem.peak), "denoiser_weights_gib": footprint.gib(denoiser_bytes),
                "step_activations_gib": footprint.gib(mem.peak - resident),
                "peak_gib": footprint.gib(max(encode_peak, mem.peak)),
                "tflop_per_step": round(flops.get_total_flops() / 1e12, 2), "first_step_transfers": first.summary(), "later_step_transfers": later.summary(),
                "later_step_traffic": traffic.summary(top=TOP), "attention": attention.summary(),
                "floor_ms": footprint.floors(flops.get_total_flops(), attention, sum(traffic.bytes.values()))}


def _stepper(sampler, models, identity, scene, motion, plan, cfg, context_frames, overlap):
    """``sampler.denoise``'s set-up, and a function running one of its steps: the window groups
    through its own ``_local_groups`` and the accumulation; the scheduler step (a few latent-sized
    tensors) is left out, as its branches need real numbers."""
    frames, (h, w) = motion.shape[0], (motion.shape[1] // 8, motion.shape[2] // 8)
    kv = sampler.project_reference_tokens(models.denoiser, identity.tokens)
    pose = sampler.PoseFeatures(models.pose_guider, motion, cache_bytes=plan.pose_cache_bytes)
    predict = sampler.WindowPredictor(models.denoiser, kv, identity.clip_embeds, pose, scene.latents, cfg,
                                      sequential_guidance=plan.sequential_guidance)
    state = torch.device("cuda") if plan.state_on_device else torch.device("cpu")
    windows = sampler.context_windows(frames, context_frames, overlap)
    indices = [torch.tensor(i, device=state) for i in windows]
    latents = torch.zeros(frames, 4, h, w, device=state)
    prediction = torch.zeros_like(latents)
    models.denoiser.set_row_chunk(plan.row_chunk, plan.ff_tokens)
    models.denoiser.set_compiled(plan.compile)
    groups = sampler.window_groups(windows, plan.windows_per_forward)
    t = torch.tensor(999, device=state)

    def step():
        for _, chosen, vs in sampler._local_groups(predict, sampler.make_scheduler(), latents, indices, groups, t):
            for index, v in zip(chosen, vs):
                prediction.index_add_(0, index, v.to(state))
    return step


def official(folder: Path, width: int, height: int, frames: int, cfg: float) -> dict:
    lib = official_lib(folder)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(lib), str(folder.resolve()), str(ROOT)]))
    out = subprocess.run([sys.executable, "-m", "benchmarks.footprint_official", str(width), str(height),
                          str(frames), str(cfg)], cwd=folder.resolve(), env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"footprint_official failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=784)
    p.add_argument("--height", type=int, default=784)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--memory", choices=["auto", "fast", "low"], nargs="+", default=["fast", "low"])
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp16")
    p.add_argument("--cfg", type=float, default=3.5)
    p.add_argument("--free-gib", type=float, default=80.0)
    p.add_argument("--compile", action="store_true",
                   help="the sampler's compile option: each compiled function counted as one fused kernel")
    p.add_argument("--official", type=Path, default=None,
                   help="the official pipeline's folder (e.g. ../shared/official_mimo)")
    args = p.parse_args(argv)
    results = []
    for mode in args.memory:
        results.append(ours(args.width, args.height, args.frames, mode, DTYPES[args.dtype], args.cfg, args.free_gib,
                            compile=args.compile))
        print(json.dumps(results[-1]), flush=True)
    if args.official is not None:
        theirs = official(args.official, args.width, args.height, args.frames, args.cfg)
        print(json.dumps(theirs), flush=True)
        for r in results:
            print(json.dumps({"check": "footprint_vs_official", "memory": r["memory"], "frames": args.frames,
                              "width": args.width, "peak_ratio": round(r["peak_gib"] / theirs["peak_gib"], 3),
                              "flop_ratio": round(r["tflop_per_step"] / theirs["tflop_per_step"], 3),
                              "traffic_ratio": round(r["later_step_traffic"]["total_gib"] / theirs["step_traffic"]["total_gib"], 3),
                              "floor_ratio": {gpu: round(r["floor_ms"][gpu]["total"] / theirs["floor_ms"][gpu]["total"], 3)
                                              for gpu in r["floor_ms"]}}), flush=True)
        results.append(theirs)
    return results


if __name__ == "__main__":
    main()
