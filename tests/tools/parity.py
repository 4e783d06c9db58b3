"""Reproduce a recorded run of the official MIMO pipeline.

    python tests/tools/parity.py CASE_DIR [--stages]

Loads the case's weights through the pack's own loading code (the official ``pretrained_weights``
layout), runs our pipeline in fp32 on the CPU with the case's inputs and initial noise, and prints
one JSON line ``{"case", "max_abs", "mean_abs", "seconds"}``. Exit status 0 only when
max_abs <= 1e-3 and mean_abs <= 5e-5. ``--stages`` adds the per-stage differences.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file



def load_pack():
    """The repository as a package (tests/tools/packload.py), however this file was loaded."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_mimo_packload", Path(__file__).with_name("packload.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load_pack()


MAX_ABS, MEAN_ABS = 1e-3, 5e-5


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return (images * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def run_case(case_dir: Path, dtype: torch.dtype = torch.float32, device: str = "cpu", compile: bool = False) -> dict:
    pack = load_pack()
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 on CUDA
    from importlib import import_module

    loading = import_module(f"{pack.__name__}.models.generate.loading")
    pipeline = import_module(f"{pack.__name__}.models.generate.pipeline")
    prep = import_module(f"{pack.__name__}.models.generate.reference_prep")
    sampler = import_module(f"{pack.__name__}.models.generate.sampler")

    case = json.loads((case_dir / "case.json").read_text())
    data = load_file(str(case_dir / "case.safetensors"))
    torch.manual_seed(0)
    start = time.perf_counter()
    models = loading.load_mimo(loading.MIMOFiles.official_layout(case_dir / "weights"), dtype=dtype).to(device)

    width, height = case["width"], case["height"]
    reference = to_uint8(data["ref_image"][0])
    stages: dict[str, list[float]] = {}

    def compare(name, ours, recorded):
        d = (ours.detach().float().cpu().reshape(recorded.shape) - recorded.float()).abs()
        stages[name] = [float(d.max()), float(d.mean())]

    compare("clip_pixel_values", prep.clip_pixel_values(reference), data["clip_pixel_values"])
    identity = pipeline.encode_identity(models, reference, width, height)
    compare("clip_image_embeds", identity.clip_embeds, data["clip_image_embeds"])
    scene = pipeline.encode_scene(models, to_uint8(data["bk_images"]), width, height)
    motion = to_uint8(data["pose_images"])
    pose_fea = pipeline.encode_pose(models.pose_guider, pipeline.motion_tensor(motion, width, height))
    compare("pose_fea", pose_fea.transpose(0, 1).unsqueeze(0), data["pose_fea"])

    noise = data["init_noise"][0].transpose(0, 1).contiguous()  # [1,4,F,h,w] -> [F,4,h,w]
    latents_by_step: list[torch.Tensor] = []

    def keep_latents(progress):
        if progress.latents is not None:
            latents_by_step.append(progress.latents.cpu().clone())

    latents = pipeline.sample(
        models, identity, motion, scene, width, height, steps=case["steps"], cfg=case["guidance_scale"],
        context_frames=case["context_frames"], overlap=case["context_overlap"], noise=noise,
        callback=keep_latents, plan=sampler.SamplerPlan(compile=compile),
    )
    for i, lat in enumerate(latents_by_step):
        key = f"latents_after_step_{i}"
        if key in data:
            compare(key, lat.transpose(0, 1).unsqueeze(0), data[key])
    video = pipeline.decode_latents(models, latents)  # [F,3,H,W]
    seconds = time.perf_counter() - start
    d = (video.transpose(0, 1).unsqueeze(0) - data["video"]).abs()
    return {
        "case": case_dir.name,
        "max_abs": float(d.max()),
        "mean_abs": float(d.mean()),
        "seconds": round(seconds, 3),
        "stages": stages,
        "video": video.transpose(0, 1).unsqueeze(0).float().cpu(),  # [1,3,F,H,W] as recorded
    }


def compile_failure() -> str | None:
    """Why the compiled cores ran uncompiled in this process (None: they did not fail)."""
    from importlib import import_module

    return import_module(f"{load_pack().__name__}.models.generate.compiled").failure()


def passed(result: dict) -> bool:
    return result["max_abs"] <= MAX_ABS and result["mean_abs"] <= MEAN_ABS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case_dir", type=Path)
    parser.add_argument("--stages", action="store_true", help="also print the per-stage differences")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32",
                        help="fp16/bf16: report the error only (the pass bound is for fp32)")
    parser.add_argument("--compile", action="store_true", help="the denoiser's cores through torch.compile")
    args = parser.parse_args(argv)
    if not (args.case_dir / "case.json").is_file():
        print(f"{args.case_dir} is not a parity case folder (no case.json).", file=sys.stderr)
        return 2
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    result = run_case(args.case_dir, dtypes[args.dtype], args.device, compile=args.compile)
    if (args.device, args.dtype) != ("cpu", "fp32"):
        result.update(device=args.device, dtype=args.dtype)
    if args.compile:
        result.update(compiled=compile_failure() is None, compile_failure=compile_failure())
    stages = result.pop("stages")
    result.pop("video")
    if args.stages:
        result["stages"] = stages
    print(json.dumps(result))
    return 0 if args.dtype != "fp32" or passed(result) else 1


if __name__ == "__main__":
    sys.exit(main())
