"""MIMOTrackHuman (SAM 2) and MIMOEstimateDepth (Depth Anything V2): the two model-driven layers of
the video decomposition, as thin wrappers over ``models/decompose/track.py`` and ``depth.py``."""

import logging

import comfy.model_management as mm
from comfy_api.latest import io

from ...models import image_ops
from ...models.decompose import budget
from ...models.decompose import depth as depth_lib
from ...models.decompose import prompts, sam2_build
from ...models.decompose import track as track_lib
from ..folders import DEPTH_KEY, SAM2_KEY, file_options, resolve
from ..runtime import model_step, progress_callback
from ..types import CATEGORY_DECOMPOSE

log = logging.getLogger("MIMO")

FORWARD, BACKWARD = "forward (prompt on the first frame)", "backward (prompt on the last frame)"
MASK_AS_MASK, MASK_AS_POINTS = "mask", "10 points (official)"


class MIMOTrackHuman(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MIMOTrackHuman",
            display_name="MIMO Track Human (SAM 2)",
            category=CATEGORY_DECOMPOSE,
            description="The person's mask in every frame with the SAM 2 video predictor (weights from "
                        "models/sam2: sam2.1_hiera_*.pt, sam2_hiera_*.pt or ComfyUI's .safetensors, any size; the "
                        "architecture is read from the file). Prompt with a first-frame mask from any node "
                        "(recommended), points or a box. With no prompt the person is found automatically: the "
                        "region that moves against the clip's median background (static camera), else SAM 2's "
                        "most person-like automatic mask (upright, central, plausible size). That is a heuristic, "
                        "not a person detector. Needs the 'sam2' package (see README).",
            inputs=[
                io.Image.Input("video", tooltip="The video frames."),
                io.Combo.Input("sam2_model", options=file_options(SAM2_KEY),
                               tooltip="A SAM 2 checkpoint in models/sam2. Official MIMO uses sam2_hiera_large.pt; "
                                       "tiny/small are much faster on CPU."),
                io.Mask.Input("mask", optional=True,
                              tooltip="The person on the prompt frame (first frame, or the last one when tracking "
                                      "backward), e.g. from a segmentation node. A mask batch: its prompt frame is "
                                      "used. Wins over the automatic prompt; do not combine with points/box unless "
                                      "'mask_prompt' is points."),
                io.String.Input("points", default="", optional=True,
                                tooltip="Points on the person, in pixels of the video: 'x,y; x,y'. Empty: none."),
                io.String.Input("negative_points", default="", optional=True,
                                tooltip="Points that are NOT the person (background, another person): 'x,y; x,y'."),
                io.String.Input("box", default="", optional=True,
                                tooltip="A box around the person in pixels: 'x0,y0,x1,y1' (top-left, bottom-right). "
                                        "Can be combined with points."),
                io.Combo.Input("direction", options=[FORWARD, BACKWARD], default=FORWARD, optional=True,
                               tooltip="forward: the prompt is on the first frame and tracking runs to the end. "
                                       "backward: the prompt is on the last frame and tracking runs to the start."),
                io.Combo.Input("mask_prompt", options=[MASK_AS_MASK, MASK_AS_POINTS], default=MASK_AS_MASK,
                               optional=True,
                               tooltip="How a mask prompts SAM 2: as the mask itself (exact on the prompt frame), or "
                                       "as 10 positive points spread over it, as the official MIMO decomposition "
                                       "does (SAM 2 then draws the outline itself)."),
            ],
            outputs=[io.Mask.Output(display_name="masks", tooltip="The person, 1 inside, one mask per frame.")],
        )

    @classmethod
    def execute(cls, video, sam2_model, mask=None, points="", negative_points="", box="", direction=FORWARD,
                mask_prompt=MASK_AS_MASK) -> io.NodeOutput:
        frames = image_ops.as_frames(video, "input 'video'")
        budget.check_decomposition(frames, "MIMO Track Human", track=True)
        path = resolve(SAM2_KEY, sam2_model, "SAM 2 model", sam2_build.sam2_files_hint())
        pos, neg = prompts.parse_points(points), prompts.parse_points(negative_points)
        pts = pos + neg or None
        labels = [1] * len(pos) + [0] * len(neg) if pts else None
        with model_step(path, "tracking the person") as device:
            masks = track_lib.track_human(
                frames, path, mask=mask, points=pts, labels=labels, box=prompts.parse_box(box),
                reverse=direction == BACKWARD, device=device,
                mask_prompt="points" if mask_prompt == MASK_AS_POINTS else "mask", progress=progress_callback())
        return io.NodeOutput(masks.to(mm.intermediate_device()))


class MIMOEstimateDepth(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MIMOEstimateDepth",
            display_name="MIMO Estimate Depth (Depth Anything V2)",
            category=CATEGORY_DECOMPOSE,
            description="Relative depth of every frame with Depth Anything V2 (transformers' implementation; "
                        "weights from models/depthanything: the original depth_anything_v2_vit{s,b,l}.pth or "
                        "ComfyUI's depth_anything_v2_*.safetensors). Output: inverse depth, larger (brighter) = "
                        "nearer, normalised to 0..1 per frame, as the official MIMO occlusion test uses it.",
            inputs=[
                io.Image.Input("video", tooltip="The video frames."),
                io.Combo.Input("depth_model", options=file_options(DEPTH_KEY),
                               tooltip="A Depth Anything V2 checkpoint in models/depthanything. Official MIMO uses "
                                       "vitl (CC-BY-NC weights); vits (Apache-2.0) is ~13x faster and enough to "
                                       "order objects."),
                io.Int.Input("input_size", default=518, min=56, max=2044, step=14,
                             tooltip="The network's short side in pixels (multiple of 14; the official 518). "
                                     "Smaller is faster and coarser."),
                io.Int.Input("batch", default=4, min=1, max=64, optional=True,
                             tooltip="Frames per network pass (memory vs speed)."),
            ],
            outputs=[io.Image.Output(display_name="depth",
                                     tooltip="Inverse depth in grey (larger = nearer), 0..1 per frame.")],
        )

    @classmethod
    def execute(cls, video, depth_model, input_size, batch=4) -> io.NodeOutput:
        frames = image_ops.as_frames(video, "input 'video'")
        budget.check_decomposition(frames, "MIMO Estimate Depth", track=False, depth=True)
        path = resolve(DEPTH_KEY, depth_model, "Depth Anything V2 model", depth_lib.depth_files_hint())
        with model_step(path, "depth") as device:
            depth = depth_lib.estimate_depth(frames, path, input_size=input_size, device=device, chunk=batch,
                                             progress=progress_callback())
        return io.NodeOutput(image_ops.grey_image(depth).to(mm.intermediate_device()))
