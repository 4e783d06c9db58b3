"""Rendering posed bodies into motion-condition images: per-vertex colours (the official
``sdc_info.npy`` palette) or structured motion codes rasterized with no lighting on black."""

import torch
import torch.nn.functional as F

from .. import memory
from .camera import (Camera, auto_camera, camera_from_info, follow_camera, look_at_rotation, official_camera,
                     official_focal, orbit_direction)
from .codes import MotionCodeError, load_motion_codes, save_motion_codes
from .palette import PaletteError, default_palette, load_sdc_info
from .rasterize import (BACKENDS, Fragments, faces_without, interpolate, nvdiffrast_module, rasterize,
                        rasterize_fragments, resolve_backend)

CAMERA_MODES = ("auto", "follow", "official", "motion")

__all__ = [
    "BACKENDS", "CAMERA_MODES", "Camera", "Fragments", "MotionCodeError", "PaletteError", "auto_camera",
    "camera_from_info", "follow_camera", "default_palette", "faces_without", "interpolate", "load_motion_codes", "load_sdc_info",
    "look_at_rotation", "make_camera", "nvdiffrast_module", "official_camera", "official_focal",
    "orbit_direction", "rasterize", "rasterize_fragments", "render_motion", "resolve_backend",
    "save_motion_codes",
]


def make_camera(vertices: torch.Tensor, width: int, height: int, camera_mode: str = "auto", yaw_deg: float = 0.0,
                elevation_deg: float = 0.0, distance: float | None = None, focal: float | None = None,
                fov_deg: float = 45.0, margin: float = 0.05, camera_info: dict | None = None,
                pelvis: torch.Tensor | None = None, follow_smooth_frames: float = 6.0) -> Camera:
    """"auto": perspective camera with ``fov_deg`` (or ``focal`` px); "official": the official
    intrinsics (f = 5000/256 * max(W, H)). Both are static and frame the whole motion.
    "follow": the auto camera's view and focal length, travelling with the pelvis (``pelvis`` [F,3],
    smoothed over ``follow_smooth_frames``; see ``follow_camera``).
    "motion": the video camera a motion from video carries (``camera_info`` = ``motion.meta["camera"]``),
    so the render overlays the source video; scaled to ``width`` x ``height`` (letterboxed when the
    aspect differs, see ``camera_from_info``); yaw/elevation/distance/focal do not apply."""
    if camera_mode == "motion":
        if not camera_info:
            raise ValueError("camera mode 'motion' needs the motion's video camera, and this motion has none: "
                             "only motions made from a video (MIMO Motion From Video) carry one. Use the 'auto' "
                             "or 'official' camera for motion capture (AMASS, Mixamo).")
        return camera_from_info(camera_info, width, height)
    if camera_mode == "follow":
        if pelvis is None:
            raise ValueError("camera mode 'follow' needs the pelvis path of the motion (pelvis=[F,3]).")
        return follow_camera(vertices, pelvis, width, height, fov_deg=fov_deg, yaw_deg=yaw_deg,
                             elevation_deg=elevation_deg, distance=distance, focal=focal, margin=margin,
                             smooth_frames=follow_smooth_frames)
    if camera_mode == "auto":
        return auto_camera(vertices, width, height, fov_deg=fov_deg, yaw_deg=yaw_deg, elevation_deg=elevation_deg,
                           distance=distance, focal=focal, margin=margin)
    if camera_mode == "official":
        return official_camera(vertices, width, height, yaw_deg=yaw_deg, elevation_deg=elevation_deg,
                               distance=distance, margin=margin)
    raise ValueError(f"camera_mode must be one of {CAMERA_MODES}, got {camera_mode!r}")


def render_motion(vertices: torch.Tensor, faces: torch.Tensor, features: torch.Tensor, width: int, height: int,
                  camera_mode: str = "auto", yaw_deg: float = 0.0, elevation_deg: float = 0.0,
                  distance: float | None = None, focal: float | None = None, fov_deg: float = 45.0,
                  margin: float = 0.05, drop_vertices=None, backend: str = "auto", cull_backfaces: bool = True,
                  supersample: int = 1, camera: Camera | None = None,
                  device: torch.device | str | None = None, camera_info: dict | None = None,
                  pelvis: torch.Tensor | None = None,
                  follow_smooth_frames: float = 6.0, progress=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Posed body ``vertices`` [F,V,3] (world, metres) -> (images [F,H,W,C] float, masks [F,H,W]
    float 0..1), with per-vertex ``features`` [V,C] or [F,V,C] (colours in 0..1 give images in 0..1).

    The camera is ``camera`` if given, else ``make_camera(...)`` (``camera_info``: for camera_mode
    "motion"; ``pelvis`` [F,3] and ``follow_smooth_frames``: for "follow"). ``cull_backfaces`` (on by default, as pyrender does for the official renders) skips
    faces turned away from the camera.
    ``supersample`` s > 1 renders at s times the size and averages s x s blocks (antialiased edges,
    fractional masks; pyrender's offscreen renders were 4x MSAA). ``device``: where to render
    (default: the vertices' device); results stay there. ``progress(done, total)``: after each chunk of
    frames (a cancel point in ComfyUI).
    """
    if int(supersample) < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    supersample = int(supersample)
    device = torch.device(device) if device is not None else vertices.device
    vertices = torch.as_tensor(vertices).to(device=device, dtype=torch.float32)
    if vertices.dim() == 2:
        vertices = vertices.unsqueeze(0)
    if camera is None:
        camera = make_camera(vertices, width, height, camera_mode, yaw_deg, elevation_deg, distance, focal, fov_deg,
                             margin, camera_info=camera_info, pelvis=pelvis,
                             follow_smooth_frames=follow_smooth_frames)
    elif (camera.width, camera.height) != (width, height):
        raise ValueError(f"camera is {camera.width}x{camera.height}, asked for {width}x{height}")
    if supersample > 1:
        camera = camera.scaled(supersample)
    images, masks = rasterize(vertices, faces, torch.as_tensor(features).to(device), camera, backend=backend,
                              drop_vertices=drop_vertices, cull_backfaces=cull_backfaces, progress=progress)
    masks = masks.float()
    if supersample > 1:
        images = F.avg_pool2d(images.permute(0, 3, 1, 2), supersample).permute(0, 2, 3, 1).contiguous()
        masks = F.avg_pool2d(masks[:, None], supersample)[:, 0]
    return images, masks


def render_bytes(frames: int, vertices: int, width: int, height: int, channels: int = 3, supersample: int = 1,
                 code_channels: int = 0) -> int:
    """Peak bytes of ``render_motion`` and the node's outputs: posed vertices, the supersampled render
    (features + mask), the images/masks at the size asked for and their float copies, motion codes."""
    s2 = int(supersample) ** 2
    per_pixel = s2 * (4 * channels + 1) + 2 * (4 * channels + 4) + (s2 + 2) * 4 * code_channels
    return int(frames * (vertices * 3 * 4 * 2 + width * height * per_pixel))


def check_render_fits(frames: int, vertices: int, width: int, height: int, supersample: int = 1,
                      code_channels: int = 0) -> None:
    """Refuse a ``render_motion`` call (colours, plus motion codes of ``code_channels``) whose
    ``render_bytes`` do not fit the host memory available."""
    memory.check_host(render_bytes(frames, vertices, width, height, 3, supersample, code_channels),
                      f"MIMO Rasterize Motion ({frames} frames at {width}x{height}, supersample {supersample})",
                      "lower width/height or supersample, or keep fewer frames (max_frames on the motion loader).")
