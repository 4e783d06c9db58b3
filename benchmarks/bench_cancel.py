"""The longest stretch of work between two cancel points, per long loop of the pack.

    python -m benchmarks.bench_cancel --size 256 --frames 24 [--full-sampler] [--device cuda]

Every loop runs with what ComfyUI gives it: the progress callback (a cancel point in ComfyUI) and
the cancel points between network layers (``models.cancel.checks_between_layers``, checking on
every module call here so that each gap is measured). Prints one JSON line: for each loop the
longest gap in seconds (``max_gap_s``), the number of cancel points and the run's length. A loop
meets the once-a-second rule when max_gap_s < 1 on that machine; a single operation (one attention
call, one SAM 2 frame in TorchScript-free code is split by its layers) cannot be interrupted.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from . import load_pack


class Gaps:
    def __init__(self):
        self.marks = [time.perf_counter()]

    def __call__(self, *_):
        self.marks.append(time.perf_counter())

    def result(self) -> dict:
        self()
        gaps = np.diff(self.marks)
        return {"max_gap_s": round(float(gaps.max()), 4), "points": len(gaps) - 1,
                "total_s": round(self.marks[-1] - self.marks[0], 3)}


def measure(run) -> dict:
    from mimo_pack.models.cancel import checks_between_layers

    gaps = Gaps()
    with torch.no_grad(), checks_between_layers(gaps, interval=0.0):
        run(gaps)
    return gaps.result()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=256, help="frame / working size in pixels (square)")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--full-sampler", action="store_true", help="SD1.5-size random networks (else the tiny ones)")
    args = p.parse_args(argv)
    load_pack()
    from mimo_pack.benchmarks.bench_rasterizer import body_like_mesh
    from mimo_pack.benchmarks.bench_sampler import build_models, build_tiny_models
    from mimo_pack.models.composite import template as tp
    from mimo_pack.models.decompose import depth, inpaint, tiny_models
    from mimo_pack.models.generate import memory_modes, pipeline
    from mimo_pack.models.render import render_motion
    from mimo_pack.models.render.camera import auto_camera

    device, n, s = torch.device(args.device), args.frames, args.size
    rng = np.random.default_rng(0)
    out = {"size": s, "frames": n, "device": str(device), "full_sampler": args.full_sampler}

    models = (build_models if args.full_sampler else build_tiny_models)(device, torch.float32)
    identity = pipeline.encode_identity(models, rng.integers(0, 256, (s, s, 3), dtype=np.uint8), s, s)
    scene = pipeline.encode_scene(models, None, s, s)
    motion = rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8)
    plan, _ = memory_modes.plan_sampler("auto", device=device, free_bytes=None, width=s, height=s, frames=n,
                                        context_frames=24, overlap=4, cfg=3.5, dtype=torch.float32, weight_bytes=0)
    out["sampler"] = measure(lambda g: pipeline.sample(models, identity, motion, scene, s, s, steps=args.steps,
                                                       cfg=3.5, callback=g, plan=plan))  # the node's plan
    latents = torch.randn(min(n, 8), 4, s // 8, s // 8)
    out["decode"] = measure(lambda g: pipeline.decode_latents(models, latents))
    del models

    verts, faces = body_like_mesh(6890, n)
    camera = auto_camera(verts, s, s)
    colours = torch.rand(verts.shape[1], 3)
    out["rasterize"] = measure(lambda g: render_motion(verts, faces, colours, s, s, camera=camera, progress=g,
                                                       device=device))

    frames = torch.rand(n, s, s, 3)
    masks = torch.zeros(n, s, s)
    masks[:, s // 4: 3 * s // 4, s // 3: 2 * s // 3] = 1
    out["inpaint_median"] = measure(lambda g: inpaint.inpaint_scene(frames, masks, method="median", progress=g))

    with tempfile.TemporaryDirectory() as tmp:
        video = (frames.numpy() * 255).astype(np.uint8)
        tp.write_template(Path(tmp) / "t", video, video, video, 30)
        out["template_read"] = measure(lambda g: tp.load_template(Path(tmp) / "t", progress=g))
        weights = tiny_models.write_tiny_depth_anything(Path(tmp) / "da", layouts=("safetensors",))
        out["depth_tiny"] = measure(lambda g: depth.estimate_depth(frames, weights["safetensors"], input_size=518,
                                                                   chunk=4, device=device, progress=g))
    out["worst_gap_s"] = max(v["max_gap_s"] for v in out.values() if isinstance(v, dict))
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
