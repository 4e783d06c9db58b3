"""MIMOModelLoader: the four MIMO files + VAE + CLIP image encoder -> MIMO_MODEL."""

from pathlib import Path

import comfy.model_management as mm
from comfy_api.latest import io

from ...models.generate.image_encoder import image_encoder_from_state_dict
from ...models.generate.loading import MIMOFiles, load_mimo, pick_dtype
from ...models.generate.vae import vae_from_state_dict
from ..folders import NONE, file_options, resolve
from ..runtime import MIMOHandle
from ..types import CATEGORY_MODEL, MIMOModel

SLOTS = [
    ("denoising_unet", "Denoising 3D UNet (denoising_unet.pth). It may also hold the motion-module weights."),
    ("reference_unet", "ReferenceNet (reference_unet.pth): reads the character's appearance."),
    ("pose_guider", "Pose guider (pose_guider.pth): encodes the rendered motion frames."),
    ("motion_module", "Temporal motion module (motion_module.pth). 'none' only if denoising_unet already contains it."),
]


def _combo(slot: str, tip: str) -> io.Combo.Input:
    options = [o for o in file_options("mimo", with_none=slot == "motion_module") if not o.endswith(".npy")]
    standard = [o for o in options if Path(o).name.startswith(slot)]
    return io.Combo.Input(slot, options=options, default=standard[0] if standard else options[0],
                          tooltip=f"{tip} Files from ComfyUI/models/mimo.")


class MIMOModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MIMOModelLoader",
            display_name="MIMO Model Loader",
            category=CATEGORY_MODEL,
            description="Loads MIMO's released networks (Alibaba, 2025) with the SD1.5 VAE and the "
                        "sd-image-variations CLIP image encoder.",
            inputs=[
                *[_combo(slot, tip) for slot, tip in SLOTS],
                io.Combo.Input("vae_name", options=file_options("vae", with_none=True),
                               tooltip="sd-vae-ft-mse from ComfyUI/models/vae (a single file, or the "
                                       "diffusion_pytorch_model.safetensors of its folder). Ignored when a VAE is connected."),
                io.Combo.Input("image_encoder_name", options=file_options("clip_vision", with_none=True),
                               tooltip="The sd-image-variations image encoder (CLIP ViT-L/14 with projection) from "
                                       "ComfyUI/models/clip_vision. Ignored when a CLIP vision model is connected."),
                io.Combo.Input("precision", options=["auto", "fp32", "fp16", "bf16"], default="auto",
                               tooltip="Weights and compute precision. auto: fp16 on a GPU, as the official "
                                       "release runs; fp32 on the CPU. bf16 is as fast but 7-8x farther "
                                       "from the fp32 result than fp16 (fewer mantissa bits)."),
                io.Vae.Input("vae", optional=True,
                             tooltip="A VAE already loaded with the core Load VAE node (must be SD1.5's, e.g. sd-vae-ft-mse)."),
                io.ClipVision.Input("clip_vision", optional=True,
                                    tooltip="A CLIP vision model loaded with the core Load CLIP Vision node "
                                            "(must be the sd-image-variations ViT-L/14 with projection)."),
            ],
            outputs=[MIMOModel.Output(display_name="mimo_model",
                                                   tooltip="The MIMO networks, managed by ComfyUI's memory manager.")],
        )

    @classmethod
    def validate_inputs(cls, denoising_unet, reference_unet, pose_guider, motion_module, vae_name,
                        image_encoder_name) -> bool:
        # Naming the file inputs here skips ComfyUI's "value not in list" check: a missing file is
        # reported at run time with the folders searched, which says more.
        return True

    @classmethod
    def execute(cls, denoising_unet, reference_unet, pose_guider, motion_module, vae_name, image_encoder_name,
                precision, vae=None, clip_vision=None) -> io.NodeOutput:
        files = MIMOFiles(
            denoising_unet=Path(resolve("mimo", denoising_unet, "denoising_unet")),
            reference_unet=Path(resolve("mimo", reference_unet, "reference_unet")),
            pose_guider=Path(resolve("mimo", pose_guider, "pose_guider")),
            motion_module=None if motion_module == NONE else Path(resolve("mimo", motion_module, "motion_module")),
        )
        vae_module = vae_from_state_dict(vae.get_sd(), name="the connected VAE") if vae is not None else None
        if vae_module is None:
            files.vae = Path(resolve("vae", vae_name, "VAE"))
        encoder = None
        if clip_vision is not None:
            encoder = image_encoder_from_state_dict(clip_vision.get_sd(), name="the connected CLIP vision model")
        else:
            files.image_encoder = Path(resolve("clip_vision", image_encoder_name, "Image encoder"))
        dtype = pick_dtype(precision, mm.get_torch_device())
        models = load_mimo(files, vae=vae_module, image_encoder=encoder, device="cpu", dtype=dtype)
        return io.NodeOutput(MIMOHandle(models, dtype))
