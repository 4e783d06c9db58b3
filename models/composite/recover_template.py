"""The official vertex colours recovered from an official template folder (``vid.mp4`` + ``sdc.mp4``):
the person's motion and camera estimated from ``vid.mp4``, the body posed and rasterized with that
camera, ``sdc.mp4`` sampled at every visible vertex (``render.recover.recover_palette``)."""

import os
from collections.abc import Callable

import torch

from ..render import camera_from_info
from ..render.recover import recover_palette
from .template import load_video_fixed_fps, video_info


def recover_from_template(folder: str, estimate_motion: Callable, body, max_frames: int) -> tuple[torch.Tensor, dict]:
    """(palette [V,3] in 0..1, info) for ``body`` from the template in ``folder``.

    ``estimate_motion(frames uint8 [F,H,W,3] torch, fps)`` returns the motion of ``vid.mp4`` with its
    camera in ``meta["camera"]`` (e.g. NLF through ``motion.from_video.estimate_nlf``). Every frame is
    read (the official fixed-fps rule at the video's own rounded rate)."""
    vid, sdc = os.path.join(folder, "vid.mp4"), os.path.join(folder, "sdc.mp4")
    for path in (vid, sdc):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{folder} has no {os.path.basename(path)}: the palette is recovered from an "
                                    "official template's vid.mp4 and sdc.mp4.")
    fps = round(video_info(vid)[0]) or 30.0
    video, _ = load_video_fixed_fps(vid, fps, 0, max_frames)
    renders, _ = load_video_fixed_fps(sdc, fps, 0, len(video))
    if len(renders) != len(video):
        raise ValueError(f"{folder}: sdc.mp4 has {len(renders)} frames, vid.mp4 {len(video)}; they must match.")
    motion = estimate_motion(torch.from_numpy(video), float(fps))
    h, w = renders.shape[1:3]
    camera = camera_from_info(motion.meta["camera"], w, h)
    posed = body.to("cpu")
    verts, _ = posed.pose(motion.params("cpu"))
    palette, info = recover_palette(torch.from_numpy(renders).float() / 255.0, verts, posed.faces, camera)
    info.pop("seen_mask", None)
    return palette, info
