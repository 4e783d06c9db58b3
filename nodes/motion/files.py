"""MIMOLoadAMASS and MIMOLoadMixamo: motion files from ComfyUI's input folder → MIMO_MOTION.

No upload button: ComfyUI 0.3.75's frontend only uploads images, videos and audio (the backend's
'file_upload' flag is handled by Load 3D's own widget only), so motion files are copied into
ComfyUI/input (subfolders are fine) and the list is refreshed with R."""

import logging
import os

from comfy_api.latest import io

from ...models.body.skeleton import SMPLH_JOINTS, SMPLH_PARENTS
from ...models.body.demo import demo_body
from ...models.motion import load_amass, load_bvh, load_fbx, retarget, smplh_neutral_rest_joints
from ...models.motion import placement
from .. import folders
from ..body import rest_joints, rest_pelvis
from ..folders import input_files
from ..types import CATEGORY_MOTION, MIMOBody, MIMOMotion

log = logging.getLogger("MIMO")

AMASS_EXTS = (".npz",)
MIXAMO_EXTS = (".fbx", ".bvh")


def _is_shape_file(name: str) -> bool:
    return name == "shape.npz" or name.endswith("_stagei.npz")


def _check_file(file: str, what: str, exts: tuple):
    return folders.check(folders.INPUT, file, f"{what} file", exts)


def _fingerprint(file: str):
    try:
        return os.path.getmtime(folders.resolve(folders.INPUT, file, "motion"))
    except (OSError, ValueError):
        return float("nan")  # re-run, so the error shows


def clip_inputs(what: str) -> list:
    return [
        io.Float.Input("fps", default=30.0, min=0.0, max=240.0, step=1.0, round=0.001,
                       tooltip=f"Frame rate of the output motion; the {what} is resampled (rotations slerped, "
                               "translation interpolated). MIMO works at 30. 0 keeps the file's own rate."),
        io.Int.Input("start_frame", default=0, min=0, max=1_000_000,
                     tooltip="First frame to keep, counted at the output fps."),
        io.Int.Input("max_frames", default=0, min=0, max=1_000_000,
                     tooltip="How many frames to keep from start_frame (at the output fps). 0 keeps all."),
        io.Combo.Input("facing", options=list(placement.FACING), default="keep", optional=True,
                       tooltip="Turn the clip about the vertical axis through its first pelvis position: keep "
                               "the captured heading, make the first frame face the camera (the default camera "
                               "looks at the body's front), or make the average heading over the kept frames "
                               "face it."),
    ]


def clip_outputs() -> list:
    return [
        MIMOMotion.Output(display_name="motion", tooltip="The motion (SMPL-family pose parameters per frame)."),
        io.Float.Output(display_name="fps", tooltip="The motion's frame rate (for video nodes)."),
        io.Int.Output(display_name="frames", tooltip="Number of frames in the motion."),
    ]


def finish(motion, fps: float, start_frame: int, max_frames: int, file: str, facing: str, rest_pelvis,
           ground_body=None, centre: bool = True) -> io.NodeOutput:
    """The loaders' outputs for the clip cut and placed by ``placement.cut_clip``."""
    motion = placement.cut_clip(motion, fps, start_frame, max_frames, facing, rest_pelvis, ground_body, centre,
                                source=f"'{file}'")
    log.info("Motion '%s': %d frames at %g fps.", file, motion.frames, motion.fps)
    return io.NodeOutput(motion, motion.fps, motion.frames)


class MIMOLoadAMASS(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MIMOLoadAMASS",
            display_name="MIMO Load AMASS Motion",
            category=CATEGORY_MOTION,
            description="Loads an AMASS motion (.npz: SMPL+H G '*_poses.npz' or SMPL-X '*_stageii.npz') from "
                        "ComfyUI's input folder, turns it from AMASS's Z-up world to the pack's Y-up world, "
                        "resamples and trims it.",
            inputs=[
                io.Combo.Input("file", options=input_files(AMASS_EXTS, _is_shape_file),
                               tooltip="An AMASS motion file in ComfyUI/input (subfolders are fine; press R after "
                                       "copying files there; there is no upload button for .npz). Shape-only files "
                                       "(shape.npz, *_stagei.npz) are not motions and are not listed. AMASS data "
                                       "is non-commercial and registration-only: use your own download."),
                *clip_inputs("clip"),
                io.Combo.Input("floor", options=list(placement.FLOORS), default=placement.FLOORS[0], optional=True,
                               tooltip="feet on the floor: the clip is moved up or down so that the lowest point "
                                       "of the posed mesh over the kept frames (the soles, for a standing clip) "
                                       "is at y = 0 (captures often sit a few cm below their floor once posed "
                                       "with another body). as captured: the capture's own floor height."),
                MIMOBody.Input("body", optional=True,
                               tooltip="The body the motion will drive. Connected: its rest pelvis for the motion's "
                                       "shape is used to turn Z-up into Y-up exactly, and its posed mesh sets the "
                                       "floor contact. Unconnected: a typical SMPL-H pelvis (the clip may then sit "
                                       "~1 cm off, as a whole) and the demo body's mesh for the floor."),
            ],
            outputs=clip_outputs(),
        )

    @classmethod
    def validate_inputs(cls, file):
        return _check_file(file, "AMASS motion", AMASS_EXTS)

    @classmethod
    def fingerprint_inputs(cls, file, **kwargs):
        return _fingerprint(file)

    @classmethod
    def execute(cls, file, fps, start_frame, max_frames, facing="keep", floor=None, body=None) -> io.NodeOutput:
        floor = floor or placement.FLOORS[0]
        if floor not in placement.FLOORS:
            raise ValueError(f"floor must be one of {', '.join(placement.FLOORS)}; got {floor!r}.")
        path = folders.resolve(folders.INPUT, file, "AMASS motion")
        motion = load_amass(path, rest_pelvis=None if body is None else rest_pelvis(body))
        ground_body = None if floor == placement.FLOORS[1] else demo_body() if body is None else body
        return finish(motion, fps, start_frame, max_frames, file, facing, motion.meta["rest_pelvis"], ground_body,
                      centre=False)


class MIMOLoadMixamo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MIMOLoadMixamo",
            display_name="MIMO Load Mocap (FBX/BVH)",
            category=CATEGORY_MOTION,
            description="Loads a skeletal animation (FBX, binary or ASCII, or BVH) from ComfyUI's input folder and "
                        "retargets it onto the SMPL skeleton (world-space rotation change from the rig's rest "
                        "pose; steps scaled by leg length). Rigs: Mixamo, CMU (MotionBuilder and 3ds Max BVH), "
                        "3ds Max Biped, Poser/DAZ, Unreal, Rigify and SMPL-named exports; others are refused with "
                        "the joints that did not match. On the kept frames the pelvis starts at x = z = 0 and the "
                        "posed body's soles touch the floor (y = 0).",
            inputs=[
                io.Combo.Input("file", options=input_files(MIXAMO_EXTS),
                               tooltip="A .fbx or .bvh animation in ComfyUI/input (subfolders are fine; press R "
                                       "after copying files there; there is no upload button for these). Bone names "
                                       "of Mixamo (mixamorig:Hips / LeftUpLeg), CMU, Biped, Poser/DAZ, Unreal, Rigify "
                                       "or SMPL; fingers are used when present. FBX needs the 'ufbx' package "
                                       "(pip install ufbx==0.0.5)."),
                *clip_inputs("animation"),
                MIMOBody.Input("body", optional=True,
                               tooltip="The body the motion will drive: its rest skeleton is the retargeting target "
                                       "and its posed mesh sets the floor contact. Unconnected: approximate SMPL-H "
                                       "neutral rest joints (built in) and the demo body's mesh for the floor."),
            ],
            outputs=clip_outputs(),
        )

    @classmethod
    def validate_inputs(cls, file):
        return _check_file(file, "Mocap FBX/BVH", MIXAMO_EXTS)

    @classmethod
    def fingerprint_inputs(cls, file, **kwargs):
        return _fingerprint(file)

    @classmethod
    def execute(cls, file, fps, start_frame, max_frames, facing="keep", body=None) -> io.NodeOutput:
        path = folders.resolve(folders.INPUT, file, "Mocap FBX/BVH")
        anim = load_bvh(path) if path.lower().endswith(".bvh") else load_fbx(path)
        if body is None:
            rest, parents, names = smplh_neutral_rest_joints(), SMPLH_PARENTS, SMPLH_JOINTS
        else:
            rest, parents, names = rest_joints(body), body.parents, body.joint_names
        motion = retarget(anim, rest, parents, target_names=names, center=False, floor=False)
        ground_body = demo_body() if body is None else body
        return finish(motion, fps, start_frame, max_frames, file, facing, rest[0], ground_body)
