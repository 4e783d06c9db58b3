"""What every motion loader refuses, in one place: non-finite values (naming the frames), frame rates
no capture has (outside 1-1000 fps, naming the value read) and shape vectors (betas) of a shape no
body model has. ``Motion`` and ``SkeletonAnimation`` run these on construction, so AMASS, BVH, FBX
and motion from video all refuse the same way."""

import numpy as np

from ..errors import MIMOInputError
from ..image_ops import frame_ranges

MIN_FPS, MAX_FPS = 1.0, 1000.0
MAX_BETAS = 400  # SMPL-X's shape space is the largest: 300 shape (+100 expression) components


class MotionError(MIMOInputError):
    """A motion that cannot be used; the message names the source and what is wrong."""


def check_finite(source: str, **arrays) -> None:
    """Refuse NaN / infinite values in per-frame arrays (frame axis first), naming the frames."""
    bad, where, frames = None, [], 0
    for name, value in arrays.items():
        if value is None:
            continue
        a = np.asarray(value)
        frames = max(frames, a.shape[0] if a.ndim else 1)
        rows = ~np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1) if a.ndim else ~np.isfinite(a).reshape(1)
        if rows.any():
            where.append(name)
            bad = rows if bad is None else (bad | rows if bad.shape == rows.shape else bad)
    if bad is not None:
        idx = np.flatnonzero(bad)
        raise MotionError(f"{source or 'the motion'}: frames {frame_ranges(idx)} (of {frames}, counted from 0) hold "
                          f"NaN or infinite values (in {', '.join(where)}); a motion needs finite numbers in every "
                          "frame. The file is damaged or was exported wrongly: re-export it, or cut those frames "
                          "out of it.")


def check_fps(fps, source: str) -> float:
    """The frame rate as a float, or a MotionError naming the value read when no capture has it."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise MotionError(f"{source or 'the motion'}: the frame rate {fps!r} is not a number.") from None
    if not (MIN_FPS <= value <= MAX_FPS):  # NaN fails too
        every = f" (one frame every {1.0 / value:g} s)" if np.isfinite(value) and value > 0 else ""
        raise MotionError(f"{source or 'the motion'}: a frame rate of {value:g} fps{every} is implausible; expected "
                          f"{MIN_FPS:g} to {MAX_FPS:g} fps. Fix the rate in the file (BVH 'Frame Time:', AMASS "
                          "'mocap_framerate', the FBX time mode) or re-export it.")
    return value


def check_betas(betas, source: str, frames: int | None = None) -> np.ndarray | None:
    """One shape vector [B] from ``betas`` ([B], [1,B] or [frames,B]: the first row), or a MotionError
    naming the file, what was expected and what was found."""
    if betas is None:
        return None
    b = np.asarray(betas, dtype=np.float64)
    rows_ok = b.ndim == 2 and (b.shape[0] == 1 or (frames is not None and b.shape[0] == frames))
    length = b.shape[-1] if b.ndim else 0
    if not (b.ndim == 1 or rows_ok) or not (1 <= length <= MAX_BETAS):
        per_frame = f", or one row per frame [{frames}, B]" if frames else ""
        raise MotionError(f"{source or 'the motion'}: 'betas' has shape {tuple(b.shape)}; expected one shape vector "
                          f"of 1 to {MAX_BETAS} values [B] (AMASS files hold 16; SMPL 10, SMPL-X up to 300){per_frame}. "
                          "The file is damaged or not an AMASS motion: re-export or re-download it.")
    b = b.reshape(-1) if b.ndim == 1 else b[0]
    if not np.isfinite(b).all():
        raise MotionError(f"{source or 'the motion'}: 'betas' holds NaN or infinite values; a body shape needs finite "
                          "numbers. Re-export or re-download the file.")
    return b
