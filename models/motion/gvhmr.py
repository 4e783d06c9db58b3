"""GVHMR (the ``gvhmr`` package, when installed) as a motion-from-video estimator; see
``from_video`` for the conventions shared with NLF."""

import gc
import importlib.util
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from .. import image_ops
from .from_video import (GVHMR_FPS, EstimatorError, EstimatorUnavailable, PersonEstimate, _video, focal_from_fov,
                         motion_from_estimates, video_camera)
from .motion import Motion

def gvhmr_available() -> bool:
    """Whether the ``gvhmr`` package can be imported here."""
    try:
        return importlib.util.find_spec("gvhmr") is not None
    except (ImportError, ValueError):
        return False


def write_video(frames, path, fps: float) -> Path:
    """Frames [F,H,W,3] -> an H.264 .mp4 (PyAV, high quality); odd sizes are padded by one edge pixel on
    the right / bottom (pixel coordinates of the picture are unchanged)."""
    import av

    frames, n, h, w = _video(frames)
    pw, ph = w + (w % 2), h + (h % 2)
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        stream.options = {"crf": "12", "preset": "veryfast"}
        for start in range(0, n, 32):
            chunk = torch.from_numpy(image_ops.uint8_frames(frames, start, start + 32))
            if (pw, ph) != (w, h):
                chunk = torch.nn.functional.pad(chunk.permute(0, 3, 1, 2).float(), (0, pw - w, 0, ph - h),
                                                mode="replicate").to(torch.uint8).permute(0, 2, 3, 1)
            for image in chunk.numpy():
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
        container.mux(stream.encode())
    return path


def _array(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().to("cpu", torch.float64).numpy()
    return np.asarray(value, dtype=np.float64)


def estimate_gvhmr(frames, fps: float, *, fov_degrees: float | None = None, static_camera: bool = True,
                   device=None, rest_pelvis=None, work_dir=None) -> Motion:
    """SMPL-X motion of the main person in ``frames`` with GVHMR (the ``gvhmr`` package): the frames go to
    a temporary .mp4 at ``fps``, ``gvhmr.pipeline("human-motion-recovery")`` recovers the in-camera
    parameters (GVHMR works at 30 fps; its result is resampled back to ``fps`` and to the video's frame
    count). ``static_camera`` skips GVHMR's visual odometry. The pipeline is dropped afterwards."""
    if not gvhmr_available():
        raise EstimatorUnavailable("GVHMR is not installed: `pip install \"gvhmr[preproc]\"` (non-commercial; "
                                   "it fetches its own checkpoints and needs your SMPL-X registration, see "
                                   "`gvhmr auth smpl`), or use NLF (a .torchscript file in models/nlf).")
    if not fps > 0:
        raise EstimatorError(f"The video's fps must be positive, got {fps}.")
    import gvhmr

    frames, n, h, w = _video(frames)
    f_px = focal_from_fov(w, h, float(fov_degrees)) if fov_degrees else None
    with tempfile.TemporaryDirectory(prefix="mimo_gvhmr_", dir=work_dir) as tmp:
        video = write_video(frames, os.path.join(tmp, "video.mp4"), fps)
        pipe = gvhmr.pipeline("human-motion-recovery", device=None if device is None else str(device))
        try:
            result = pipe(str(video), static_camera=bool(static_camera), f_px=f_px, progress=False,
                          output_dir=os.path.join(tmp, "gvhmr"))
        finally:
            del pipe
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        params = {k: _array(v) for k, v in result.smpl_params_camera.items()}
        K = _array(result.intrinsics).reshape(-1, 3, 3)
        out_fps = float(getattr(result, "fps", GVHMR_FPS) or GVHMR_FPS)
    length = params["transl"].shape[0]
    betas = params.get("betas")
    people = [PersonEstimate(pose=np.concatenate([params["global_orient"][i].ravel(),
                                                  params["body_pose"][i].ravel()[:63]]),
                             trans=params["transl"][i], betas=None if betas is None else betas[min(i, len(betas) - 1)])
              for i in range(length)]
    k = np.median(K, axis=0)
    camera = video_camera(k[0, 0], k[1, 1], k[0, 2], k[1, 2], w, h, source="gvhmr")
    same_frames = length == n  # GVHMR kept the video's frames (its fps was within 1.5 of 30)
    motion = motion_from_estimates(people, fps if same_frames else out_fps, camera, rest_pelvis, model_type="smplx",
                                   source="gvhmr", meta={"gvhmr_frames": length, "static_camera": bool(static_camera)})
    if not same_frames:
        motion = motion.resample(fps)
        motion = motion.trim(0, n) if motion.frames > n else _hold(motion, n)
    return motion


def _hold(motion: Motion, frames: int) -> Motion:
    """The motion extended to ``frames`` by holding its last frame."""
    index = np.minimum(np.arange(frames), motion.frames - 1)
    return motion._take(index)
