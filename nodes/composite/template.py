"""Official MIMO templates and the ROI crop / paste-back of the editing mode.

- MIMOLoadTemplate / MIMOSaveTemplate: the official template folder (vid/sdc/bk[/occ/mask].mp4 +
  config.json), from ComfyUI's input folder / into its output folder;
- MIMOPlanROI: the official human-centred clip plan; crops motion and scene into the square
  frames MIMO Sampler takes and passes the plan on as MIMO_ROI;
- MIMOComposite: pastes the generated frames back over the full-frame scene, puts the occluders
  of the original video back on top and cross-fades the overlapping frames.
"""

import logging
import os

import folder_paths
import numpy as np
import torch
from comfy_api.latest import io, ui

from ...models.composite import paste as compositing
from ...models import image_ops
from ...models.composite import roi
from ...models.composite.template import find_templates, is_template, load_template, write_template
from .. import folders
from ..runtime import progress_callback
from ..types import CATEGORY_COMPOSITE, MIMORoi

log = logging.getLogger("MIMO")

TEMPLATES_DIR = "mimo_templates"
OUTPUT_TAG = folders.OUTPUT_TAG


# ----------------------------------------------------------------------------- helpers

def template_options() -> list[str]:
    """Template folders in ComfyUI's input folder, then the ones saved in output/mimo_templates."""
    root = folder_paths.get_input_directory()
    names = [n for n in find_templates(root) if folders.is_inside(os.path.join(root, n), folders.INPUT)]
    saved = os.path.join(folder_paths.get_output_directory(), TEMPLATES_DIR)
    if os.path.isdir(saved):
        names += [f"{TEMPLATES_DIR}/{n}{OUTPUT_TAG}" for n in find_templates(saved)
                  if folders.is_inside(os.path.join(saved, n), folders.OUTPUT)]
    return names


def template_folder(name: str) -> str:
    """The template folder ``name`` (from input/, or output/ with the ' [output]' tag), confined to
    that folder by the pack's one resolver."""
    kind, plain = folders.split_annotation(name)
    return folders.resolve_folder(kind, plain, "MIMO template")


def _check_template(name: str):
    if not name:
        return (f"No MIMO template chosen: copy a template folder (vid.mp4, sdc.mp4, bk.mp4, config.json) into "
                f"{folders.describe(folders.INPUT)}, e.g. input/{TEMPLATES_DIR}/<name>/, and press R to refresh.")
    try:
        path = template_folder(name)
    except (folders.FolderError, FileNotFoundError) as e:
        return str(e)
    if not is_template(path):
        return (f"'{name}' ({path}) is not a MIMO template: it needs config.json and the videos vid.mp4, sdc.mp4, "
                "bk.mp4 (optional occ.mp4, mask.mp4).")
    return True


# ----------------------------------------------------------------------------- nodes

class MIMOLoadTemplate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MIMOLoadTemplate",
            display_name="MIMO Load Template",
            category=CATEGORY_COMPOSITE,
            description="Loads an official MIMO video template (the folders of the official assets / "
                        "video_decomp): vid.mp4, sdc.mp4, bk.mp4, optional occ.mp4 and mask.mp4, and config.json. "
                        "Frames are resampled to the template's fps and cut to its time_crop as the official "
                        "run_edit.py does.",
            inputs=[
                io.Combo.Input("template", options=template_options(),
                               tooltip=f"A template folder in ComfyUI/input (e.g. input/{TEMPLATES_DIR}/<name>/ "
                                       "holding vid.mp4, sdc.mp4, bk.mp4, config.json); press R after copying one "
                                       "there. Templates saved by MIMO Save Template are listed with [output]."),
                io.Float.Input("fps", default=0.0, min=0.0, max=240.0, step=1.0, round=0.001,
                               tooltip="Frame rate to resample to. 0 uses config.json's fps (official). Frames are "
                                       "picked as the official loader does (floor of arange(0, n, src/target))."),
                io.Int.Input("max_frames", default=150, min=0, max=100_000,
                             tooltip="Keep at most this many frames after the time crop (official: 150). 0 keeps all."),
                io.Boolean.Input("time_crop", default=True,
                                 tooltip="Apply config.json's time_crop (start_idx/end_idx in 30-fps frames, "
                                         "rescaled to the fps). Off: the whole clip."),
            ],
            outputs=[
                io.Image.Output(display_name="video", tooltip="The original video (vid.mp4)."),
                io.Image.Output(display_name="motion", tooltip="The motion renders (sdc.mp4), for MIMO Plan ROI."),
                io.Image.Output(display_name="scene", tooltip="The scene with the person removed (bk.mp4)."),
                io.Mask.Output(display_name="occlusion",
                               tooltip="The soft occluder alpha (occ.mp4, channel 0); all zero when the template "
                                       "has none."),
                io.Float.Output(display_name="fps", tooltip="The frame rate of the frames (for video nodes)."),
                io.Int.Output(display_name="frames", tooltip="Number of frames loaded."),
                io.Mask.Output(display_name="human_mask",
                               tooltip="The person's mask (mask.mp4); all zero when the template has none."),
            ],
        )

    @classmethod
    def validate_inputs(cls, template):
        return _check_template(template)

    @classmethod
    def fingerprint_inputs(cls, template, **kwargs):
        try:
            path = template_folder(template)
            return tuple(sorted((f, os.path.getmtime(os.path.join(path, f))) for f in os.listdir(path)))
        except (OSError, ValueError):
            return float("nan")

    @classmethod
    def execute(cls, template, fps, max_frames, time_crop) -> io.NodeOutput:
        check = _check_template(template)
        if check is not True:
            raise FileNotFoundError(check)
        t = load_template(template_folder(template), target_fps=fps or None, max_frames=max_frames or None,
                          use_time_crop=time_crop, progress=progress_callback("reading the template"))
        n, h, w = t.motion.shape[:3]
        zeros = torch.zeros(n, h, w)
        occlusion = image_ops.to_image(t.occlusion) if t.occlusion is not None else zeros
        mask = image_ops.to_image(t.mask) if t.mask is not None else zeros.clone()
        return io.NodeOutput(image_ops.to_image(t.video), image_ops.to_image(t.motion), image_ops.to_image(t.scene),
                             occlusion, float(t.fps), int(n), mask)


class MIMOSaveTemplate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MIMOSaveTemplate",
            display_name="MIMO Save Template",
            category=CATEGORY_COMPOSITE,
            description=f"Writes an official-format MIMO template into output/{TEMPLATES_DIR}/<name>/: vid.mp4, "
                        "sdc.mp4, bk.mp4 (+ occ.mp4, mask.mp4) as H.264 and config.json (fps, time_crop over the "
                        "whole clip). The official run_edit.py and MIMO Load Template read it.",
            inputs=[
                io.Image.Input("video", tooltip="The original video frames."),
                io.Image.Input("motion", tooltip="The motion renders (SMPL colours on black), one per video frame."),
                io.Image.Input("scene", tooltip="The scene with the person removed, one per frame (or one still)."),
                io.Float.Input("fps", default=30.0, min=1.0, max=240.0, step=1.0, round=0.001,
                               tooltip="Frame rate written into the videos and config.json (official templates: 30)."),
                io.String.Input("name", default="my_template",
                                tooltip=f"Folder name under output/{TEMPLATES_DIR}/ (letters, digits, '-', '_', "
                                        "subfolders with '/')."),
                io.Boolean.Input("overwrite", default=False,
                                 tooltip="Replace an existing template of that name. Off: a numbered name "
                                         "(name_00001, ...) is used instead."),
                io.Int.Input("crf", default=15, min=0, max=51,
                             tooltip="H.264 quality of the colour videos (lower is better; masks use 10)."),
                io.Mask.Input("occlusion", optional=True,
                              tooltip="Soft occluder alpha per frame (1 = occluder in front of the person) -> occ.mp4."),
                io.Mask.Input("human_mask", optional=True, tooltip="The person's mask per frame -> mask.mp4."),
            ],
            outputs=[io.String.Output(display_name="folder", tooltip="The template folder written.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, video, motion, scene, fps, name, overwrite, crf, occlusion=None,
                human_mask=None) -> io.NodeOutput:
        n = motion.shape[0]
        h, w = motion.shape[1:3]
        image_ops.check_count(video, n, "video", single_ok=False)
        image_ops.check_count(scene, n, "scene")
        for label, images in (("video", video), ("scene", scene)):
            image_ops.check_size(images, w, h, label, "the motion")
        masks = {}
        for label, m in (("occlusion", occlusion), ("human_mask", human_mask)):
            if m is None:
                continue
            image_ops.check_count(m, n, label)
            image_ops.check_size(m, w, h, label, "the motion")
            u8 = image_ops.uint8_frames(m)
            masks[label] = np.repeat(u8, n, axis=0) if u8.shape[0] == 1 and n > 1 else u8
        folder = cls._folder(name, overwrite)
        write_template(folder, image_ops.uint8_frames(video), image_ops.uint8_frames(motion),
                       image_ops.uint8_frames(scene), fps, occlusion=masks.get("occlusion"),
                       mask=masks.get("human_mask"), crf=crf)
        out_root = folder_paths.get_output_directory()
        subfolder = os.path.relpath(folder, out_root).replace(os.sep, "/")
        log.info("MIMO template written to %s (%d frames, %dx%d, %g fps).", folder, n, w, h, fps)
        preview = ui.PreviewVideo([ui.SavedResult("vid.mp4", subfolder, io.FolderType.output)])
        return io.NodeOutput(str(folder), ui=preview)

    @classmethod
    def _folder(cls, name: str, overwrite: bool) -> str:
        clean = name.strip().replace("\\", "/")
        parts = clean.strip("/").split("/") if clean.strip("/") else []
        if not parts or any(p in ("", ".") for p in parts):
            raise ValueError(f"Template name {name!r} is not usable: give a plain folder name such as 'dance_01' "
                             "(subfolders with '/').")
        # absolute paths, '..' and links out of output/ are refused by the one resolver
        folders.relative(clean, folders.OUTPUT, "Template folder")
        base = folders.writable(folders.OUTPUT, f"{TEMPLATES_DIR}/{clean}", "Template folder")
        if overwrite or not os.path.exists(base):
            return base
        counter = 1
        while os.path.exists(f"{base}_{counter:05d}"):
            counter += 1
        return folders.writable(folders.OUTPUT, f"{TEMPLATES_DIR}/{'/'.join(parts)}_{counter:05d}", "Template folder")


class MIMOPlanROI(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MIMOPlanROI",
            display_name="MIMO Plan ROI",
            category=CATEGORY_COMPOSITE,
            description="The official human-centred crop of the editing mode: finds the body in every motion frame, "
                        "groups frames into clips that share a square box (a new clip when the box would grow too "
                        "much; each later clip repeats the previous clip's last 4 frames for a cross-fade), and "
                        "crops motion (black padding) and scene (white padding) to the working size. Feed the "
                        "crops to MIMO Sampler / MIMO Scene Encode and the ROI to MIMO Composite.",
            inputs=[
                io.Image.Input("motion", tooltip="Full-frame motion renders (SMPL colours on black), e.g. MIMO Load "
                                                 "Template's motion. The body is what is brighter than gray 10."),
                io.Image.Input("scene", tooltip="Full-frame scene (person removed), one per motion frame or one still, "
                                                "same size as the motion."),
                io.Int.Input("width", default=784, min=64, max=2048, step=8,
                             tooltip="Working width of the crops (multiple of 8): use the MIMO Sampler's. MIMO was "
                                     "trained at 784x784."),
                io.Int.Input("height", default=784, min=64, max=2048, step=8,
                             tooltip="Working height of the crops (multiple of 8): use the MIMO Sampler's."),
            ],
            outputs=[
                io.Image.Output(display_name="motion",
                                tooltip="Cropped motion, one frame per clip frame (overlaps repeated): N frames."),
                io.Image.Output(display_name="scene", tooltip="Cropped scene, N frames, for MIMO Scene Encode."),
                MIMORoi.Output(display_name="roi", tooltip="The clip plan, for MIMO Composite."),
                io.Int.Output(display_name="crops", tooltip="N, the number of cropped frames."),
            ],
        )

    @classmethod
    def execute(cls, motion, scene, width, height) -> io.NodeOutput:
        if width % 8 or height % 8:
            raise ValueError(f"Working size {width}x{height} must be multiples of 8 (MIMO uses 784x784).")
        n = motion.shape[0]
        h, w = motion.shape[1:3]
        image_ops.check_count(scene, n, "scene")
        image_ops.check_size(scene, w, h, "scene", "the motion")
        motion_u8 = image_ops.uint8_frames(motion)
        plan = roi.plan_clips(motion_u8, work_size=(width, height))
        log.info("MIMO ROI plan: %s", plan.describe())
        motion_crops = roi.crop(plan, motion_u8, roi.BLACK, width, height).frames
        del motion_u8
        scene_crops = roi.crop(plan, image_ops.uint8_frames(scene), roi.WHITE, width, height).frames
        return io.NodeOutput(image_ops.to_image(motion_crops), image_ops.to_image(scene_crops), plan, plan.crops)


class MIMOComposite(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MIMOComposite",
            display_name="MIMO Composite",
            category=CATEGORY_COMPOSITE,
            description="Pastes the generated crops back into the full frames as the official run_edit.py: un-pad, "
                        "paste at the clip box, feathered alpha over the full-frame scene (no feather on sides that "
                        "touch the frame border), occluder pixels of the original video on top, cross-fade of the "
                        "repeated frames between clips. Outputs one frame per original frame.",
            inputs=[
                io.Image.Input("generated", tooltip="The sampler's output decoded with VAE Decode: one frame per crop "
                                                    "of MIMO Plan ROI (N frames)."),
                MIMORoi.Input("roi", tooltip="From MIMO Plan ROI (the plan the crops were made with)."),
                io.Image.Input("scene", tooltip="The full-frame scene (person removed), one per frame or one still."),
                io.Image.Input("video", optional=True,
                               tooltip="The original full-frame video: its occluder pixels are put back on top. "
                                       "Needed with 'occlusion'."),
                io.Mask.Input("occlusion", optional=True,
                              tooltip="Soft occluder alpha per frame (MIMO Load Template's occlusion): where it is 1 "
                                      "the original video shows."),
                io.Float.Input("feather", default=compositing.DEFAULT_FEATHER, min=0.0, max=0.5, step=0.01,
                               round=0.001,
                               tooltip="Width of the alpha ramp at the crop's inner sides, as a fraction of the "
                                       "crop's shorter side (at least 4 px; 0 = hard edge). The official masks "
                                       "are not public; 0.1 is our choice."),
            ],
            outputs=[io.Image.Output(display_name="images", tooltip="The composited frames, one per original frame.")],
        )

    @classmethod
    def execute(cls, generated, roi, scene, feather, video=None, occlusion=None) -> io.NodeOutput:
        plan = roi
        if generated.shape[0] != plan.crops:
            raise ValueError(f"'generated' has {generated.shape[0]} frames but the ROI plan has {plan.crops} crops "
                             f"({len(plan.contexts)} clips over {plan.frames} frames): connect the decoded output "
                             "of the MIMO Sampler that took this MIMO Plan ROI's motion.")
        image_ops.check_count(scene, plan.frames, "scene")
        image_ops.check_size(scene, plan.width, plan.height, "scene", "the ROI plan's frame size")
        occ = None
        if occlusion is not None:
            image_ops.check_count(occlusion, plan.frames, "occlusion")
            image_ops.check_size(occlusion, plan.width, plan.height, "occlusion", "the ROI plan's frame size")
            if video is None:
                raise ValueError("'occlusion' is connected but 'video' is not: the occluders' pixels come from the "
                                 "original video; connect it (e.g. MIMO Load Template's video).")
            occ = lambda i: image_ops.uint8_frame(occlusion, i)
        vid = None
        if video is not None:
            image_ops.check_count(video, plan.frames, "video", single_ok=False)
            image_ops.check_size(video, plan.width, plan.height, "video", "the ROI plan's frame size")
            vid = lambda i: image_ops.uint8_frame(video, i)
        sc = lambda i: image_ops.uint8_frame(scene, i)
        gen = lambda j: generated[j, ..., :3].detach().to("cpu", torch.float32).numpy()
        frames = compositing.composite(gen, plan, sc, vid if occ is not None else None, occ, feather=feather,
                                       progress=progress_callback())
        return io.NodeOutput(image_ops.to_image(frames))
