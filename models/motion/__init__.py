"""Motion sources: AMASS .npz, Mixamo FBX/BVH (retargeted to SMPL), and the Motion clip they produce."""

from .amass import AMASSError, load_amass
from .bvh import BVHError, load_bvh, parse_bvh
from .fbx import FBXError, load_fbx
from .mixamo import SMPL_NEUTRAL_REST_JOINTS, retarget, smplh_neutral_rest_joints
from .motion import Motion
from .skeletal import SkeletonAnimation

__all__ = [
    "AMASSError", "BVHError", "FBXError", "Motion", "SMPL_NEUTRAL_REST_JOINTS", "SkeletonAnimation",
    "load_amass", "load_bvh", "load_fbx", "parse_bvh", "retarget", "smplh_neutral_rest_joints",
]
