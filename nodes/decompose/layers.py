"""MIMOOcclusionLayer, MIMOInpaintScene and MIMODecomposeVideo: a video split into the person, the
scene behind it and the objects in front (MIMO's driving-video decomposition)."""

import logging

import comfy.model_management as mm
import torch
from comfy_api.latest import io

from ...models import image_ops
from ...models.decompose import budget
from ...models.decompose import inpaint as inpaint_lib
from ...models.decompose import occlusion as occ_lib
from ...models.decompose import sam2_masks
from ...models.decompose import sam2_build
from ..folders import DEPTH_KEY, NONE, PROPAINTER_KEY, SAM2_KEY, file_options, model_folder, resolve
from ..runtime import cancellable, model_step, progress_callback
from ..types import CATEGORY_DECOMPOSE

log = logging.getLogger("MIMO")


TRACK_SAM2 = "SAM 2, both ways (official)"
TRACK_STATIC = "static (no tracking)"
TRACK_PER_FRAME = "per frame (no tracking)"
TRACKING = [TRACK_SAM2, TRACK_STATIC, TRACK_PER_FRAME]
CAND_DEPTH = "depth regions (built-in)"
CAND_SAM2 = "SAM 2 automatic masks"
CANDIDATES = [CAND_DEPTH, CAND_SAM2]
OUT_HARD = "hard"
OUT_SOFT = "soft (feathered)"
OUTPUTS = [OUT_HARD, OUT_SOFT]
OCC_NONE = "none (skip)"


def _inpaint_inputs() -> list:
    return [
        io.Combo.Input("method", options=list(inpaint_lib.METHODS), default="auto",
                       tooltip="median: per pixel, the temporal median of the frames where it is not masked, then "
                               "OpenCV inpainting for pixels masked in every frame; exact on a static camera "
                               "(permissive, no model). propainter: the ProPainter video inpainter (non-commercial "
                               "licence) through the 'propainter' pip package, CUDA only; weights: pytorchcv's files "
                               "in models/propainter, or downloaded by pytorchcv. auto: ProPainter when it is "
                               "installed and a GPU is present, else median."),
        io.Int.Input("dilate", default=4, min=0, max=64,
                     tooltip="Grow the mask by this many pixels first (covers soft edges, hair and compression "
                             "halos). The official decomposition uses 4."),
        io.Int.Input("window", default=0, min=0, max=10000,
                     tooltip="median only: 0 uses the whole clip; N takes the median over the N frames around "
                             "each frame instead (slow lighting changes, long clips). Pixels never uncovered "
                             "inside the window fall back to the whole clip."),
    ]


def _occlusion_rule_inputs() -> list:
    return [
        io.Float.Input("nearer_ratio", default=0.4, min=0.0, max=1.0, step=0.05,
                       tooltip="A candidate counts as in front when at least this share of it is nearer than the "
                               "person's mean depth (official 0.4)."),
        io.Int.Input("min_pixels_small", default=100, min=0, max=1000000,
                     tooltip="Pixels of a candidate (smaller than the person) that must be nearer and on the "
                             "person's body (official 100, at up to 720p; scale with the frame area)."),
        io.Int.Input("min_pixels_large", default=600, min=0, max=1000000,
                     tooltip="The same for a candidate bigger than the person (official 600)."),
        io.Int.Input("max_keyframes", default=5, min=1, max=100,
                     tooltip="Frames searched for occluders: those where the person's mask is cut into the most "
                             "pieces (official 5)."),
        io.Int.Input("keyframe_gap", default=20, min=1, max=10000,
                     tooltip="Minimum distance in frames between two keyframes (official 20)."),
    ]


def _occlusion_output_inputs() -> list:
    return [
        io.Combo.Input("output", options=OUTPUTS, default=OUT_SOFT,
                       tooltip="hard: 0/1 mask. soft: a linear alpha ramp across the outline (the official "
                               "refine_mask.onnx matting network is not public; this is a plain feather)."),
        io.Float.Input("feather", default=3.0, min=0.0, max=64.0, step=0.5,
                       tooltip="Width of the soft ramp in pixels."),
    ]


def _rules(nearer_ratio, min_pixels_small, min_pixels_large, max_keyframes, keyframe_gap) -> occ_lib.OcclusionRules:
    return occ_lib.OcclusionRules(nearer_ratio=nearer_ratio, min_pixels_small=min_pixels_small,
                                  min_pixels_large=min_pixels_large, max_keyframes=max_keyframes,
                                  keyframe_gap=keyframe_gap)


def _occluders(frames, human, depth, *, sam2_path, tracking, candidates, output, feather, rules, body=None):
    """The occluder layer, each model loaded only for its step: SAM 2's automatic masks at the
    keyframes (then freed), then SAM 2 tracking (loaded again, freed after each keyframe)."""
    if (tracking == TRACK_SAM2 or candidates == CAND_SAM2) and sam2_path is None:
        raise ValueError("Choose a SAM 2 model (models/sam2) for SAM 2 tracking or SAM 2 candidates, or set "
                         f"tracking to '{TRACK_STATIC}' / '{TRACK_PER_FRAME}' and candidates to '{CAND_DEPTH}'.")
    track = {TRACK_STATIC: "static", TRACK_PER_FRAME: "per-frame"}.get(tracking)
    if track is None:
        from ...models.decompose.track import track_objects

        report = progress_callback("tracking occluders")

        def track(x, masks_at):
            with model_step(sam2_path, "tracking occluders") as device:
                return track_objects(x, sam2_path, masks_at, True, device=device, progress=report)

    keys = occ_lib.search_frames(human, rules, track)
    found = "depth"
    if candidates == CAND_SAM2:
        report = progress_callback("SAM 2 automatic masks")
        maps = image_ops.as_maps(depth, frames, "depth")
        with (model_step(sam2_path, "SAM 2 automatic masks") as device,
              sam2_masks.sam2_proposer(sam2_path, device=device) as propose):
            found = {}
            for j, i in enumerate(keys):
                found[i] = propose(frames[i].numpy(), maps[i].numpy(), (human[i] > 0.5).numpy())
                report(j + 1, len(keys))
    return occ_lib.occluder_masks(frames, human, depth, keyframes=keys, candidates=found, track=track,
                                  soft=output == OUT_SOFT, feather=feather, rules=rules, body_masks=body,
                                  progress=progress_callback("occluders"))


# ----------------------------------------------------------------------------- nodes

class MIMOOcclusionLayer(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MIMOOcclusionLayer",
            display_name="MIMO Occlusion Layer",
            category=CATEGORY_DECOMPOSE,
            description="The objects in front of the person, per frame (MIMO's occluder layer): on keyframes where "
                        "the person's mask is cut into pieces, regions nearer than the person that overlap the body "
                        "are kept (official rules), then tracked through the clip both ways. Composite them over "
                        "the generated person with the original video's pixels.",
            inputs=[
                io.Image.Input("video", tooltip="The original video frames."),
                io.Mask.Input("human_mask", tooltip="The person's mask per frame (MIMO Track Human)."),
                io.Image.Input("depth", tooltip="Relative inverse depth per frame, larger = nearer (MIMO Estimate "
                                                "Depth; any depth IMAGE where near is bright)."),
                io.Combo.Input("sam2_model", options=file_options(SAM2_KEY, with_none=True),
                               tooltip="SAM 2 checkpoint in models/sam2, for tracking (and for SAM 2 candidates). "
                                       "Not needed with static / per-frame tracking and depth candidates."),
                io.Combo.Input("tracking", options=TRACKING, default=TRACK_SAM2,
                               tooltip="SAM 2: each occluder found on a keyframe is tracked forward and backward "
                                       "(official). static: occluders assumed not to move (no model). per frame: "
                                       "the search is re-run on every frame (no model; moving occluders, noisier)."),
                io.Combo.Input("candidates", options=CANDIDATES, default=CAND_DEPTH,
                               tooltip="Where candidate objects come from. depth regions: connected regions nearer "
                                       "than the person, split at depth jumps (no model; objects at the person's "
                                       "depth or merged with a nearer floor are missed). SAM 2 automatic masks: "
                                       "object masks from SAM 2's mask generator with the official settings "
                                       "(slower; the official code used SAM v1 here)."),
                *_occlusion_output_inputs(),
                *_occlusion_rule_inputs(),
                io.Mask.Input("body_mask", optional=True,
                              tooltip="The person's whole body per frame, hidden parts included (e.g. MIMO Rasterize "
                                      "Motion's silhouette of the motion estimated from this clip), as the official "
                                      "SDC mask. Without it the convex hull of the person's mask is used."),
            ],
            outputs=[io.Mask.Output(display_name="occluders",
                                    tooltip="1 where an object is in front of the person (0 elsewhere).")],
        )

    @classmethod
    def execute(cls, video, human_mask, depth, sam2_model, tracking, candidates, output, feather, nearer_ratio,
                min_pixels_small, min_pixels_large, max_keyframes, keyframe_gap, body_mask=None) -> io.NodeOutput:
        frames = image_ops.as_frames(video, "input 'video'")
        needs_sam2 = tracking == TRACK_SAM2 or candidates == CAND_SAM2
        budget.check_decomposition(frames, "MIMO Occlusion Layer", track=False, occluders=True,
                                   sam2=tracking == TRACK_SAM2)
        if needs_sam2 and (not sam2_model or sam2_model == NONE):
            raise ValueError(f"tracking '{tracking}' / candidates '{candidates}' need a SAM 2 model: choose one in "
                             f"'sam2_model' (files in models/sam2), or use tracking '{TRACK_STATIC}' or "
                             f"'{TRACK_PER_FRAME}' with candidates '{CAND_DEPTH}' (no model).")
        sam2_path = resolve(SAM2_KEY, sam2_model, "SAM 2 model", sam2_build.sam2_files_hint()) if needs_sam2 else None
        rules = _rules(nearer_ratio, min_pixels_small, min_pixels_large, max_keyframes, keyframe_gap)
        human = image_ops.as_masks(human_mask, frames, "human mask")
        occ = _occluders(frames, human, depth, sam2_path=sam2_path, tracking=tracking, candidates=candidates,
                         output=output, feather=feather, rules=rules, body=body_mask)
        return io.NodeOutput(occ.float().to(mm.intermediate_device()))


class MIMOInpaintScene(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MIMOInpaintScene",
            display_name="MIMO Inpaint Scene",
            category=CATEGORY_DECOMPOSE,
            description="The scene behind the person: the masked pixels of every frame filled in (MIMO's scene "
                        "layer, bk.mp4). Feed it to MIMO Scene Encode and the compositing. Objects in front of "
                        "the person stay in the scene, as in the official decomposition.",
            inputs=[
                io.Image.Input("video", lazy=True, tooltip="The original video frames."),
                io.Mask.Input("masks", lazy=True,
                              tooltip="What to remove per frame, 1 = remove (the person's mask); one mask for the "
                                      "whole clip also works."),
                *_inpaint_inputs(),
                io.Image.Input("scene", optional=True,
                               tooltip="A scene inpainted by another node or tool. When connected it is passed "
                                       "through unchanged and the video and masks are not needed."),
            ],
            outputs=[io.Image.Output(display_name="scene", tooltip="The scene without the person, per frame.")],
        )

    @classmethod
    def check_lazy_status(cls, video=None, masks=None, method=None, dilate=None, window=None, scene=None):
        if scene is not None:
            return []
        return [name for name, value in (("video", video), ("masks", masks)) if value is None]

    @classmethod
    def execute(cls, video=None, masks=None, method="auto", dilate=4, window=0, scene=None) -> io.NodeOutput:
        if scene is not None:
            return io.NodeOutput(scene)
        frames = image_ops.as_frames(video, "input 'video'")
        budget.check_decomposition(frames, "MIMO Inpaint Scene", track=False, scene=True)
        with cancellable():
            out = inpaint_lib.inpaint_scene(frames, masks, method=method, dilate=dilate, window=window,
                                            propainter_weights=model_folder(PROPAINTER_KEY),
                                            device=mm.get_torch_device(), progress=progress_callback("inpainting"))
        mm.soft_empty_cache()
        return io.NodeOutput(out.to(mm.intermediate_device()))


class MIMODecomposeVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MIMODecomposeVideo",
            display_name="MIMO Decompose Video",
            category=CATEGORY_DECOMPOSE,
            description="The whole MIMO decomposition in one node: the person's mask (SAM 2), depth (Depth Anything "
                        "V2), the objects in front of the person and the scene behind it. Each model is loaded "
                        "only for its step and freed after it. For finer control use MIMO Track Human, MIMO "
                        "Estimate Depth, MIMO Occlusion Layer and MIMO Inpaint Scene.",
            inputs=[
                io.Image.Input("video", tooltip="The video frames (the official decomposition works at up to 720p)."),
                io.Combo.Input("sam2_model", options=file_options(SAM2_KEY),
                               tooltip="SAM 2 checkpoint in models/sam2 (official .pt or ComfyUI .safetensors, any "
                                       "size), for the person and the occluders."),
                io.Combo.Input("depth_model", options=file_options(DEPTH_KEY),
                               tooltip="Depth Anything V2 checkpoint in models/depthanything (.pth or "
                                       ".safetensors); only needed for the occluders."),
                io.Int.Input("depth_size", default=518, min=14, max=2044, step=14,
                             tooltip="Depth Anything's working size in pixels (the short side, a multiple of 14). "
                                     "518 as official; smaller is faster and coarser."),
                io.Combo.Input("occluders", options=[*CANDIDATES, OCC_NONE], default=CAND_DEPTH,
                               tooltip="How occluder candidates are found (see MIMO Occlusion Layer), tracked with "
                                       "SAM 2 both ways; 'none' skips depth and occluders (empty outputs)."),
                *_occlusion_output_inputs(),
                *_inpaint_inputs(),
                io.Mask.Input("first_frame_mask", optional=True,
                              tooltip="The person on the first frame (any segmentation node). Without it the person "
                                      "is found automatically: the largest moving region (static camera), else "
                                      "SAM 2's most person-like mask; use MIMO Track Human for points or a box."),
            ],
            outputs=[
                io.Mask.Output(display_name="human_mask", tooltip="The person per frame (1 = person)."),
                io.Image.Output(display_name="scene", tooltip="The scene with the person removed."),
                io.Mask.Output(display_name="occluders", tooltip="Objects in front of the person per frame."),
                io.Image.Output(display_name="depth", tooltip="Relative inverse depth, bright = near."),
            ],
        )

    @classmethod
    def execute(cls, video, sam2_model, depth_model, depth_size, occluders, output, feather, method, dilate, window,
                first_frame_mask=None) -> io.NodeOutput:
        from ...models.decompose.depth import depth_files_hint, estimate_depth
        from ...models.decompose.track import track_human

        frames = image_ops.as_frames(video, "input 'video'")
        n, h, w = frames.shape[:3]
        want_occ = occluders != OCC_NONE
        budget.check_decomposition(frames, "MIMO Decompose Video", track=True, depth=want_occ, occluders=want_occ,
                                   scene=True)
        sam2_path = resolve(SAM2_KEY, sam2_model, "SAM 2 model", sam2_build.sam2_files_hint())
        depth_path = (resolve(DEPTH_KEY, depth_model, "Depth Anything V2 model", depth_files_hint()) if want_occ
                      else None)

        with model_step(sam2_path, "tracking the person") as device:
            human = track_human(frames, sam2_path, mask=first_frame_mask, device=device,
                                progress=progress_callback("tracking the person"))
        if not bool((human > 0.5).any()):
            log.warning("MIMO Decompose Video: the person was not found in any frame.")

        if want_occ:
            with model_step(depth_path, "depth") as device:
                depth = estimate_depth(frames, depth_path, input_size=depth_size, device=device,
                                       progress=progress_callback("depth"))
            occ = _occluders(frames, human, depth, sam2_path=sam2_path, tracking=TRACK_SAM2, candidates=occluders,
                             output=output, feather=feather, rules=occ_lib.OcclusionRules())
        else:
            depth = torch.zeros(n, h, w)
            occ = torch.zeros(n, h, w)

        with cancellable():
            scene = inpaint_lib.inpaint_scene(frames, human, method=method, dilate=dilate, window=window,
                                              propainter_weights=model_folder(PROPAINTER_KEY),
                                              device=mm.get_torch_device(), progress=progress_callback("inpainting"))
        mm.soft_empty_cache()
        cpu = mm.intermediate_device()
        return io.NodeOutput(human.float().to(cpu), scene.to(cpu), occ.float().to(cpu),
                             image_ops.grey_image(depth).to(cpu))
