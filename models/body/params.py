"""What a motion hands to a body model: per-frame SMPL-family parameters in the pack's world frame
(Y up, metres; at zero rotation the body faces +Z with its left on +X, as SMPL's canonical frame)."""

from dataclasses import dataclass

import torch


@dataclass
class PoseParams:
    root_orient: torch.Tensor  # [F,3] axis-angle of the pelvis (global orientation)
    body_pose: torch.Tensor  # [F,21,3] axis-angle of the 21 body joints after the pelvis (SMPL order)
    trans: torch.Tensor  # [F,3] translation added after rotating about the pelvis (SMPL semantics)
    left_hand: torch.Tensor | None = None  # [F,15,3] MANO order (index, middle, pinky, ring, thumb; 1..3)
    right_hand: torch.Tensor | None = None  # [F,15,3]
    betas: torch.Tensor | None = None  # [B] shape coefficients (any length; bodies use what they have)

    @property
    def frames(self) -> int:
        return self.root_orient.shape[0]
