"""Any common rig (Mixamo, CMU, Biped, Poser/DAZ, Unreal/Rigify, SMPL names; FBX or BVH) → SMPL-family
Motion by world-space retargeting. Which source joint drives which SMPL joint: ``rig_names.assign``; a
rig whose legs or arms do not map is refused (never a motion with frozen limbs).

For each mapped joint j (source joint s):
    D_t = W_t[s] · W_rest[s]^T          the source bone's world rotation change from its rest pose
    G_t[j] = D_t · A[j]                 the target joint's world rotation
    θ_t[j] = G_t[parent(j)]^T · G_t[j]  local rotation in the target (SMPL) tree
This ignores each bone's local axis conventions and PreRotations. SMPL's rest pose is a T-pose with
identity world rotations, so A[j] is the rotation that takes the target's rest bones onto the source's
rest bones (it is I for a T-posed source, a swing of the arms for an A-posed one):
- a joint with several mapped children (pelvis, chest, wrist): the best-fit rotation of its child
  directions (Kabsch);
- a joint with one mapped child: its parent's A, then the smallest extra rotation that aligns the bone;
- a leaf: its parent's A. Unmapped target joints keep an identity local rotation.
Twist about a bone cannot be seen from rest directions: where source and target rests differ by more
than a swing (a rotation about an axis perpendicular to the bone), A is only approximate.

Before that the source is turned upright when its rest pose stands along another axis (a Z-up export:
the pelvis -> chest direction is snapped to the nearest axis and turned onto +Y by a quarter or half
turn), then about Y so that its rest hips (else shoulders) line up with the target's left-right axis
(+X): the motion comes out facing +Z like SMPL. Root translation: the source
hips path times (target leg length / source leg length), hip→knee→ankle at rest, so steps fit the new
body. Floor convention: with floor=True the whole clip is shifted vertically so that the lowest
ankle/foot joint centre over the clip sits at y = 0 (the mesh sole is a few cm lower); with center=True
the pelvis starts at x = z = 0."""

import logging
import re

import numpy as np

from ..body.skeleton import FINGERS, HAND, SKELETONS, SMPL_BODY
from . import rotations as rot
from . import rig_names
from .motion import Motion
from .skeletal import SkeletonAnimation

log = logging.getLogger("MIMO")

MIXAMO_TO_SMPL = {
    "Hips": "pelvis", "LeftUpLeg": "left_hip", "RightUpLeg": "right_hip", "Spine": "spine1",
    "LeftLeg": "left_knee", "RightLeg": "right_knee", "Spine1": "spine2", "LeftFoot": "left_ankle",
    "RightFoot": "right_ankle", "Spine2": "spine3", "LeftToeBase": "left_foot", "RightToeBase": "right_foot",
    "Neck": "neck", "LeftShoulder": "left_collar", "RightShoulder": "right_collar", "Head": "head",
    "LeftArm": "left_shoulder", "RightArm": "right_shoulder", "LeftForeArm": "left_elbow",
    "RightForeArm": "right_elbow", "LeftHand": "left_wrist", "RightHand": "right_wrist",
}
for _side in ("Left", "Right"):
    for _f in FINGERS:
        for _i in (1, 2, 3):
            MIXAMO_TO_SMPL[f"{_side}Hand{_f.capitalize()}{_i}"] = f"{_side.lower()}_{_f}{_i}"

# Approximate SMPL neutral rest joints (betas = 0), metres, SMPL frame (Y up, facing +Z, left on +X).
# Typical values to within ~1-2 cm; for retargeting without a body model, not for exact fitting.
SMPL_NEUTRAL_REST_JOINTS = np.array([
    [-0.002, -0.223, 0.028], [0.070, -0.314, 0.022], [-0.068, -0.315, 0.021], [-0.003, -0.107, -0.003],
    [0.110, -0.697, 0.016], [-0.109, -0.697, 0.015], [0.004, 0.030, 0.002], [0.087, -1.090, -0.027],
    [-0.089, -1.093, -0.027], [0.002, 0.088, 0.027], [0.120, -1.147, 0.093], [-0.118, -1.150, 0.097],
    [-0.001, 0.293, -0.016], [0.076, 0.201, -0.005], [-0.077, 0.200, -0.009], [0.004, 0.360, 0.038],
    [0.173, 0.233, -0.014], [-0.173, 0.233, -0.016], [0.430, 0.213, -0.037], [-0.432, 0.213, -0.037],
    [0.681, 0.222, -0.043], [-0.683, 0.222, -0.043], [0.766, 0.213, -0.057], [-0.769, 0.213, -0.057],
])
# Left-hand knuckles relative to the wrist, then the two phalanx steps (mirrored in x for the right hand).
_HAND_LAYOUT = {  # finger: (knuckle offset, step to joint 2, step to joint 3)
    "index": ((0.090, -0.003, 0.025), (0.035, -0.002, 0.0), (0.025, -0.002, 0.0)),
    "middle": ((0.095, -0.003, 0.003), (0.038, -0.002, 0.0), (0.027, -0.002, 0.0)),
    "pinky": ((0.075, -0.008, -0.035), (0.022, -0.002, -0.004), (0.018, -0.002, -0.003)),
    "ring": ((0.088, -0.006, -0.017), (0.032, -0.002, -0.002), (0.025, -0.002, -0.001)),
    "thumb": ((0.025, -0.015, 0.025), (0.025, -0.004, 0.022), (0.022, -0.003, 0.015)),
}


def smplh_neutral_rest_joints() -> np.ndarray:
    """[52,3] approximate SMPL-H neutral rest joints: the SMPL body table plus a generic flat hand."""
    out = [SMPL_NEUTRAL_REST_JOINTS[:22]]
    for wrist, sign in ((20, 1.0), (21, -1.0)):
        mirror = np.array([sign, 1.0, 1.0])
        for f in FINGERS:
            p = SMPL_NEUTRAL_REST_JOINTS[wrist].copy()
            for step in _HAND_LAYOUT[f]:
                p = p + np.array(step) * mirror
                out.append(p[None])
    return np.concatenate(out)


def normalize_name(name: str) -> str:
    """'mixamorig:LeftArm', 'mixamorig1:LeftArm', 'mixamorig_LeftArm', 'Armature|LeftArm' → 'LeftArm'."""
    name = re.sub(r"^.*[:|]", "", name.strip())
    return re.sub(r"^mixamorig\d*_", "", name, flags=re.IGNORECASE)


def joint_map(source_names, target_names, source_parents=None) -> dict[int, int]:
    """{target joint index: source joint index}. With the rig's parents: every known convention
    (``rig_names.assign``); without: Mixamo names only (case-insensitive)."""
    if source_parents is not None:
        return rig_names.indices(rig_names.assign(source_names, source_parents), target_names)
    table = {k.lower(): v for k, v in MIXAMO_TO_SMPL.items()}
    target = {n: i for i, n in enumerate(target_names)}
    out = {}
    for s, name in enumerate(source_names):
        smpl = table.get(normalize_name(name).lower())
        if smpl in target and target[smpl] not in out:
            out[target[smpl]] = s
    return out


def _kabsch(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Rotation R with R a_i ≈ b_i (unit directions); None when the a_i are (nearly) collinear."""
    h = a.T @ b
    u, s, vt = np.linalg.svd(h)
    if s[1] < 1e-6 * max(s[0], 1e-12):
        return None
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    return vt.T @ np.diag([1.0, 1.0, d]) @ u.T


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(np.linalg.norm(v), 1e-12)


def _rest_offsets(mapping, parents, target_rest, source_rest) -> np.ndarray:
    n = len(parents)
    children = [[c for c in range(n) if parents[c] == j and c in mapping] for j in range(n)]
    a = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
    for j in range(n):
        base = a[parents[j]] if parents[j] >= 0 else np.eye(3)
        kids = children[j] if j in mapping else []
        if not kids:
            a[j] = base
            continue
        dt = np.stack([_unit(target_rest[c] - target_rest[j]) for c in kids])
        ds = np.stack([_unit(source_rest[mapping[c]] - source_rest[mapping[j]]) for c in kids])
        fit = _kabsch(dt, ds) if len(kids) > 1 else None
        if fit is not None:
            a[j] = fit
        else:  # one bone (or collinear ones): the parent's offset plus the smallest correction
            a[j] = rot.rotation_between(base @ dt[0], ds[0]) @ base
    return a


def _upright(mapping, names, source_rest) -> np.ndarray:
    """Quarter/half turn taking the rest pose's up axis (pelvis -> chest, else ankles -> pelvis, snapped
    to the nearest coordinate axis) onto +Y; identity for Y-up rigs."""
    index = {n: i for i, n in enumerate(names)}
    pelvis = mapping.get(index.get("pelvis"))
    if pelvis is None:
        return np.eye(3)
    up = None
    for key in ("spine3", "neck", "head", "spine2", "spine1"):
        j = mapping.get(index.get(key))
        if j is not None:
            up = source_rest[j] - source_rest[pelvis]
            break
    if up is None:
        ankles = [mapping[index[k]] for k in ("left_ankle", "right_ankle") if index.get(k) in mapping]
        if not ankles:
            return np.eye(3)
        up = source_rest[pelvis] - source_rest[ankles].mean(0)
    if np.linalg.norm(up) < 1e-9:
        return np.eye(3)
    axis = np.zeros(3)
    k = int(np.argmax(np.abs(up)))
    axis[k] = np.sign(up[k])
    if axis[1] > 0:
        return np.eye(3)
    if axis[1] < 0:
        return rot.axis_rotation("x", np.pi)
    return rot.rotation_between(axis, np.array([0.0, 1.0, 0.0]))


def _heading(mapping, names, target_rest, source_rest) -> np.ndarray:
    """Rotation about Y taking the source's rest left-right axis onto the target's."""
    index = {n: i for i, n in enumerate(names)}
    for left, right in (("left_hip", "right_hip"), ("left_shoulder", "right_shoulder")):
        li, ri = index.get(left), index.get(right)
        if li in mapping and ri in mapping:
            src = source_rest[mapping[li]] - source_rest[mapping[ri]]
            dst = target_rest[li] - target_rest[ri]
            a = np.arctan2(src[0], src[2]) - np.arctan2(dst[0], dst[2])  # yaw of each, about +Y
            if np.hypot(src[0], src[2]) > 1e-9:
                return rot.axis_rotation("y", -a)
    return np.eye(3)


def _leg_length(rest, index) -> float:
    total = []
    for side in ("left", "right"):
        ids = [index.get(f"{side}_{j}") for j in ("hip", "knee", "ankle")]
        if None not in ids:
            total.append(np.linalg.norm(rest[ids[1]] - rest[ids[0]]) + np.linalg.norm(rest[ids[2]] - rest[ids[1]]))
    return float(np.mean(total)) if total else 0.0


def retarget(anim: SkeletonAnimation, target_rest_joints, target_parents, target_names=None, betas=None,
             center: bool = True, floor: bool = True) -> Motion:
    """Retarget a Mixamo-named animation onto an SMPL-family rest skeleton (SMPL 24, SMPL-H 52, SMPL-X 55
    joints; names follow the count unless given). Returns a Motion in the pack's world frame."""
    parents = np.asarray(target_parents, dtype=np.int64)
    target_rest = np.asarray(target_rest_joints, dtype=np.float64)
    n = len(parents)
    if target_names is None:
        by_count = {len(v[0]): v[0] for v in SKELETONS.values()} | {22: SMPL_BODY}
        if n not in by_count:
            raise ValueError(f"Cannot tell the target skeleton from {n} joints: pass target_names.")
        target_names = by_count[n]
    names = tuple(target_names)
    if target_rest.shape != (n, 3):
        raise ValueError(f"target_rest_joints must be [{n},3] to match the parents, got {target_rest.shape}.")
    found = rig_names.assign(anim.names, anim.parents)
    why = rig_names.refusal(anim.source, anim.names, found)
    if why:
        raise ValueError(why)
    mapping = rig_names.indices(found, names)
    missing = [names[j] for j in range(min(n, 22)) if j not in mapping]
    if missing:
        log.info("Retargeting %s: no source joint for %s (kept at rest).", anim.source, ", ".join(missing))
    log.debug("Retargeting %s: %s", anim.source, rig_names.mapped_summary(found, anim.names))

    w_src, p_src = anim.world()
    w_rest, p_rest = anim.rest_world()
    up = _upright(mapping, names, p_rest)
    turn = _heading(mapping, names, target_rest, p_rest @ up.T) @ up
    w_src, p_src = turn @ w_src, p_src @ turn.T
    w_rest, p_rest = turn @ w_rest, p_rest @ turn.T

    offsets = _rest_offsets(mapping, parents, target_rest, p_rest)
    frames = anim.frames
    g = np.empty((frames, n, 3, 3))
    for j in range(n):
        if j in mapping:
            s = mapping[j]
            g[:, j] = w_src[:, s] @ w_rest[s].T @ offsets[j]
        else:
            g[:, j] = g[:, parents[j]]
    local = g.copy()
    local[:, 1:] = np.swapaxes(g[:, parents[1:]], -1, -2) @ g[:, 1:]

    index = {name: i for i, name in enumerate(names)}
    src_index = {name: mapping[i] for name, i in index.items() if i in mapping}
    leg_t = _leg_length(target_rest, index)
    leg_s = _leg_length(p_rest, src_index)
    if leg_t > 0 and leg_s > 0:
        scale = leg_t / leg_s
    else:  # no legs: compare the hips' height above the lowest rest joint
        hs = p_rest[mapping[0], 1] - p_rest[:, 1].min()
        ht = target_rest[0, 1] - target_rest[:, 1].min()
        scale = ht / hs if hs > 1e-9 and ht > 1e-9 else 1.0
    trans = scale * p_src[:, mapping[0]] - target_rest[0]

    if floor or center:
        joints = _target_fk(g, trans, target_rest, parents)
        if floor:
            feet = [index[k] for k in ("left_ankle", "right_ankle", "left_foot", "right_foot") if k in index]
            trans[:, 1] -= joints[:, feet, 1].min() if feet else joints[..., 1].min()
        if center:
            trans[:, [0, 2]] -= joints[0, 0, [0, 2]]

    hands = {}
    for side in ("left", "right"):
        ids = [index.get(f"{side}_{h}") for h in HAND]
        if None not in ids and any(i in mapping for i in ids):
            hands[f"{side}_hand"] = rot.matrix_to_aa(local[:, ids])
    return Motion(root_orient=rot.matrix_to_aa(local[:, 0]), body_pose=rot.matrix_to_aa(local[:, 1:22]),
                  trans=trans, fps=anim.fps, betas=betas, gender="neutral", source=anim.source,
                  model_type={24: "smpl", 22: "smpl", 55: "smplx"}.get(n, "smplh"),
                  meta={"retarget_scale": scale, "mapped_joints": len(mapping)}, **hands)


def _target_fk(g, trans, rest, parents) -> np.ndarray:
    """Target joint positions [F,J,3] for world rotations g and SMPL translation trans."""
    pos = np.empty(g.shape[:2] + (3,))
    pos[:, 0] = rest[0] + trans
    for j in range(1, len(parents)):
        p = parents[j]
        pos[:, j] = pos[:, p] + g[:, p] @ (rest[j] - rest[p])
    return pos
