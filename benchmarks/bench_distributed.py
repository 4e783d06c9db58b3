"""Window-parallel sampler scaling: time per denoising step with 1, 2, 4 Ray workers against the
single-device loop, and what the workers cost in communication per step.

    python -m benchmarks.bench_distributed                                   # CPU workers, tiny weights
    python -m benchmarks.bench_distributed --devices cuda:0,cuda:1 --full --width 512 --height 512 --dtype fp16

For every worker count and every windows-per-worker value, the video has ``workers x windows``
context windows (``context_frames`` 8, overlap 2 by default: 6 new frames per window), so each
worker always gets the same share. One JSON line each: local_s_per_step (the single-device loop,
same threads), parallel_s_per_step, speedup, overhead_ms_per_step (a step's wall time beyond its
slowest worker's compute: transfer, (de)serialisation, scheduling; median), sent/received bytes per
step (window latents out, predictions back), what went once (model, video: K/V, motion, scene) and
bit_identical (torch.equal with the local result).

CPU workers run ``--threads`` torch threads each (default 1, and the local loop the same), so on a
machine with fewer cores than workers they share cores: the speedup then says nothing and the
overhead figures are what to read. Workers on CUDA devices run with torch's default threads.
Intel MKL runs in its reproducible mode here and in the workers (``MKL_CBWR=AUTO,STRICT`` unless set):
without it MKL may round the same CPU product differently in two processes (README, "Several GPUs").
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")  # before torch makes its first MKL call

import numpy as np  # noqa: E402
import torch  # noqa: E402

from . import load_pack


def networks(full: bool, device: str, dtype: torch.dtype):
    from mimo_pack.models.generate.tiny import tiny_networks
    from mimo_pack.models.generate.unet import UNetConfig

    if full:
        denoiser, reference, guider = tiny_networks(seed=0, config=UNetConfig())
    else:
        denoiser, reference, guider = tiny_networks(seed=0)
    return [m.eval().requires_grad_(False).to(device, dtype) for m in (denoiser, reference, guider)]


def video(nets, frames: int, width: int, height: int, seed: int = 0):
    from mimo_pack.models.generate import sampler as S

    denoiser, reference, guider = nets
    device, dtype = denoiser.conv_in.weight.device, denoiser.dtype
    g = torch.Generator().manual_seed(seed)
    h, w = height // 8, width // 8
    clip = torch.randn(1, denoiser.config.cross_attention_dim, generator=g)
    record = {}
    with torch.no_grad():
        reference(torch.randn(1, 4, h, w, generator=g).to(device, dtype), 0,
                  clip.reshape(1, 1, -1).to(device, dtype), record=record)
    motion = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8))
    return dict(kv=S.project_reference_tokens(denoiser, {k: v.cpu() for k, v in record.items()}), clip=clip,
                motion=motion, scene=torch.randn(frames, 4, h, w, generator=g),
                noise=torch.randn(frames, 4, h, w, generator=g))


def timed_run(nets, v, args, executor=None):
    """(latents, seconds per step after the first)."""
    from mimo_pack.models.generate import sampler as S

    marks = []

    def tick(p):
        if p.window == p.windows - 1:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

    start = time.perf_counter()
    out = S.denoise(nets[0], v["kv"], v["clip"], S.PoseFeatures(nets[2], v["motion"]), v["scene"], v["noise"],
                    steps=args.steps, cfg=args.cfg, context_frames=args.context_frames, overlap=args.overlap,
                    callback=tick, executor=executor)
    steps = np.diff([start] + marks)
    return out, float(np.median(steps[1:] if len(steps) > 1 else steps))


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--windows-per-worker", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--devices", default="cpu", help="worker devices, used round robin (e.g. cuda:0,cuda:1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per CPU worker and for the local loop")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--context-frames", type=int, default=8)
    p.add_argument("--overlap", type=int, default=2)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--cfg", type=float, default=3.5)
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--full", action="store_true", help="SD1.5-size random weights instead of the tiny ones")
    args = p.parse_args(argv)
    load_pack()
    import ray

    from mimo_pack.models.distributed.window_parallel import WindowParallel

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    devices = [d.strip() for d in args.devices.split(",")]
    cpu = devices[0] == "cpu"
    if cpu:
        torch.set_num_threads(args.threads)
    nets = networks(args.full, devices[0], dtype)
    ray.init(address="local", num_cpus=max(args.workers), include_dashboard=False, configure_logging=False)
    stride = args.context_frames - args.overlap
    results = []
    for workers in args.workers:
        executor = WindowParallel([devices[i % len(devices)] for i in range(workers)],
                                  threads=args.threads if cpu else None)
        for per in args.windows_per_worker:
            windows = workers * per
            frames = windows * stride if windows > 1 else args.context_frames
            v = video(nets, frames, args.width, args.height)
            local, local_s = timed_run(nets, v, args)
            out, parallel_s = timed_run(nets, v, args, executor)
            stats = executor.stats[1:] or executor.stats
            row = {
                "workers": workers, "devices": executor.devices, "windows": windows, "windows_per_worker": per,
                "frames": frames, "size": f"{args.width}x{args.height}", "weights": "full" if args.full else "tiny",
                "dtype": args.dtype, "cfg": args.cfg, "threads_per_worker": args.threads if cpu else None,
                "local_s_per_step": round(local_s, 4), "parallel_s_per_step": round(parallel_s, 4),
                "speedup": round(local_s / parallel_s, 3),
                "worker_compute_s_per_step": round(statistics.median(max(s.worker_s) for s in stats), 4),
                "overhead_ms_per_step": round(1000 * statistics.median(s.overhead_s for s in stats), 2),
                "overhead_ms_per_window": round(1000 * statistics.median(s.overhead_s for s in stats) / windows, 2),
                "sent_bytes_per_step": stats[0].sent_bytes, "received_bytes_per_step": stats[0].received_bytes,
                "video_bytes_once": executor.video_bytes, "model_bytes_once": executor.model_bytes,
                "bit_identical": bool(torch.equal(out, local)),
            }
            results.append(row)
            print(json.dumps(row), flush=True)
        executor.shutdown()
    ray.shutdown()
    return results


if __name__ == "__main__":
    main()
