"""MIMOMotionFromVideo: a video (IMAGE batch) -> MIMO_MOTION with the video's camera, through a 3D human-pose
estimator (NLF TorchScript file in models/nlf, or the installed gvhmr package)."""

import logging

import comfy.model_management as mm
from comfy_api.latest import io

from ...models.motion.from_video import estimate_nlf
from ...models.motion.gvhmr import estimate_gvhmr, gvhmr_available
from ..body import rest_pelvis
from ..folders import NLF_KEY, NONE, file_options, resolve
from .files import clip_outputs
from ..runtime import cancellable, progress_callback
from ..types import CATEGORY_MOTION, MIMOBody

log = logging.getLogger("MIMO")

GVHMR = "gvhmr (installed package)"


def estimator_options() -> list[str]:
    files = [f for f in file_options(NLF_KEY) if f != NONE]
    if gvhmr_available():
        files.append(GVHMR)
    return files or [NONE]


class MIMOMotionFromVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MIMOMotionFromVideo",
            display_name="MIMO Motion From Video",
            category=CATEGORY_MOTION,
            description="Estimates the 3D motion (SMPL parameters) of the main person in a video and keeps the "
                        "video's camera, so MIMO Rasterize Motion with the camera 'motion (video camera)' draws "
                        "the body right over the person in the source video.",
            inputs=[
                io.Image.Input("video", tooltip="The video frames (an IMAGE batch, e.g. from Load Video + Get Video "
                                                "Components, or a template loader)."),
                io.Combo.Input(
                    "estimator", options=estimator_options(),
                    tooltip="NLF: its single TorchScript file (e.g. nlf_l_multi_0.3.2.torchscript from "
                            "github.com/isarandi/nlf/releases) placed in ComfyUI/models/nlf, press R to refresh. "
                            "Per frame; the largest person is followed from frame to frame. 'gvhmr (installed "
                            "package)' appears when `pip install \"gvhmr[preproc]\"` is installed (temporally "
                            "smooth; fetches its own weights, needs your SMPL-X registration). Both models are "
                            "licensed for non-commercial research only."),
                io.Float.Input("fps", default=30.0, min=1.0, max=240.0, step=1.0, round=0.001,
                               tooltip="The video's frame rate (an IMAGE batch does not carry it). The motion keeps "
                                       "one pose per video frame at this rate."),
                io.Float.Input("fov_degrees", default=0.0, min=0.0, max=170.0, step=1.0, round=0.1,
                               tooltip="The camera's field of view across the longer image side, if you know it. "
                                       "0: the estimator's default (NLF: 55 degrees; GVHMR: about 53 degrees across "
                                       "the diagonal). The motion stores the camera used."),
                io.Int.Input("batch_size", default=16, min=1, max=256,
                             tooltip="Frames sent to NLF at a time (the video is streamed in such chunks). Lower "
                                     "it if memory runs out."),
                io.Boolean.Input("static_camera", default=True,
                                 tooltip="GVHMR only: the camera does not move (skips its visual odometry). NLF "
                                         "works per frame and ignores this."),
                MIMOBody.Input("body", optional=True,
                               tooltip="The body the motion will drive: its rest pelvis makes the conversion to the "
                                       "pack's Y-up world exact for it. Unconnected: a typical SMPL pelvis (about "
                                       "a centimetre off for other bodies)."),
            ],
            outputs=clip_outputs(),
        )

    @classmethod
    def validate_inputs(cls, estimator):
        if not estimator or estimator == NONE:
            return ("No pose estimator chosen: put NLF's .torchscript file (e.g. nlf_l_multi_0.3.2.torchscript from "
                    "github.com/isarandi/nlf/releases) in ComfyUI/models/nlf and press R, or install GVHMR "
                    "(pip install \"gvhmr[preproc]\").")
        return True

    @classmethod
    def execute(cls, video, estimator, fps, fov_degrees, batch_size, static_camera, body=None) -> io.NodeOutput:
        pelvis = None if body is None else rest_pelvis(body)
        device = mm.get_torch_device()
        fov = fov_degrees or None
        with cancellable():  # cancel points between layers (GVHMR; NLF's TorchScript: between batches)
            if estimator == GVHMR:
                if not gvhmr_available():
                    raise RuntimeError("The gvhmr package is not importable any more in this ComfyUI; reinstall it "
                                       "(pip install \"gvhmr[preproc]\") or choose an NLF file.")
                motion = estimate_gvhmr(video, fps, fov_degrees=fov, static_camera=static_camera, device=device,
                                        rest_pelvis=pelvis)
            else:
                path = resolve(NLF_KEY, estimator, "NLF model")
                motion = estimate_nlf(video, path, fps, fov_degrees=fov, batch_size=batch_size, device=device,
                                      rest_pelvis=pelvis, source=f"nlf:{estimator}", progress=progress_callback())
        mm.soft_empty_cache()
        log.info("Motion from video (%s): %d frames at %g fps, person found in %d.", estimator, motion.frames,
                 motion.fps, motion.meta.get("detected_frames", motion.frames))
        return io.NodeOutput(motion, motion.fps, motion.frames)
