"""The official pipeline on a parity case, in a chosen dtype and device: run by ``precision_bound`` in
its own process, with the official code and its pinned diffusers on PYTHONPATH. Loads the case's
weights the way the official entry points do (``from_pretrained_2d`` + the ``.pth`` files), feeds the
case's pictures as PIL images and its initial noise, and saves the video [1,3,F,H,W] (float32); the
JSON line it prints has the video's and the intermediates' distance from the recorded fp32 run.

    python -m benchmarks.official_case CASE_DIR fp32|fp16 OUT.safetensors [--device cuda]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionModelWithProjection

from src.models.pose_guider import PoseGuider
from src.models.unet_2d_condition import UNet2DConditionModel
from src.models.unet_3d_edit_bkfill import UNet3DConditionModel
from src.pipelines.pipeline_pose2vid_long_edit_bkfill_roiclip import Pose2VideoPipeline

DTYPES = {"fp32": torch.float32, "fp16": torch.float16}  # the official code fails in bf16


def pictures(images: torch.Tensor) -> list:
    """[F,H,W,3] in 0..1 (exactly uint8/255) -> PIL images, as the official entry points pass them."""
    array = (images.numpy() * 255).round().clip(0, 255).astype(np.uint8)
    return [Image.fromarray(a) for a in array]


def build(weights: Path, case: dict, device: str, dtype: torch.dtype) -> Pose2VideoPipeline:
    base = weights / "stable-diffusion-v1-5"
    reference = UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    denoiser = UNet3DConditionModel.from_pretrained_2d(base, weights / "motion_module.pth", subfolder="unet",
                                                       unet_additional_kwargs=case["unet_additional_kwargs"])
    guider = case["pose_guider"]
    pose_guider = PoseGuider(guider["conditioning_embedding_channels"], conditioning_channels=3,
                             block_out_channels=tuple(guider["block_out_channels"]))
    def tensors(name: str) -> dict:  # a state dict only: a model file must never run code
        return torch.load(weights / name, map_location="cpu", weights_only=True)

    denoiser.load_state_dict(tensors("denoising_unet.pth"), strict=False)
    reference.load_state_dict(tensors("reference_unet.pth"))
    pose_guider.load_state_dict(tensors("pose_guider.pth"))
    pipe = Pose2VideoPipeline(vae=AutoencoderKL.from_pretrained(weights / "sd-vae-ft-mse"),
                              image_encoder=CLIPVisionModelWithProjection.from_pretrained(weights / "image_encoder"),
                              reference_unet=reference, denoising_unet=denoiser, pose_guider=pose_guider,
                              scheduler=DDIMScheduler(**case["scheduler"]))
    return pipe.to(device, dtype=dtype)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("case_dir", type=Path)
    p.add_argument("dtype", choices=sorted(DTYPES))
    p.add_argument("out", type=Path)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 on CUDA
    case = json.loads((args.case_dir / "case.json").read_text())
    data = load_file(str(args.case_dir / "case.safetensors"))
    start = time.perf_counter()
    pipe = build(args.case_dir / "weights", case, args.device, DTYPES[args.dtype])
    noise = data["init_noise"]
    # the recorded starting latents in place of the pipeline's own draw (same for every dtype)
    pipe.prepare_latents = lambda *a, **k: noise.to(args.device, DTYPES[args.dtype])
    # intermediates against the recorded (fp32) ones, named as tests/tools/parity.py names ours
    stages = {}

    def compare(name, value):
        recorded = data[name]
        d = (value.detach().float().cpu().reshape(recorded.shape) - recorded).abs()
        stages[name] = [float(d.max()), float(d.mean())]

    def after_step(i, t, latents):  # the pipeline's own ``i`` is its inner loop's: count the calls here
        compare(f"latents_after_step_{sum(k.startswith('latents_after') for k in stages)}", latents)

    pipe.image_encoder.register_forward_hook(lambda m, i, out: compare("clip_image_embeds", out.image_embeds))
    pipe.pose_guider.register_forward_hook(lambda m, i, out: compare("pose_fea", out))
    with torch.no_grad():
        video = pipe(pictures(data["ref_image"])[0], pictures(data["pose_images"]), pictures(data["bk_images"]),
                     case["width"], case["height"], case["frames"], case["steps"], case["guidance_scale"],
                     eta=case["eta"], context_frames=case["context_frames"], context_stride=case["context_stride"],
                     context_overlap=case["context_overlap"],
                     callback=after_step).videos
    save_file({"video": video.float().cpu().contiguous()}, str(args.out))
    recorded = (video.float().cpu() - data["video"]).abs()
    print(json.dumps({"impl": "official", "case": args.case_dir.name, "dtype": args.dtype, "device": args.device,
                      "vs_recorded_max_abs": float(recorded.max()), "vs_recorded_mean_abs": float(recorded.mean()),
                      "seconds": round(time.perf_counter() - start, 2), "stages": stages}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
