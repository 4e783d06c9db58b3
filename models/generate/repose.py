"""Canonical appearance transfer (the paper's repose, skipped by the official release): the
reference is re-rendered in a standard A-pose by driving MIMO itself with one A-pose body render
on a white scene, before identity encoding."""

import math

import numpy as np
import torch

from .. import image_ops
from . import pipeline
from ..body.params import PoseParams
from ..render import render_motion

LEFT_SHOULDER, RIGHT_SHOULDER = 15, 16  # body_pose rows of SMPL joints 16 and 17
A_POSE_DEGREES = 45.0


def a_pose(degrees: float = A_POSE_DEGREES) -> PoseParams:
    """One frame: SMPL's T-pose with both arms lowered by ``degrees`` (the left arm lies along +X,
    so it turns by -degrees about +Z; the right arm by +degrees)."""
    body_pose = torch.zeros(1, 21, 3)
    angle = math.radians(degrees)
    body_pose[0, LEFT_SHOULDER, 2] = -angle
    body_pose[0, RIGHT_SHOULDER, 2] = angle
    return PoseParams(root_orient=torch.zeros(1, 3), body_pose=body_pose, trans=torch.zeros(1, 3))


def a_pose_render(body, colours: torch.Tensor, width: int, height: int, degrees: float = A_POSE_DEGREES,
                  device=None) -> np.ndarray:
    """The A-pose motion frame [1,H,W,3] uint8: the body's colours on black, framed from the front."""
    device = device or body.faces.device
    vertices, _ = body.pose(a_pose(degrees))
    images, _ = render_motion(vertices, body.faces, colours, width, height, device=device)
    return image_ops.to_uint8(images.clamp(0, 1).cpu())


@torch.no_grad()
def repose(models: pipeline.MIMOModels, reference_uint8: np.ndarray, motion_frame_uint8: np.ndarray,
           width: int, height: int, steps: int = 25, cfg: float = 3.5, seed: int = 42) -> np.ndarray:
    """The prepared reference [S,S,3] driven to the motion frame on white -> uint8 [H,W,3]."""
    identity = pipeline.encode_identity(models, reference_uint8, width, height)
    scene = pipeline.encode_scene(models, None, width, height)
    latents = pipeline.sample(models, identity, motion_frame_uint8, scene, width, height, steps=steps, cfg=cfg,
                              context_frames=1, overlap=0, seed=seed)
    frame = pipeline.decode_latents(models, latents)[0]
    return image_ops.to_uint8(frame.permute(1, 2, 0))
