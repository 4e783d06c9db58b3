"""The official pipeline's GPU memory and FLOPs, counted like ours (``footprint.py``): run by
``bench_footprint --official FOLDER`` in its own process, with the official code and its pinned
diffusers on PYTHONPATH. Builds the released architecture (as the official folder's
``bench_official.py`` does) on fake CUDA tensors in fp16 and runs one ``Pose2VideoPipeline`` step and
its frame-by-frame decode; the scheduler arithmetic (branches on real numbers) is replaced by an
identity of the same shapes. Prints one JSON line (the step's FLOPs, attention work, memory-bound
bytes and least time are those of its denoiser forwards).

    python -m benchmarks.footprint_official WIDTH HEIGHT FRAMES CFG
"""

import json
import sys
import types

import numpy as np
import torch
from PIL import Image
from torch._subclasses.fake_tensor import unset_fake_temporarily
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

from . import footprint

SD15_UNET = {
    "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False, "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], "downsample_padding": 1,
    "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4,
    "sample_size": 64, "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
}
MOTION = {
    "use_inflated_groupnorm": True, "unet_use_cross_frame_attention": False, "unet_use_temporal_attention": False,
    "use_motion_module": True, "motion_module_resolutions": [1, 2, 4, 8], "motion_module_mid_block": True,
    "motion_module_decoder_only": False, "motion_module_type": "Vanilla",
    "motion_module_kwargs": {"num_attention_heads": 8, "num_transformer_block": 1,
                             "attention_block_types": ["Temporal_Self", "Temporal_Self"],
                             "temporal_position_encoding": True, "temporal_position_encoding_max_len": 32,
                             "temporal_attention_dim_div": 1},
}
SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "clip_sample": False,
             "steps_offset": 1, "prediction_type": "v_prediction", "rescale_betas_zero_snr": True,
             "timestep_spacing": "trailing"}


class KnownMasks(TorchDispatchMode):
    """The official reference attention picks the unconditional rows with a boolean mask made from
    a Python list; a fake tensor has no values, so the mask's values are kept from its creation and
    the mask indexing becomes the equivalent integer indexing (a static shape)."""

    def __init__(self):
        super().__init__()
        self.values = WeakIdKeyDictionary()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.ops.aten.index.Tensor, torch.ops.aten.index_put_.default, torch.ops.aten.index_put.default):
            indices = [self._rows(i) for i in args[1]]
            args = (args[0], indices, *args[2:])
        out = func(*args, **kwargs)
        if func is torch.ops.aten.lift_fresh.default:
            with unset_fake_temporarily():
                self.values[out] = args[0].clone()
        elif func in (torch.ops.aten._to_copy.default, torch.ops.aten.clone.default) and args[0] in self.values:
            with unset_fake_temporarily():
                self.values[out] = self.values[args[0]].to(kwargs.get("dtype") or self.values[args[0]].dtype)
        return out

    def _rows(self, index):
        if index is None or index not in self.values or index.dtype != torch.bool:
            return index
        with unset_fake_temporarily():
            return self.values[index].nonzero().squeeze(1)


def _on_real_tensors(fn):
    def call(*args, **kwargs):
        with unset_fake_temporarily():
            return fn(*args, **kwargs)
    return call


def main(width: int, height: int, frames: int, cfg: float) -> dict:
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from src.models.pose_guider import PoseGuider
    from src.models.unet_2d_condition import UNet2DConditionModel
    from src.models.unet_3d_edit_bkfill import UNet3DConditionModel
    from src.pipelines.pipeline_pose2vid_long_edit_bkfill_roiclip import Pose2VideoPipeline

    rng = np.random.default_rng(0)
    picture = lambda: Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))  # noqa: E731
    ref, poses, scenes = picture(), [picture() for _ in range(frames)], [picture() for _ in range(frames)]
    with footprint.fake_cuda() as mem, torch.no_grad():
        with footprint.built_in(torch.float16):
            reference = UNet2DConditionModel.from_config(SD15_UNET)
            denoiser = UNet3DConditionModel.from_config(
                dict(SD15_UNET, in_channels=8, mid_block_type="UNetMidBlock3DCrossAttn",
                     down_block_types=["CrossAttnDownBlock3D"] * 3 + ["DownBlock3D"],
                     up_block_types=["UpBlock3D"] + ["CrossAttnUpBlock3D"] * 3), **MOTION)
            guider = PoseGuider(320, conditioning_channels=3, block_out_channels=(16, 32, 96, 256))
            vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                                up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                                sample_size=512)
            clip = CLIPVisionModelWithProjection(CLIPVisionConfig(
                hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                image_size=224, patch_size=14, projection_dim=768))
        weights = mem.now
        scheduler = DDIMScheduler(**SCHEDULER)
        scheduler.step = lambda noise, t, latents, **kw: types.SimpleNamespace(prev_sample=latents + 0 * noise)
        pipe = Pose2VideoPipeline(vae=vae, image_encoder=clip, reference_unet=reference, denoising_unet=denoiser,
                                  pose_guider=guider, scheduler=scheduler)
        type(pipe)._execution_device = property(lambda self: torch.device("cuda"))

        def decode(latents):  # the official frame-by-frame decode, without the numpy copy at the end
            for i in range(latents.shape[2]):
                pipe.vae.decode(latents[:, :, i] / 0.18215).sample
            return np.zeros((1, 3, latents.shape[2], 1, 1), np.float32)

        pipe.decode_latents = decode
        for processor in (pipe.ref_image_processor, pipe.cond_image_processor, pipe.clip_image_processor):
            processor.preprocess = _on_real_tensors(processor.preprocess)  # it branches on pixel values
        step_flops = []
        denoise = denoiser.forward
        attention, traffic = footprint.AttentionWork(), footprint.Traffic()

        def counted(*args, **kwargs):  # the denoiser's forwards of the step: FLOPs, attention, traffic
            with footprint.flop_counter() as flops, attention, traffic:
                out = denoise(*args, **kwargs)
            step_flops.append(flops.get_total_flops())
            return out

        denoiser.forward = counted
        with KnownMasks():
            pipe(ref, poses, scenes, width, height, frames, 1, cfg, generator=torch.manual_seed(0))
        return {"impl": "official", "width": width, "height": height, "frames": frames, "dtype": "float16",
                "cfg": cfg, "weights_gib": footprint.gib(weights), "peak_gib": footprint.gib(mem.peak),
                "tflop_per_step": round(sum(step_flops) / 1e12, 2), "step_traffic": traffic.summary(),
                "attention": attention.summary(),
                "floor_ms": footprint.floors(sum(step_flops), attention, sum(traffic.bytes.values()))}


if __name__ == "__main__":
    w, h, f, c = sys.argv[1:5]
    print(json.dumps(main(int(w), int(h), int(f), float(c))))
