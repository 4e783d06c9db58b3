"""BodyModel: an SMPL-family body (or the built-in demo body) posed with our own linear blend skinning.

SMPL's forward, step by step: shape blendshapes (v_template + shapedirs·β), rest joints from
J_regressor, pose blendshapes (posedirs · (R_j − I) of the non-root joints, row-major), forward
kinematics along ``parents``, linear blend skinning, then + trans.

The optional ``smplx`` package is deliberately *not* used at run time: it caps SMPL-H betas at 10,
needs hand-PCA arrays that AMASS's SMPL+H files lack, indexes extra joints by fixed vertex ids and
is under a non-commercial licence. It only serves as a test oracle (tests/test_body.py).
"""

import numpy as np
import torch

from .files import read_body_model
from .params import PoseParams
from .skeleton import FINGERS, SKELETONS, SMPL_JOINTS


def rotvec_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Axis-angle [...,3] -> rotation matrices [...,3,3] (Rodrigues, series near zero)."""
    theta2 = (rotvec * rotvec).sum(-1, keepdim=True)
    small = theta2 < 1e-8
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta2), theta2))
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)  # sin θ / θ
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / (theta * theta))  # (1 − cos θ) / θ²
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*rotvec.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye + a[..., None] * k + b[..., None] * (k @ k)


def _tensor(x, dtype=torch.float32) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", dtype).clone()
    return torch.tensor(np.array(x), dtype=dtype)  # a copy: read-only numpy arrays are fine


def _hand_joint_sets(kind: str, names) -> tuple[list[int], list[int]]:
    # Everything beyond the wrist: the wrist joint's own region (the palm) and all joints after it.
    # Matches the official MIMO renderer, which deletes the 'leftHand' (palm, skinned to the wrist)
    # and 'leftHandIndex1' (fingers, SMPL joint 22) segments of undetected hands.
    sides = []
    for side in ("left", "right"):
        if kind in ("smpl", "demo"):
            extra = [f"{side}_hand"]
        else:
            extra = [n for n in names if n.startswith(f"{side}_") and n[len(side) + 1:-1] in FINGERS]
        sides.append([names.index(f"{side}_wrist")] + [names.index(n) for n in extra])
    return sides[0], sides[1]


class BodyModel:
    """A skinned body. All tensors float32 (indices int64) on one device.

    kind: 'smpl' | 'smplh' | 'smplx' | 'demo'. joint_names / parents: the joint tree (parents[0] = −1).
    faces [T,3]; num_betas: shape coefficients used (0 = no shape space); hand_vertices (with
    left_/right_hand_vertices): vertices skinned mainly to a wrist, hand or finger joint.
    """

    def __init__(self, kind: str, v_template, faces, weights, parents, *, J_regressor=None,
                 joints=None, shapedirs=None, posedirs=None, joint_names=None, source: str = ""):
        self.kind = kind
        self.source = source
        self.parents = tuple(int(p) for p in parents)
        nj = len(self.parents)
        if joint_names is None:
            joint_names = SMPL_JOINTS if kind == "demo" else SKELETONS[kind][0]
        self.joint_names = tuple(joint_names)
        if len(self.joint_names) != nj or any(not -1 <= p < j for j, p in enumerate(self.parents)):
            raise ValueError(f"{kind} body: {len(self.joint_names)} names for {nj} parents, or parents not topological")
        self.v_template = _tensor(v_template)
        nv = self.v_template.shape[0]
        self.faces = _tensor(faces, torch.long)
        self.weights = _tensor(weights)
        if self.weights.shape != (nv, nj):
            raise ValueError(f"{kind} body: weights {tuple(self.weights.shape)}, expected ({nv}, {nj})")
        if (J_regressor is None) == (joints is None):
            raise ValueError("give exactly one of J_regressor (joints follow the shape) or joints (fixed)")
        self.J_regressor = None if J_regressor is None else _tensor(J_regressor)
        self.j_template = None if joints is None else _tensor(joints)
        s = None if shapedirs is None else _tensor(shapedirs)
        self.shapedirs = s if s is not None and s.shape[-1] > 0 else None  # [V,3,S]
        self.num_betas = 0 if self.shapedirs is None else self.shapedirs.shape[-1]
        # posedirs [V,3,P] -> [P, V*3], so that pose_feature @ posedirs gives per-vertex offsets
        p = None if posedirs is None else _tensor(posedirs)
        if p is not None and p.shape != (nv, 3, (nj - 1) * 9):
            raise ValueError(f"{kind} body: posedirs {tuple(p.shape)}, expected ({nv}, 3, {(nj - 1) * 9})")
        self.posedirs = None if p is None or not bool(p.any()) else p.reshape(nv * 3, -1).T.contiguous()
        left, right = _hand_joint_sets(kind, self.joint_names)
        owner = self.weights.argmax(1)
        self.left_hand_vertices = torch.nonzero(torch.isin(owner, torch.tensor(left))).flatten()
        self.right_hand_vertices = torch.nonzero(torch.isin(owner, torch.tensor(right))).flatten()
        self.hand_vertices = torch.cat([self.left_hand_vertices, self.right_hand_vertices]).sort().values

    # ------------------------------------------------------------------ basics
    @property
    def device(self) -> torch.device:
        return self.v_template.device

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]

    @property
    def num_joints(self) -> int:
        return len(self.parents)

    def to(self, device) -> "BodyModel":
        """This body on ``device``: a new object (self when already there); never moves self."""
        device = torch.device(device)
        if device == self.device:
            return self
        new = object.__new__(BodyModel)
        for key, value in self.__dict__.items():
            new.__dict__[key] = value.to(device) if isinstance(value, torch.Tensor) else value
        return new

    def __repr__(self) -> str:
        return (f"BodyModel({self.kind}, {self.num_vertices} vertices, {self.faces.shape[0]} faces, "
                f"{self.num_joints} joints, {self.num_betas} betas, {self.device})")

    # ------------------------------------------------------------------ rest shape
    def _betas(self, betas) -> torch.Tensor | None:
        if betas is None or self.shapedirs is None:
            return None
        b = torch.as_tensor(betas, dtype=torch.float32, device=self.device)
        if b.dim() == 2 and b.shape[0] == 1:
            b = b[0]
        if b.dim() != 1:
            raise ValueError(f"betas must be one shape vector [B], got shape {tuple(b.shape)}")
        if b.numel() >= self.num_betas:
            return b[: self.num_betas]
        return torch.cat([b, b.new_zeros(self.num_betas - b.numel())])

    def rest_vertices(self, betas=None) -> torch.Tensor:
        """[V,3] vertices at θ = 0 (shape blendshapes applied)."""
        b = self._betas(betas)
        return self.v_template if b is None else self.v_template + self.shapedirs @ b

    def rest_joints(self, betas=None) -> torch.Tensor:
        """[J,3] joint positions at θ = 0."""
        if self.J_regressor is None:
            return self.j_template
        return self.J_regressor @ self.rest_vertices(betas)

    # ------------------------------------------------------------------ posing
    def _param(self, x, shape: tuple, name: str) -> torch.Tensor:
        t = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        if tuple(t.shape) != shape:
            raise ValueError(f"PoseParams.{name} has shape {tuple(t.shape)}, expected {shape}")
        return t

    def full_pose(self, params: PoseParams) -> torch.Tensor:
        """PoseParams -> [F,J,3] axis-angle for every joint of this body (unused joints zero)."""
        frames = params.frames
        root = self._param(params.root_orient, (frames, 3), "root_orient")[:, None]
        body = self._param(params.body_pose, (frames, 21, 3), "body_pose")

        def hand(h, name):
            return zeros(15) if h is None else self._param(h, (frames, 15, 3), name)

        def zeros(n):
            return torch.zeros(frames, n, 3, dtype=torch.float32, device=self.device)

        if self.kind in ("smpl", "demo"):  # SMPL's hand joints 22/23 stay at zero
            parts = [root, body, zeros(2)]
        elif self.kind == "smplh":  # hands are absolute: zero = flat hand
            parts = [root, body, hand(params.left_hand, "left_hand"), hand(params.right_hand, "right_hand")]
        else:  # smplx: jaw and eyes at zero
            parts = [root, body, zeros(3), hand(params.left_hand, "left_hand"), hand(params.right_hand, "right_hand")]
        return torch.cat(parts, 1)

    def pose(self, params: PoseParams, chunk: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
        """Posed vertices [F,V,3] and joints [F,J,3], batched over frames (``chunk`` frames at a time)."""
        rotmats = rotvec_to_matrix(self.full_pose(params))
        trans = self._param(params.trans, (params.frames, 3), "trans")[:, None]
        v_shaped = self.rest_vertices(params.betas)
        j_rest = self.rest_joints(params.betas)
        outs = [self.skin(rotmats[i:i + chunk], v_shaped, j_rest) for i in range(0, params.frames, chunk)]
        if not outs:
            return v_shaped.new_zeros(0, self.num_vertices, 3), v_shaped.new_zeros(0, self.num_joints, 3)
        verts = torch.cat([o[0] for o in outs]) + trans
        joints = torch.cat([o[1] for o in outs]) + trans
        return verts, joints

    def skin(self, rotmats: torch.Tensor, v_shaped: torch.Tensor, j_rest: torch.Tensor):
        """Local rotations [F,J,3,3] -> (vertices [F,V,3], joints [F,J,3]) before translation."""
        frames, nj = rotmats.shape[:2]
        v = v_shaped.expand(frames, -1, -1)
        if self.posedirs is not None:
            eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
            feature = (rotmats[:, 1:] - eye).reshape(frames, -1)
            v = v + (feature @ self.posedirs).reshape(frames, -1, 3)
        # forward kinematics: global rotation and position of every joint
        g_rot, g_pos = [rotmats[:, 0]], [j_rest[0].expand(frames, 3)]
        for j in range(1, nj):
            p = self.parents[j]
            g_rot.append(g_rot[p] @ rotmats[:, j])
            g_pos.append(g_pos[p] + g_rot[p] @ (j_rest[j] - j_rest[p]))
        rot = torch.stack(g_rot, 1)  # [F,J,3,3]
        pos = torch.stack(g_pos, 1)  # [F,J,3]
        # skinning transforms: x -> R x + (pos − R j_rest), blended by the weights
        offset = pos - (rot @ j_rest[..., None]).squeeze(-1)
        blend = torch.cat([rot.reshape(frames, nj, 9), offset], -1)  # [F,J,12]
        per_vertex = (self.weights @ blend).reshape(frames, -1, 12)  # [F,V,12]
        r = per_vertex[..., :9].reshape(frames, -1, 3, 3)
        verts = (r @ v[..., None]).squeeze(-1) + per_vertex[..., 9:]
        return verts, pos


def load_body(path, device="cpu") -> BodyModel:
    """An SMPL / SMPL-H / SMPL-X model file (.pkl or .npz) as a BodyModel; the file decides the kind."""
    d = read_body_model(path)
    return BodyModel(d.kind, d.v_template, d.faces, d.weights, d.parents, J_regressor=d.J_regressor,
                     shapedirs=d.shapedirs, posedirs=d.posedirs, source=str(path)).to(device)
