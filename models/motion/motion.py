"""Motion: per-frame SMPL(-H) parameters of one clip, with resampling, trimming and looping.

World frame (the pack's, as ``PoseParams``): Y up, metres; at zero root rotation the body faces +Z
with its left on +X. SMPL semantics: the body is rotated about its rest pelvis joint J0(betas) by
``root_orient``, then ``trans`` is added (so the pelvis is at J0 + trans when the root is upright)."""

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..body.params import PoseParams
from . import rotations as rot
from .checks import check_betas, check_finite, check_fps


@dataclass
class Motion:
    root_orient: np.ndarray  # [F,3] axis-angle of the pelvis
    body_pose: np.ndarray  # [F,21,3] axis-angle, SMPL body joints 1..21
    trans: np.ndarray  # [F,3] metres
    fps: float
    left_hand: np.ndarray | None = None  # [F,15,3] MANO order, absolute (flat hand mean)
    right_hand: np.ndarray | None = None  # [F,15,3]
    betas: np.ndarray | None = None  # [B] as given by the source (AMASS: 16)
    gender: str = "neutral"
    source: str = ""
    model_type: str = "smplh"  # the body family the parameters were made for: smpl, smplh, smplx
    meta: dict = field(default_factory=dict)  # free-form notes (e.g. the original fps)

    def __post_init__(self):
        for name in ("root_orient", "body_pose", "trans", "left_hand", "right_hand", "betas"):
            value = getattr(self, name)
            setattr(self, name, None if value is None else np.asarray(value, dtype=np.float64))
        n = self.root_orient.shape[0]
        expect = {"root_orient": (n, 3), "body_pose": (n, 21, 3), "trans": (n, 3),
                  "left_hand": (n, 15, 3), "right_hand": (n, 15, 3)}
        for name, shape in expect.items():
            value = getattr(self, name)
            if value is not None and value.shape != shape:
                raise ValueError(f"Motion.{name} has shape {value.shape}, expected {shape}.")
        if n < 1:
            raise ValueError("A motion needs at least one frame.")
        self.fps = check_fps(self.fps, self.source)
        check_finite(self.source, root_orient=self.root_orient, body_pose=self.body_pose, trans=self.trans,
                     left_hand=self.left_hand, right_hand=self.right_hand)
        self.betas = check_betas(self.betas, self.source, n)

    @property
    def frames(self) -> int:
        return self.root_orient.shape[0]

    @property
    def duration(self) -> float:
        """Seconds covered: frames / fps (each frame lasts 1/fps)."""
        return self.frames / self.fps

    def params(self, device=None) -> PoseParams:
        """The clip as torch float32 ``PoseParams`` for a body model."""
        def t(a):
            return None if a is None else torch.as_tensor(a, dtype=torch.float32, device=device)

        return PoseParams(root_orient=t(self.root_orient), body_pose=t(self.body_pose), trans=t(self.trans),
                          left_hand=t(self.left_hand), right_hand=t(self.right_hand), betas=t(self.betas))

    def _rotations(self) -> dict[str, np.ndarray]:
        out = {"root_orient": self.root_orient[:, None], "body_pose": self.body_pose}
        for name in ("left_hand", "right_hand"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    def _take(self, index: np.ndarray) -> "Motion":
        def pick(a):
            return None if a is None else a[index]

        return replace(self, root_orient=pick(self.root_orient), body_pose=pick(self.body_pose),
                       trans=pick(self.trans), left_hand=pick(self.left_hand), right_hand=pick(self.right_hand),
                       meta=dict(self.meta))

    def resample(self, fps: float) -> "Motion":
        """The clip at another frame rate, same duration (round(frames * fps / self.fps) frames). Output frame
        k shows time k / fps: joint rotations are slerped (quaternions, shorter arc), translation lerped;
        times past the last input frame hold the last frame."""
        if not (fps > 0):
            raise ValueError(f"Target fps must be positive, got {fps}.")
        if abs(fps - self.fps) < 1e-9:
            return self._take(np.arange(self.frames))
        n = max(1, round(self.frames * fps / self.fps))
        u = np.arange(n) * (self.fps / fps)  # position in input frames
        u = np.where(np.abs(u - np.round(u)) < 1e-9, np.round(u), u)  # exact hits stay exact
        i0 = np.minimum(np.floor(u).astype(np.int64), self.frames - 1)
        i1 = np.minimum(i0 + 1, self.frames - 1)
        w = np.clip(u - i0, 0.0, 1.0)
        out = {}
        for name, aa in self._rotations().items():
            q = rot.aa_to_quat(aa)
            out[name] = rot.quat_to_aa(rot.quat_slerp(q[i0], q[i1], w[:, None]))
        out["root_orient"] = out["root_orient"][:, 0]
        out["trans"] = self.trans[i0] * (1 - w[:, None]) + self.trans[i1] * w[:, None]
        res = replace(self, fps=float(fps), meta=dict(self.meta), **{"left_hand": None, "right_hand": None, **out})
        res.meta.setdefault("source_fps", self.fps)
        return res

    def trim(self, start: int = 0, end: int | None = None) -> "Motion":
        """Frames start <= k < end (end None: to the last frame)."""
        end = self.frames if end is None else end
        if not (0 <= start < self.frames):
            raise ValueError(f"Start frame {start} is outside the clip: it has {self.frames} frames "
                             f"(0..{self.frames - 1}).")
        if end > self.frames:
            raise ValueError(f"End frame {end} is past the clip's end ({self.frames} frames).")
        if end <= start:
            raise ValueError(f"Empty range: end frame {end} is not after start frame {start}.")
        return self._take(np.arange(start, end))

    def loop(self, frames: int, advance_root: bool = False) -> "Motion":
        """Repeat the clip to exactly `frames` frames (shorter: the first `frames`). With advance_root,
        each repetition is shifted horizontally (X, Z) by the clip's mean velocity x its length, so a walk
        keeps walking instead of jumping back; height and rotations (incl. heading) are repeated as is."""
        if frames < 1:
            raise ValueError(f"Loop length must be at least 1 frame, got {frames}.")
        k = np.arange(frames)
        out = self._take(k % self.frames)
        if advance_root and self.frames > 1:
            step = (self.trans[-1] - self.trans[0]) * self.frames / (self.frames - 1)
            step[1] = 0.0
            out.trans = out.trans + (k // self.frames)[:, None] * step
        return out
