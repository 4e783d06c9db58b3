"""A scripted STAND-IN for NLF's TorchScript pose estimator, for the demo workflow and the tests.

It is *not* NLF: it has no network and no detector and ignores the pixels. It is a
``torch.jit.script``-ed module with NLF's method ``detect_smpl_batched`` and NLF's output dict (boxes as
x, y, w, h, score; pose [P,72]; betas [P,10]; trans [P,3] in metres; joints3d / vertices3d in millimetres;
joints2d projected with the intrinsics it was given, or NLF's 55-degree default), and it "detects" the
same single person in EVERY frame: the pack's demo body standing upright facing the camera (arms
lowered) with its pelvis centred about 4 m in front of the camera. The body is posed once, when the
file is written, and stored as buffers.

    write_nlf_standin(ComfyUI/models/nlf/nlf_standin.torchscript)

Real NLF: ``nlf_l_multi_0.3.2.torchscript`` from github.com/isarandi/nlf/releases (non-commercial).
"""

# ruff: noqa: UP006, UP045  (TorchScript reads the typing annotations of detect_smpl_batched)
from __future__ import annotations

import importlib
import math
import warnings
from pathlib import Path
from typing import Dict, List, Optional  # noqa: UP035  TorchScript annotations

import torch

STANDIN_NAME = "nlf_standin.torchscript"
PELVIS_CAMERA = (0.0, 0.1, 4.0)  # metres, camera frame (x right, y down, z forward)


class NLFStandIn(torch.nn.Module):
    """Scripted NLF stand-in: one fixed person (buffers ``pose`` [72], ``betas`` [10], ``trans`` [3] in
    metres, ``joints`` [J,3] / ``vertices`` [V,3] in millimetres, camera frame) in every frame."""

    def __init__(self, pose, betas, trans, joints_mm, vertices_mm):
        super().__init__()
        self.register_buffer("pose", pose.float().reshape(72))
        self.register_buffer("betas", betas.float().reshape(10))
        self.register_buffer("trans", trans.float().reshape(3))
        self.register_buffer("joints", joints_mm.float())
        self.register_buffer("vertices", vertices_mm.float())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images

    @torch.jit.export
    def detect_smpl_batched(self, images: torch.Tensor, intrinsic_matrix: Optional[torch.Tensor] = None,
                            distortion_coeffs: Optional[torch.Tensor] = None,
                            extrinsic_matrix: Optional[torch.Tensor] = None,
                            world_up_vector: Optional[torch.Tensor] = None, default_fov_degrees: float = 55.0,
                            internal_batch_size: int = 64, antialias_factor: int = 1, num_aug: int = 1,
                            detector_threshold: float = 0.3, detector_nms_iou_threshold: float = 0.7,
                            max_detections: int = 150, suppress_implausible_poses: bool = True,
                            beta_regularizer: float = 10.0,
                            model_name: str = "smpl") -> Dict[str, List[torch.Tensor]]:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError("images must be uint8 [N,3,H,W]")
        if model_name != "smpl":
            raise ValueError("this NLF stand-in only has SMPL")
        h, w = images.shape[2], images.shape[3]
        if intrinsic_matrix is None:  # NLF's default: the fov across the longer side, centre (W-1)/2, (H-1)/2
            f = float(max(h, w)) / (2.0 * math.tan(default_fov_degrees * math.pi / 360.0))
            k = torch.tensor([[f, 0.0, (w - 1) / 2.0], [0.0, f, (h - 1) / 2.0], [0.0, 0.0, 1.0]])
        else:
            k = intrinsic_matrix.reshape(-1, 3, 3)[0].float().cpu()
        focal = torch.stack([k[0, 0], k[1, 1]])
        centre = torch.stack([k[0, 2], k[1, 2]])
        joints2d = self.joints[:, :2] / self.joints[:, 2:] * focal + centre
        verts2d = self.vertices[:, :2] / self.vertices[:, 2:] * focal + centre
        lo = verts2d.min(0).values
        hi = verts2d.max(0).values
        box = torch.cat([lo, hi - lo, torch.ones(1)])
        out: Dict[str, List[torch.Tensor]] = {}
        for key in ["boxes", "pose", "betas", "trans", "joints3d", "vertices3d", "joints2d"]:
            out[key] = []
        device = images.device
        for _ in range(images.shape[0]):
            out["boxes"].append(box[None].to(device))
            out["pose"].append(self.pose[None].to(device))
            out["betas"].append(self.betas[None].to(device))
            out["trans"].append(self.trans[None].to(device))
            out["joints3d"].append(self.joints[None].to(device))
            out["vertices3d"].append(self.vertices[None].to(device))
            out["joints2d"].append(joints2d[None].to(device))
        return out


def _pack_module(name: str):
    if __package__ and "." in __package__:  # imported as <pack>.devtools.nlf_standin
        return importlib.import_module(f"{__package__.rsplit('.', 1)[0]}.{name}")
    from .run_demo import load_pack

    return importlib.import_module(f"{load_pack().__name__}.{name}")


def standing_pose() -> torch.Tensor:
    """SMPL pose [72] in the camera frame: upright facing the camera (root 180 degrees about X, since
    the camera's Y points down and Z forward), arms lowered about 60 degrees from the T-pose, elbows bent a little."""
    pose = torch.zeros(24, 3)
    pose[0] = torch.tensor([math.pi, 0.0, 0.0])
    pose[16] = torch.tensor([0.0, 0.0, -1.0])  # left shoulder (the body's +X arm) down
    pose[17] = torch.tensor([0.0, 0.0, 1.0])  # right shoulder down
    pose[18] = torch.tensor([0.0, -0.3, 0.0])  # elbows
    pose[19] = torch.tensor([0.0, 0.3, 0.0])
    return pose.reshape(72)


def nlf_standin(pelvis=PELVIS_CAMERA) -> NLFStandIn:
    """The stand-in module (not scripted): the demo body posed once in the camera frame."""
    body = _pack_module("models.body").demo_body()
    params_mod = _pack_module("models.body.params")
    pose = standing_pose()
    trans = torch.tensor(pelvis, dtype=torch.float32) - body.rest_joints()[0].float()
    params = params_mod.PoseParams(root_orient=pose[None, :3], body_pose=pose[3:66].reshape(1, 21, 3),
                                   trans=trans[None])
    with torch.no_grad():
        vertices, joints = body.pose(params)
    return NLFStandIn(pose, torch.zeros(10), trans, joints[0, :24] * 1000.0, vertices[0] * 1000.0)


def write_nlf_standin(path: str | Path = STANDIN_NAME, pelvis=PELVIS_CAMERA) -> Path:
    """Script the stand-in and save it as a TorchScript file (what MIMO Motion From Video loads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated; NLF ships TorchScript
        torch.jit.script(nlf_standin(pelvis)).save(str(path))
    return path


__all__ = ["STANDIN_NAME", "NLFStandIn", "nlf_standin", "standing_pose", "write_nlf_standin"]
