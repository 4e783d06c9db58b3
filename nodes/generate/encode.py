"""MIMOIdentityEncode and MIMOSceneEncode: the character and the scene as the sampler consumes them."""

import logging

import torch
from comfy_api.latest import io

from ...models import image_ops
from ...models.generate import pipeline
from ...models.generate.reference_prep import MIN_CHARACTER_SIDE, prepare_reference
from ..runtime import cancellable
from ..types import CATEGORY_GENERATE, MIMOIdentity, MIMOModel, MIMOScene

log = logging.getLogger("MIMO")


def size_inputs() -> list:
    tip = "Working size in pixels (multiple of 8). Use the MIMO Sampler's size: MIMO was trained at 784x784."
    return [
        io.Int.Input("width", default=784, min=64, max=2048, step=8, tooltip=tip),
        io.Int.Input("height", default=784, min=64, max=2048, step=8, tooltip=tip),
    ]


def prepared_reference(reference: torch.Tensor, mask: torch.Tensor | None):
    """The first image of ``reference`` (with its matte) through the official preparation: uint8 [S,S,3]."""
    if reference.shape[0] > 1:
        log.warning("The reference batch has %d images: using the first.", reference.shape[0])
    image = reference[0, ..., :3]
    alpha = None
    if mask is not None:  # the first mask at the image's size, 0..1
        alpha = image_ops.one_mask(mask, image.shape[:2], 0, "reference mask").clamp(0, 1).numpy()
    return prepare_reference(image_ops.to_uint8(image), alpha, min_side=MIN_CHARACTER_SIDE)


class MIMOIdentityEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MIMOIdentityEncode",
            display_name="MIMO Identity Encode",
            category=CATEGORY_GENERATE,
            description="Prepares the character picture as the official release does (matte on white, crop to "
                        "the character +5% vertically, pad to a square) and encodes it: CLIP image embedding and "
                        "ReferenceNet tokens.",
            inputs=[
                MIMOModel.Input("mimo_model", tooltip="From MIMO Model Loader."),
                io.Image.Input("reference", tooltip="The character picture (the first image of a batch is used)."),
                *size_inputs(),
                io.Mask.Input("mask", optional=True,
                              tooltip="The character's matte, 1 where the character is. Without it the whole picture "
                                      "is used as is. Note: Load Image's MASK of a transparent PNG is 1 where it is "
                                      "transparent; pass it through Invert Mask first."),
            ],
            outputs=[
                MIMOIdentity.Output(display_name="identity", tooltip="The character, for MIMO Sampler."),
                io.Image.Output(display_name="prepared_reference",
                                tooltip="The reference as the networks see it (before resizing to the working size)."),
            ],
        )

    @classmethod
    def execute(cls, mimo_model, reference, width, height, mask=None) -> io.NodeOutput:
        pipeline.check_size(width, height)
        prepared = prepared_reference(reference, mask)
        models = mimo_model.load("image_encoder", "vae", "reference_unet")
        with cancellable():
            identity = pipeline.encode_identity(models, prepared, width, height)
        preview = image_ops.to_image(prepared)[None]
        return io.NodeOutput(identity, preview)


class MIMOSceneEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MIMOSceneEncode",
            display_name="MIMO Scene Encode",
            category=CATEGORY_GENERATE,
            description="VAE-encodes the scene behind the character (posterior mean x 0.18215, one latent per "
                        "frame). Leave 'scene' unconnected for a plain white background (the official "
                        "animation mode).",
            inputs=[
                MIMOModel.Input("mimo_model", tooltip="From MIMO Model Loader."),
                *size_inputs(),
                io.Image.Input("scene", optional=True,
                               tooltip="Scene frames with the person removed (inpainted), one per motion frame, or "
                                       "a single frame for a static scene. Unconnected: white."),
            ],
            outputs=[MIMOScene.Output(display_name="scene", tooltip="The scene layer, for MIMO Sampler.")],
        )

    @classmethod
    def execute(cls, mimo_model, width, height, scene=None) -> io.NodeOutput:
        pipeline.check_size(width, height)
        models = mimo_model.load("vae")
        frames = image_ops.uint8_frames(scene) if scene is not None else None
        with cancellable():
            return io.NodeOutput(pipeline.encode_scene(models, frames, width, height))
