"""MIMOCanonicalRepose: the character re-rendered in a canonical A-pose (the paper's canonical
appearance transfer) before MIMO Identity Encode."""

import logging

import comfy.model_management as mm
import torch
from comfy_api.latest import io

from ...models import image_ops
from ...models.generate.repose import a_pose_render, repose
from .encode import prepared_reference, size_inputs
from ..render import palette_input, vertex_colours
from ..runtime import cancellable
from ..types import CATEGORY_GENERATE, MIMOBody, MIMOModel

log = logging.getLogger("MIMO")


class MIMOCanonicalRepose(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MIMOCanonicalRepose",
            display_name="MIMO Canonical Repose",
            category=CATEGORY_GENERATE,
            description="Turns the character into a standard A-pose by driving MIMO with one A-pose body render on "
                        "white (the paper's canonical appearance transfer; the official release skipped it). "
                        "Connect the result to MIMO Identity Encode (without a mask: it is already on white).",
            inputs=[
                MIMOModel.Input("mimo_model", tooltip="From MIMO Model Loader."),
                io.Image.Input("reference", tooltip="The character picture (the first image of a batch is used)."),
                MIMOBody.Input("body", tooltip="The body rendered in the A-pose (the demo body or an SMPL file)."),
                *size_inputs(),
                io.Boolean.Input("enabled", default=True,
                                 tooltip="Off: the reference passes through unchanged (the official behaviour)."),
                io.Int.Input("seed", default=42, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the single generated frame."),
                io.Int.Input("steps", default=25, min=1, max=200, tooltip="Denoising steps."),
                io.Float.Input("cfg", default=3.5, min=1.0, max=20.0, step=0.1, round=0.01, tooltip="Guidance scale."),
                io.Float.Input("arm_angle", default=45.0, min=0.0, max=90.0, step=1.0, round=0.1,
                               tooltip="Degrees the arms are lowered from the T-pose (45 = A-pose)."),
                palette_input("Per-vertex colours of the A-pose render; use the same as MIMO Rasterize Motion."),
                io.Mask.Input("mask", optional=True,
                              tooltip="The character's matte (1 = character), as for MIMO Identity Encode."),
            ],
            outputs=[io.Image.Output(display_name="reposed", tooltip="The character in the A-pose, on white."),
                     io.Image.Output(display_name="a_pose_render", tooltip="The body render that drove it.")],
        )

    @classmethod
    def execute(cls, mimo_model, reference, body, width, height, enabled, seed, steps, cfg, arm_angle, palette,
                mask=None) -> io.NodeOutput:
        if not enabled:
            return io.NodeOutput(reference, torch.zeros(1, height, width, 3))
        prepared = prepared_reference(reference, mask)
        device = mm.get_torch_device()
        body = body.to(device)
        drive = a_pose_render(body, vertex_colours(palette, body), width, height, arm_angle, device)
        models = mimo_model.load("image_encoder", "vae", "reference_unet", "denoiser", "pose_guider")
        with cancellable():  # cancel points between the networks' layers
            out = repose(models, prepared, drive, width, height, steps=steps, cfg=cfg, seed=seed)
        return io.NodeOutput(image_ops.to_image(out)[None], image_ops.to_image(drive))
