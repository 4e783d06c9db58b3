"""Placing a clip in the pack's world after it is cut to the frames used: frame-rate snapping, facing the
camera, feet on the floor, starting at the origin.

World: Y up, metres; at zero root rotation the body faces +Z (towards the default camera, which looks from
+Z) with its left on +X. SMPL rotates the body about its rest pelvis J0 and then adds ``trans``."""

import numpy as np
import torch

from . import rotations as rot
from .checks import MotionError
from .motion import Motion

COMMON_FPS = (8.0, 10.0, 12.0, 15.0, 24000 / 1001, 24.0, 25.0, 30000 / 1001, 30.0, 48.0, 50.0, 60000 / 1001, 60.0,
              72.0, 90.0, 96.0, 100.0, 120.0, 144.0, 150.0, 180.0, 200.0, 240.0, 250.0, 360.0, 480.0, 500.0, 960.0,
              1000.0)
SNAP_TOLERANCE = 1e-4  # relative
FACING = ("keep", "face camera (first frame)", "face camera (average)")
FLOORS = ("feet on the floor", "as captured")  # AMASS: the posed mesh's lowest point at y = 0, or the capture's


def snap_fps(fps: float, tolerance: float = SNAP_TOLERANCE) -> float:
    """A common frame rate when ``fps`` is within ``tolerance`` (relative) of one (a BVH 'Frame Time:
    0.0333333' gives 30, not 30.00003), else ``fps`` unchanged."""
    fps = float(fps)
    best = min(COMMON_FPS, key=lambda r: abs(fps - r) / r)
    return float(best) if abs(fps - best) <= tolerance * best else fps


def headings(motion: Motion) -> np.ndarray:
    """[F] yaw (radians, about +Y) of the pelvis per frame: 0 when the body faces +Z. Taken from the pelvis'
    forward (+Z) and left (+X) axes together, so it stays defined for a body lying down."""
    r = rot.aa_to_matrix(motion.root_orient)
    forward, left = r[:, :, 2], r[:, :, 0]
    # a body turned by yaw a has forward (sin a, ., cos a) and left (cos a, ., -sin a)
    s = forward[:, 0] - left[:, 2]
    c = forward[:, 2] + left[:, 0]
    return np.arctan2(s, c)


def rotate_about_pelvis(motion: Motion, yaw: float, rest_pelvis, pivot=None) -> Motion:
    """The clip turned by ``yaw`` (radians) about the vertical axis through ``pivot`` (default: the pelvis at
    the first frame). ``rest_pelvis``: the driven body's rest pelvis J0 [3]."""
    j0 = np.asarray(rest_pelvis, dtype=np.float64).reshape(3)
    turn = rot.axis_rotation("y", float(yaw))
    pelvis = motion.trans + j0
    pivot = pelvis[0] if pivot is None else np.asarray(pivot, dtype=np.float64).reshape(3)
    out = motion._take(np.arange(motion.frames))
    out.root_orient = rot.matrix_to_aa(turn @ rot.aa_to_matrix(motion.root_orient))
    out.trans = (pelvis - pivot) @ turn.T + pivot - j0
    return out


def face(motion: Motion, mode: str, rest_pelvis) -> Motion:
    """``mode``: "keep" (as captured), "face camera (first frame)" (the first frame faces +Z) or
    "face camera (average)" (the mean heading over the clip, a circular mean, faces +Z); a rotation about
    the vertical axis through the first frame's pelvis."""
    if mode not in FACING:
        raise ValueError(f"facing must be one of {', '.join(FACING)}; got {mode!r}.")
    if mode == "keep":
        return motion
    yaw = headings(motion)
    if mode == FACING[1]:
        target = yaw[0]
    else:
        target = float(np.arctan2(np.sin(yaw).sum(), np.cos(yaw).sum()))
    out = rotate_about_pelvis(motion, -target, rest_pelvis)
    out.meta["facing"] = {"mode": mode, "turned_degrees": float(np.degrees(-target))}
    return out


def lowest_point(motion: Motion, body, chunk: int = 64) -> float:
    """The lowest y of the posed mesh of ``body`` over the whole clip (metres)."""
    low = np.inf
    with torch.no_grad():
        for start in range(0, motion.frames, chunk):
            part = motion._take(np.arange(start, min(motion.frames, start + chunk))).params(body.device)
            verts, _ = body.pose(part)
            low = min(low, float(verts[..., 1].min()))
    return low


def ground(motion: Motion, body) -> Motion:
    """The clip shifted vertically so that the lowest point of ``body``'s posed mesh over the clip (the
    soles, for a standing clip) is at y = 0."""
    low = lowest_point(motion, body)
    out = motion._take(np.arange(motion.frames))
    out.trans = motion.trans - np.array([0.0, low, 0.0])
    out.meta["floor_shift"] = -low
    return out


def centre(motion: Motion, rest_pelvis) -> Motion:
    """The clip shifted horizontally so that the pelvis starts at x = z = 0."""
    j0 = np.asarray(rest_pelvis, dtype=np.float64).reshape(3)
    out = motion._take(np.arange(motion.frames))
    shift = (motion.trans[0] + j0) * np.array([1.0, 0.0, 1.0])
    out.trans = motion.trans - shift
    return out


def place(motion: Motion, facing: str, rest_pelvis, ground_body=None, centre_start: bool = True) -> Motion:
    """What the loaders do to the kept frames: ``face`` it, then (with ``ground_body``) start the pelvis at
    x = z = 0 (``centre_start``) and put the lowest point of the posed mesh on the floor."""
    motion = face(motion, facing, rest_pelvis)
    if ground_body is None:
        return motion
    return ground(centre(motion, rest_pelvis) if centre_start else motion, ground_body)


def cut_clip(motion: Motion, fps: float, start_frame: int, max_frames: int, facing: str, rest_pelvis,
             ground_body=None, centre_start: bool = True, source: str = "the motion") -> Motion:
    """What the motion loaders do: resample to ``fps`` (0: keep the source's), keep ``max_frames`` (0: all)
    from ``start_frame`` (at the output fps), then ``place`` the kept frames."""
    if fps > 0:
        motion = motion.resample(fps)
    if start_frame >= motion.frames:
        raise MotionError(f"start_frame {start_frame} is past the end of {source}: it has {motion.frames} frames at "
                          f"{motion.fps:g} fps. Use a start_frame below {motion.frames}.")
    end = motion.frames if max_frames <= 0 else min(motion.frames, start_frame + max_frames)
    return place(motion.trim(start_frame, end), facing, rest_pelvis, ground_body, centre_start)
