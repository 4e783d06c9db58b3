"""SkeletonAnimation: a rig's joint tree and its animation, as BVH and FBX files give them.

Frame: Y up, metres where the source says so (FBX; BVH is unitless, see bvh.py). Joints are in
topological order (parents[j] < j, roots -1). Local transforms compose as
world[j] = world[parent] · (T(translation[j]) · R(rotation[j])), so a joint's world rotation is the
product of the local rotations down its chain. A frame rate within 1e-4 (relative) of a common one is
snapped to it (``placement.snap_fps``)."""

from dataclasses import dataclass

import numpy as np

from .checks import MotionError, check_finite, check_fps

from .placement import snap_fps


@dataclass
class SkeletonAnimation:
    names: tuple  # [J] joint names as in the file
    parents: np.ndarray  # [J] int, -1 for roots
    rest_rotations: np.ndarray  # [J,3,3] local rotations of the rest pose (BVH: identity)
    rest_translations: np.ndarray  # [J,3] local offsets from the parent in the rest pose (BVH OFFSET)
    rotations: np.ndarray  # [F,J,3,3] local rotations per frame
    translations: np.ndarray  # [F,J,3] local translations per frame (a root's: its world position)
    fps: float
    source: str = ""

    def __post_init__(self):
        self.names = tuple(self.names)
        self.parents = np.asarray(self.parents, dtype=np.int64)
        j = len(self.names)
        if self.parents.shape != (j,) or any(p >= i for i, p in enumerate(self.parents)):
            raise ValueError("SkeletonAnimation: parents must list each joint's parent before the joint.")
        f = self.rotations.shape[0]
        if self.rotations.shape != (f, j, 3, 3) or self.translations.shape != (f, j, 3):
            raise ValueError(f"SkeletonAnimation: expected rotations [F,{j},3,3] and translations [F,{j},3], got "
                             f"{self.rotations.shape} and {self.translations.shape}.")
        self.fps = snap_fps(check_fps(self.fps, self.source))
        check_finite(self.source, rotations=self.rotations, translations=self.translations)
        if not (np.isfinite(self.rest_rotations).all() and np.isfinite(self.rest_translations).all()):
            raise MotionError(f"{self.source or 'the animation'}: the rest pose (joint offsets / rest rotations) "
                              "holds NaN or infinite values; re-export the file.")  # 1 / 0.0333333 -> 30

    @property
    def frames(self) -> int:
        return self.rotations.shape[0]

    @property
    def offsets(self) -> np.ndarray:
        return self.rest_translations

    @property
    def root_translation(self) -> np.ndarray:
        """[F,3] world position of the first root joint."""
        return self.translations[:, 0]

    def index(self, name: str) -> int:
        return self.names.index(name)

    def _fk(self, rotations: np.ndarray, translations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        wr = np.empty_like(rotations)
        wp = np.empty_like(translations)
        for j, p in enumerate(self.parents):
            if p < 0:
                wr[..., j, :, :], wp[..., j, :] = rotations[..., j, :, :], translations[..., j, :]
            else:
                wr[..., j, :, :] = wr[..., p, :, :] @ rotations[..., j, :, :]
                wp[..., j, :] = wp[..., p, :] + np.einsum("...ab,...b->...a", wr[..., p, :, :], translations[..., j, :])
        return wr, wp

    def world(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame world rotations [F,J,3,3] and joint positions [F,J,3]."""
        return self._fk(self.rotations, self.translations)

    def rest_world(self) -> tuple[np.ndarray, np.ndarray]:
        """Rest-pose world rotations [J,3,3] and joint positions [J,3]."""
        return self._fk(self.rest_rotations, self.rest_translations)
