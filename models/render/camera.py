"""Pinhole cameras for rendering motion in the pack's world (Y up, metres; a body at zero rotation
faces +Z with its left on +X).

Camera coordinates follow OpenCV: x right, y down, z forward (depth). Pixel coordinates are
continuous with pixel (i, j)'s centre at (i + 0.5, j + 0.5), so a principal point at (W/2, H/2)
is the exact image centre (as in pyrender's IntrinsicsCamera, which the official renderer used).
"""

import math
from dataclasses import dataclass, replace

import torch

OFFICIAL_FOCAL_SCALE = 5000.0 / 256.0  # official: f = 5000/256 * max(W, H) (HMR2's 5000 px at 256)
DEFAULT_MARGIN = 0.05


def _per_frame(value, frames: int, dtype, device, tail: tuple[int, ...]) -> torch.Tensor:
    v = torch.as_tensor(value, dtype=dtype, device=device)
    if v.dim() == len(tail):
        v = v.unsqueeze(0)
    if v.shape[1:] != tail or v.shape[0] not in (1, frames):
        raise ValueError(f"camera parameter of shape {tuple(v.shape)} does not fit {frames} frames")
    return v.expand(frames, *tail)


@dataclass
class Camera:
    """Intrinsics and world->camera extrinsics (``x_cam = R @ x_world + t``).

    Every parameter is static (scalar / [3,3] / [3]) or per frame ([F] / [F,3,3] / [F,3]).
    ``near``: faces with a vertex at smaller depth are not drawn.
    """

    fx: float | torch.Tensor
    fy: float | torch.Tensor
    cx: float | torch.Tensor
    cy: float | torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    width: int
    height: int
    near: float = 1e-3

    def extrinsics(self, frames: int, dtype=torch.float32, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        return (_per_frame(self.R, frames, dtype, device, (3, 3)),
                _per_frame(self.t, frames, dtype, device, (3,)))

    def intrinsics(self, frames: int, dtype=torch.float32, device=None) -> torch.Tensor:
        """[F,4] = (fx, fy, cx, cy) per frame."""
        return torch.stack([_per_frame(v, frames, dtype, device, ()) for v in (self.fx, self.fy, self.cx, self.cy)], -1)

    def to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """World points [F,V,3] -> camera coordinates [F,V,3]."""
        R, t = self.extrinsics(points.shape[0], points.dtype, points.device)
        return points @ R.transpose(1, 2) + t[:, None, :]

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World points [F,V,3] -> (pixel xy [F,V,2], depth [F,V]). Points behind the camera get
        meaningless xy: check ``depth > near``."""
        pc = self.to_camera(points)
        k = self.intrinsics(points.shape[0], points.dtype, points.device)[:, None, :]
        z = pc[..., 2]
        safe = torch.where(z.abs() > 1e-12, z, torch.full_like(z, 1e-12))
        xy = torch.stack([k[..., 0] * pc[..., 0] / safe + k[..., 2], k[..., 1] * pc[..., 1] / safe + k[..., 3]], -1)
        return xy, z

    def position(self) -> torch.Tensor:
        """Camera centre(s) in world coordinates ([3] or [F,3])."""
        R, t = torch.as_tensor(self.R), torch.as_tensor(self.t)
        return -(R.transpose(-1, -2) @ t.unsqueeze(-1)).squeeze(-1)

    def scaled(self, factor: int) -> "Camera":
        """The same view at ``factor`` times the resolution (for supersampling)."""
        s = float(factor)
        return replace(self, fx=self.fx * s, fy=self.fy * s, cx=self.cx * s, cy=self.cy * s,
                       width=self.width * factor, height=self.height * factor)


def look_at_rotation(eye: torch.Tensor, target: torch.Tensor, up=(0.0, 1.0, 0.0)) -> torch.Tensor:
    """World->camera rotation [3,3] (rows: camera x right, y down, z forward) looking from eye to target."""
    up = torch.as_tensor(up, dtype=eye.dtype, device=eye.device)
    forward = target - eye
    forward = forward / forward.norm()
    right = torch.linalg.cross(forward, up)
    if right.norm() < 1e-8:
        raise ValueError("camera looks straight along the up axis; use |elevation| < 90 degrees")
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    return torch.stack([right, down, forward])


def orbit_direction(yaw_deg: float, elevation_deg: float) -> torch.Tensor:
    """Unit vector from the target towards the camera. Yaw 0 is +Z (in front of the body);
    positive yaw turns right-handed about +Y (90 = +X, the body's left side); elevation raises it."""
    yaw, el = math.radians(yaw_deg), math.radians(elevation_deg)
    return torch.tensor([math.cos(el) * math.sin(yaw), math.sin(el), math.cos(el) * math.cos(yaw)],
                        dtype=torch.float64)


def fit_distance(points: torch.Tensor, R: torch.Tensor, focal: tuple[float, float], width: int, height: int,
                 margin_px: float, near: float) -> float:
    """Smallest distance along the view axis so every point (relative to the look-at target, [N,3])
    projects inside the image with ``margin_px`` free pixels on each side (principal point centred)."""
    q = points.to(torch.float64) @ R.to(torch.float64).T  # camera axes, target at the origin
    half_x, half_y = width / 2.0 - margin_px, height / 2.0 - margin_px
    if half_x <= 0 or half_y <= 0:
        raise ValueError(f"margin leaves no room in a {width}x{height} image")
    need = torch.maximum(focal[0] * q[:, 0].abs() / half_x, focal[1] * q[:, 1].abs() / half_y) - q[:, 2]
    need = torch.maximum(need, near * 10 - q[:, 2])  # keep everything well in front of the camera
    return float(need.max())


def _framing_focal(height: int, fov_deg: float, focal: float | None, margin: float) -> float:
    """The focal length in pixels of an automatic framing (``focal``, else from the vertical
    ``fov_deg``), after checking the framing's arguments."""
    if not 0.0 <= margin < 0.5:
        raise ValueError(f"margin must be in [0, 0.5), got {margin}")
    if focal is None:
        if not 0.0 < fov_deg < 180.0:
            raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg}")
        focal = (height / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    focal = float(focal)
    if focal <= 0:
        raise ValueError(f"focal must be positive, got {focal}")
    return focal


def auto_camera(vertices: torch.Tensor, width: int, height: int, fov_deg: float = 45.0, yaw_deg: float = 0.0,
                elevation_deg: float = 0.0, distance: float | None = None, focal: float | None = None,
                margin: float = DEFAULT_MARGIN) -> Camera:
    """A static perspective camera looking at the centre of the motion's bounding box (all frames).

    vertices: [F,V,3] or [V,3] world positions. fov_deg: vertical field of view (ignored when
    ``focal``, in pixels, is given; pixels are square). yaw/elevation: see ``orbit_direction``
    (yaw 0 looks at the body's front from +Z). distance: metres from the target; by default the
    smallest one that keeps every vertex of every frame inside the image with ``margin`` (a
    fraction of the shorter image side) free on each side.
    """
    pts = vertices.detach().reshape(-1, 3).to(torch.float64).cpu()
    if pts.numel() == 0:
        raise ValueError("auto_camera needs at least one vertex")
    focal = _framing_focal(height, fov_deg, focal, margin)
    target = (pts.min(0).values + pts.max(0).values) / 2.0
    direction = orbit_direction(yaw_deg, elevation_deg)
    R = look_at_rotation(target + direction, target)
    if distance is None:
        distance = fit_distance(pts - target, R, (focal, focal), width, height, margin * min(width, height), 1e-3)
    eye = target + float(distance) * direction
    t = -(R @ eye)
    return Camera(fx=focal, fy=focal, cx=width / 2.0, cy=height / 2.0, R=R.float(), t=t.float(),
                  width=int(width), height=int(height))


def smooth_path(path: torch.Tensor, sigma_frames: float) -> torch.Tensor:
    """[F,C] path smoothed along frames by a Gaussian of ``sigma_frames`` (edges held)."""
    path = path.to(torch.float64)
    if sigma_frames <= 0 or path.shape[0] < 2:
        return path
    radius = max(1, int(math.ceil(3 * sigma_frames)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma_frames) ** 2)
    kernel = (kernel / kernel.sum()).to(path.device)
    padded = torch.nn.functional.pad(path.T[None], (radius, radius), mode="replicate")
    return torch.nn.functional.conv1d(padded, kernel.expand(path.shape[1], 1, -1), groups=path.shape[1])[0].T


def follow_camera(vertices: torch.Tensor, pelvis: torch.Tensor, width: int, height: int, fov_deg: float = 45.0,
                  yaw_deg: float = 0.0, elevation_deg: float = 0.0, distance: float | None = None,
                  focal: float | None = None, margin: float = DEFAULT_MARGIN,
                  smooth_frames: float = 6.0) -> Camera:
    """A camera that travels with the body: the view direction, focal length (``fov_deg`` or ``focal``)
    and distance stay fixed, and the look-at point follows the pelvis horizontally (world x, z of
    ``pelvis`` [F,3], smoothed over frames by a Gaussian of ``smooth_frames``), at the motion's
    bounding-box height. So the pelvis stays (nearly) centred left-right and the figure keeps one size;
    by default the distance is the smallest that keeps every vertex of every frame inside the image
    with ``margin`` (as ``auto_camera``, but relative to each frame's look-at point)."""
    verts = vertices.detach().to(torch.float64).cpu()
    if verts.dim() == 2:
        verts = verts[None]
    pelvis = torch.as_tensor(pelvis).detach().to(torch.float64).cpu().reshape(-1, 3)
    frames = verts.shape[0]
    if pelvis.shape[0] != frames:
        raise ValueError(f"follow camera: {pelvis.shape[0]} pelvis positions for {frames} frames")
    focal = _framing_focal(height, fov_deg, focal, margin)
    flat = verts.reshape(-1, 3)
    centre_y = float((flat[:, 1].min() + flat[:, 1].max()) / 2.0)
    path = smooth_path(pelvis[:, [0, 2]], float(smooth_frames))
    target = torch.stack([path[:, 0], torch.full((frames,), centre_y, dtype=torch.float64), path[:, 1]], -1)
    direction = orbit_direction(yaw_deg, elevation_deg)
    R = look_at_rotation(direction, torch.zeros(3, dtype=torch.float64))
    if distance is None:
        distance = fit_distance((verts - target[:, None]).reshape(-1, 3), R, (focal, focal), width, height,
                                margin * min(width, height), 1e-3)
    eye = target + float(distance) * direction
    t = -(eye @ R.T)
    return Camera(fx=focal, fy=focal, cx=width / 2.0, cy=height / 2.0, R=R.float(), t=t.float(),
                  width=int(width), height=int(height))


def official_focal(width: int, height: int) -> float:
    return OFFICIAL_FOCAL_SCALE * max(width, height)


def official_camera(vertices: torch.Tensor, width: int, height: int, yaw_deg: float = 0.0,
                    elevation_deg: float = 0.0, distance: float | None = None,
                    margin: float = DEFAULT_MARGIN) -> Camera:
    """The official renderer's intrinsics: f = 5000/256 * max(W, H), principal point at the centre
    (a narrow ~2.9 degree view, so the camera stands tens of metres away).

    The official pipeline placed the body with the camera translation HMR2 estimated from each
    video frame. Motion capture has no such camera, so we place one: static, looking at the
    motion's bounding-box centre from the front (or yaw/elevation), as far as needed for the
    whole motion to fit with ``margin`` (see ``auto_camera``).
    """
    return auto_camera(vertices, width, height, yaw_deg=yaw_deg, elevation_deg=elevation_deg, distance=distance,
                       focal=official_focal(width, height), margin=margin)


VIDEO_CAMERA_KEYS = ("fx", "fy", "cx", "cy", "width", "height", "R", "t")


def camera_from_info(info: dict, width: int | None = None, height: int | None = None) -> Camera:
    """The camera a motion from video carries (``motion.meta["camera"]``, see
    ``models/motion/from_video.py``): intrinsics fx, fy, cx, cy in pixels of a ``width`` x ``height``
    image (this module's pixel convention), and the world->camera ``R`` [3,3] / ``t`` [3].

    With another ``width`` / ``height``, the source picture is scaled uniformly to fit inside the new
    one and centred (as a letterboxed resize of the video: no crop, no stretch); when the aspects
    match, that is a plain resize."""
    if not isinstance(info, dict):
        raise ValueError(f"a video camera is a dict with {', '.join(VIDEO_CAMERA_KEYS)}; got {type(info).__name__}")
    missing = [k for k in VIDEO_CAMERA_KEYS if k not in info]
    if missing:
        raise ValueError(f"the video camera lacks {', '.join(missing)} (it needs {', '.join(VIDEO_CAMERA_KEYS)})")
    w0, h0 = int(info["width"]), int(info["height"])
    if w0 < 1 or h0 < 1:
        raise ValueError(f"the video camera's image size {w0}x{h0} is not positive")
    fx, fy, cx, cy = (float(info[k]) for k in ("fx", "fy", "cx", "cy"))
    if not (fx > 0 and fy > 0):
        raise ValueError(f"the video camera's focal lengths must be positive, got fx={fx}, fy={fy}")
    R = torch.as_tensor(info["R"], dtype=torch.float32)
    t = torch.as_tensor(info["t"], dtype=torch.float32)
    if R.shape != (3, 3) or t.shape != (3,):
        raise ValueError(f"the video camera's R must be 3x3 and t 3 values, got {tuple(R.shape)} and {tuple(t.shape)}")
    width, height = int(width or w0), int(height or h0)
    s = min(width / w0, height / h0)
    ox, oy = (width - s * w0) / 2.0, (height - s * h0) / 2.0
    return Camera(fx=fx * s, fy=fy * s, cx=cx * s + ox, cy=cy * s + oy, R=R, t=t, width=width, height=height)
