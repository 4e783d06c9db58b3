"""MIMORasterizeMotion: a motion on a body -> the motion frames MIMOSampler takes (and silhouettes)."""

import comfy.model_management as mm
import torch
from comfy_api.latest import io

from ..models.render import check_render_fits, default_palette, load_motion_codes, load_sdc_info, render_motion
from ..models.image_ops import frame_ranges
from .folders import NONE, file_options, resolve
from .runtime import progress_callback, warn
from .types import CATEGORY_MOTION, MIMOBody, MIMOMotion, MIMOMotionCodes

DEFAULT_PALETTE = "default (rest-pose colours)"


def palette_input(tooltip: str) -> io.Combo.Input:
    """The default colours, or an official ``sdc_info.npy`` from models/mimo."""
    options = [DEFAULT_PALETTE] + [f for f in file_options("mimo", with_none=True) if f.endswith(".npy")]
    return io.Combo.Input("palette", options=options, default=DEFAULT_PALETTE, tooltip=tooltip)


def vertex_colours(palette: str, body) -> torch.Tensor:
    """Per-vertex colours [V,3] of ``body`` for the chosen palette."""
    if palette == DEFAULT_PALETTE:
        return torch.as_tensor(default_palette(body.rest_vertices()), dtype=torch.float32)
    path = resolve("mimo", palette, "Palette (sdc_info.npy)")
    return torch.as_tensor(load_sdc_info(path, body.num_vertices), dtype=torch.float32)
VIDEO_CAMERA = "motion (video camera)"
FOLLOW_SMOOTH_SECONDS = 0.2  # the follow camera's pelvis path is smoothed by a Gaussian of this sigma


class MIMORasterizeMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MIMORasterizeMotion",
            display_name="MIMO Rasterize Motion",
            category=CATEGORY_MOTION,
            description="Poses the body frame by frame and rasterizes its per-vertex colours on black (flat, no "
                        "lighting), as MIMO's motion renders. Feed the images to MIMO Sampler's 'motion'.",
            inputs=[
                MIMOMotion.Input("motion", tooltip="From MIMO Load AMASS / MIMO Load Mixamo."),
                MIMOBody.Input("body", tooltip="From MIMO Body Model Loader (an SMPL-family file or the demo body)."),
                io.Int.Input("width", default=784, min=64, max=4096, step=8, tooltip="Render width in pixels."),
                io.Int.Input("height", default=784, min=64, max=4096, step=8, tooltip="Render height in pixels."),
                io.Combo.Input("camera", options=["auto", "follow", "official", VIDEO_CAMERA], default="auto",
                               tooltip="auto: perspective, 45 degree field of view, framed on the whole motion. "
                                       "follow: the same view and focal length, travelling with the body so the "
                                       "pelvis stays centred left-right (its path smoothed over 0.2 s) and the "
                                       "figure stays large in clips that move across the floor. "
                                       "official: MIMO's intrinsics (f = 5000/256 x max(W,H), centred), placed to "
                                       "frame the motion. motion (video camera): the camera of the video the motion "
                                       "was estimated from (MIMO Motion From Video), so the render lies over the "
                                       "person in that video; a size of another aspect letterboxes the video's "
                                       "picture; yaw, elevation, distance and focal do not apply."),
                io.Float.Input("yaw", default=0.0, min=-180.0, max=180.0, step=1.0, round=0.1,
                               tooltip="Degrees around the vertical axis; 0 looks at the body's front, 90 at its left side."),
                io.Float.Input("elevation", default=0.0, min=-89.0, max=89.0, step=1.0, round=0.1,
                               tooltip="Degrees above (positive) or below the body's centre."),
                io.Float.Input("distance", default=0.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Camera distance in metres; 0 fits the whole motion in the picture."),
                io.Float.Input("focal", default=0.0, min=0.0, max=100000.0, step=10.0, round=0.1,
                               tooltip="Focal length in pixels; 0 uses the field of view (auto) or MIMO's (official)."),
                palette_input("Per-vertex colours. The released MIMO pose guider was trained on the official "
                                       "sdc_info.npy (put it in models/mimo; SMPL/SMPL-H bodies only). The default "
                                       "colours normalised rest-pose coordinates (x->R, y->G, z->B)."),
                io.Boolean.Input("drop_hands", default=False,
                                 tooltip="Leave the hands out (black), as the official renderer does when hands "
                                         "were not tracked."),
                io.Int.Input("supersample", default=1, min=1, max=4,
                             tooltip="Render at N x the size and average (antialiased edges). The official renders "
                                     "were 4x MSAA; 2 comes close. 1 is fastest."),
                io.Combo.Input("motion_codes", options=[NONE] + [f for f in file_options("mimo_codes") if f != NONE],
                               default=NONE, optional=True,
                               tooltip="Structured motion codes: a [vertices, C] safetensors file in models/mimo_codes, "
                                       "rasterized to a C-channel map (the motion_codes output)."),
            ],
            outputs=[
                io.Image.Output(display_name="motion", tooltip="The motion frames (palette colours on black)."),
                io.Mask.Output(display_name="silhouette", tooltip="1 where the body covers the pixel."),
                MIMOMotionCodes.Output(display_name="motion_codes",
                                       tooltip="The C-channel code map [frames,H,W,C]; the palette map when no code "
                                               "file is chosen."),
            ],
        )

    @classmethod
    def execute(cls, motion, body, width, height, camera, yaw, elevation, distance, focal, palette, drop_hands,
                supersample, motion_codes=NONE) -> io.NodeOutput:
        device = mm.get_torch_device()
        codes_c = 0 if not motion_codes or motion_codes == NONE else 16  # unknown before loading: a typical C
        check_render_fits(motion.frames, body.num_vertices, width, height, supersample, codes_c)
        body = body.to(device)
        vertices, joints = body.pose(motion.params(device))
        colours = vertex_colours(palette, body)
        camera_info = None
        if camera == VIDEO_CAMERA:
            camera, camera_info = "motion", motion.meta.get("camera")
        options = dict(camera_mode=camera, camera_info=camera_info, yaw_deg=yaw, elevation_deg=elevation,
                       distance=distance or None,
                       focal=focal or None, drop_vertices=body.hand_vertices if drop_hands else None,
                       supersample=supersample, device=device, pelvis=joints[:, 0],
                       follow_smooth_frames=FOLLOW_SMOOTH_SECONDS * motion.fps,
                       progress=progress_callback("rasterizing"))
        images, masks = render_motion(vertices, body.faces, colours,
                                      width, height, **options)
        codes = images
        if motion_codes and motion_codes != NONE:
            features = load_motion_codes(resolve("mimo_codes", motion_codes, "Motion codes"), body.num_vertices)
            codes, _ = render_motion(vertices, body.faces, features, width, height, **options)
        cpu = mm.intermediate_device()
        empty = torch.nonzero(~(masks > 0).flatten(1).any(1)).flatten().tolist()
        warning = None
        if empty:
            warning = warn(f"the body is outside the picture in {len(empty)} of the {len(masks)} frames (frames "
                           f"{frame_ranges(empty)}): those motion frames are black. Use camera 'auto' (frames the "
                           "whole motion), a larger distance, or check yaw/elevation and the motion's translation.")
        return io.NodeOutput(images.clamp(0, 1).float().to(cpu), masks.float().to(cpu), codes.float().to(cpu),
                             ui=warning)
