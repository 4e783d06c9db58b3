"""Mixamo → SMPL retargeting on synthetic rigs animated from known SMPL poses.

The rig has Mixamo names, an extra 'Armature' root turned about Y, random per-bone axis conventions
(world rest rotation S·Q with Q random), A-posed arms and spread legs (swings S about axes perpendicular
to the upper arm / thigh), and 1.25x SMPL's size. Its bones are animated with W_t = G_t · Q, G_t the SMPL
world rotations of a known pose, so retargeting must give back that pose."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from mimo_pack.models.body.skeleton import SMPL_JOINTS, SMPL_PARENTS, SMPLH_JOINTS, SMPLH_PARENTS
from mimo_pack.models.motion import SkeletonAnimation, load_bvh, load_fbx, retarget, smplh_neutral_rest_joints
from mimo_pack.models.motion import mixamo
from mimo_pack.models.motion import rotations as rot
from mimo_pack.models.motion.mixamo import MIXAMO_TO_SMPL, SMPL_NEUTRAL_REST_JOINTS, joint_map, normalize_name

RNG = np.random.default_rng(3)
SMPL_TO_MIXAMO = {v: k for k, v in MIXAMO_TO_SMPL.items()}
ARMATURE_OFFSET = np.array([0.3, 0.0, -0.2])


def load_sibling(name):
    spec = importlib.util.spec_from_file_location(f"_mimo_{Path(name).stem}", Path(__file__).with_name(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def armature_shift(k, yaw):
    """The rig's armature offset as it shows in the retargeted translation: un-yawed, scaled by 1/k."""
    return rot.axis_rotation("y", yaw).T @ ARMATURE_OFFSET / k


def random_rotations(n, max_angle=np.pi):
    axis = RNG.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    return rot.aa_to_matrix(axis * RNG.uniform(0, max_angle, (n, 1)))


def descendants(parents, j):
    out = [j]
    for c in range(len(parents)):
        if parents[c] in out:
            out.append(c)
    return out


def swing(rest, a, b, angle):
    """Rotation by `angle` about the axis perpendicular to bone a→b that is closest to +Z."""
    u = rest[b] - rest[a]
    u /= np.linalg.norm(u)
    axis = np.array([0.0, 0.0, 1.0]) - u[2] * u
    return rot.aa_to_matrix(axis / np.linalg.norm(axis) * angle)


def known_pose(frames, joints):
    local = np.stack([random_rotations(joints, 1.2) for _ in range(frames)])
    local[:, 0] = random_rotations(frames)
    trans = np.cumsum(RNG.normal(scale=0.05, size=(frames, 3)), 0)
    return local, trans


def fk_rotations(local, parents):
    g = local.copy()
    for j in range(1, len(parents)):
        g[:, j] = g[:, parents[j]] @ local[:, j]
    return g


def build_rig(target, names, parents, local, trans, k=1.25, yaw=0.6, a_pose=True, drop=(), prefix="mixamorig:"):
    """SkeletonAnimation of a Mixamo-named rig driven by the SMPL pose (local [F,J,3,3], trans [F,3])."""
    n = len(names)
    s = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
    x0 = target.copy()
    if a_pose:
        for side, sign in (("left", -1), ("right", 1)):
            for a, b, angle in ((f"{side}_shoulder", f"{side}_elbow", 0.7), (f"{side}_hip", f"{side}_knee", 0.15)):
                ia, ib = names.index(a), names.index(b)
                sw = swing(target, ia, ib, sign * angle * (1 if "shoulder" in a else -1))
                for d in descendants(parents, ia):
                    s[d] = sw
                    x0[d] = target[ia] + sw @ (target[d] - target[ia])
    q = random_rotations(n)
    arm_r, arm_t = rot.axis_rotation("y", yaw), ARMATURE_OFFSET
    g = fk_rotations(local, parents)
    frames = local.shape[0]

    keep = [j for j in range(n) if names[j] not in drop]
    src_names = ["Armature"] + [prefix + SMPL_TO_MIXAMO[names[j]] for j in keep] + [prefix + "HeadTop_End"]
    src_parent = [-1] + [1 + keep.index(parents[j]) if parents[j] >= 0 else 0 for j in keep]
    src_parent.append(1 + keep.index(names.index("head")))
    m = len(src_names)
    w_rest = np.empty((m, 3, 3))
    p_rest = np.empty((m, 3))
    w_t = np.empty((frames, m, 3, 3))
    w_rest[0], p_rest[0], w_t[:, 0] = arm_r, arm_t, arm_r
    for i, j in enumerate(keep, start=1):
        w_rest[i] = arm_r @ s[j] @ q[j]
        p_rest[i] = arm_r @ (k * x0[j]) + arm_t
        w_t[:, i] = arm_r @ g[:, j] @ q[j]
    w_rest[-1], p_rest[-1] = w_rest[src_parent[-1]], p_rest[src_parent[-1]] + [0, 0.12, 0]
    w_t[:, -1] = w_t[:, src_parent[-1]]

    def local_rotations(w):
        lr = w.copy()
        for i in range(1, m):
            lr[..., i, :, :] = np.swapaxes(w[..., src_parent[i], :, :], -1, -2) @ w[..., i, :, :]
        return lr

    rest_t = p_rest.copy()
    for i in range(1, m):
        rest_t[i] = w_rest[src_parent[i]].T @ (p_rest[i] - p_rest[src_parent[i]])
    tr = np.broadcast_to(rest_t, (frames, m, 3)).copy()
    tr[:, 1] = k * (target[0] + trans)  # hips in the armature frame: k x the SMPL pelvis path
    return SkeletonAnimation(names=src_names, parents=src_parent, rest_rotations=local_rotations(w_rest),
                             rest_translations=rest_t, rotations=local_rotations(w_t), translations=tr,
                             fps=30.0, source="synthetic")


def errors(motion, local, names):
    out = {"root": rot.geodesic_angle(rot.aa_to_matrix(motion.root_orient), local[:, 0]).max(),
           "body": rot.geodesic_angle(rot.aa_to_matrix(motion.body_pose), local[:, 1:22]).max()}
    if motion.left_hand is not None:
        left = names.index("left_index1")
        out["hands"] = max(rot.geodesic_angle(rot.aa_to_matrix(motion.left_hand), local[:, left:left + 15]).max(),
                           rot.geodesic_angle(rot.aa_to_matrix(motion.right_hand), local[:, left + 15:left + 30]).max())
    return out


def test_joint_map_and_names():
    assert normalize_name("mixamorig:LeftArm") == "LeftArm" == normalize_name("mixamorig1:LeftArm")
    assert normalize_name("mixamorig_LeftArm") == "LeftArm" == normalize_name("Armature|LeftArm")
    m = joint_map(["mixamorig:Hips", "mixamorig:LeftArm", "mixamorig9:LeftForeArm", "leftHand", "Foo"], SMPL_JOINTS)
    assert m == {0: 0, 16: 1, 18: 2, 20: 3}  # Arm = shoulder joint, ForeArm = elbow, Hand = wrist
    assert len(MIXAMO_TO_SMPL) == 22 + 30


def test_retarget_a_posed_rig_recovers_the_pose_and_scales_translation(monkeypatch):
    target = smplh_neutral_rest_joints()
    names, parents = list(SMPLH_JOINTS), list(SMPLH_PARENTS)
    local, trans = known_pose(6, 52)
    anim = build_rig(target, names, parents, local, trans)
    m = retarget(anim, target, parents, center=False, floor=False)
    err = errors(m, local, names)
    assert max(err.values()) < 1e-5, err
    assert np.abs(m.trans - trans - armature_shift(1.25, 0.6)).max() < 1e-9  # hips path / 1.25, un-yawed
    assert m.meta["retarget_scale"] == pytest.approx(1 / 1.25)
    assert m.fps == 30.0 and m.model_type == "smplh" and m.left_hand.shape == (6, 15, 3)

    floored = retarget(anim, target, parents)  # center + floor
    offset = floored.trans - m.trans
    assert np.allclose(offset, offset[:1], atol=1e-12)  # a constant shift only
    g = fk_rotations(rot.aa_to_matrix(np.concatenate([floored.root_orient[:, None], floored.body_pose,
                                                      floored.left_hand, floored.right_hand], 1)), parents)
    joints = np.empty((6, 52, 3))
    joints[:, 0] = target[0] + floored.trans
    for j in range(1, 52):
        joints[:, j] = joints[:, parents[j]] + g[:, parents[j]] @ (target[j] - target[parents[j]])
    feet = [names.index(n) for n in ("left_ankle", "right_ankle", "left_foot", "right_foot")]
    assert abs(joints[:, feet, 1].min()) < 1e-12
    assert np.allclose(joints[0, 0, [0, 2]], 0, atol=1e-12)

    # control: without the rest offsets (copying world deltas as they are) the A-pose shows
    monkeypatch.setattr(mixamo, "_rest_offsets", lambda mapping, parents, *_: np.tile(np.eye(3), (len(parents), 1, 1)))
    naive = errors(retarget(anim, target, parents, center=False, floor=False), local, names)
    assert naive["body"] > 0.5


def test_retarget_smpl24_t_pose_rig_with_missing_joints():
    target = SMPL_NEUTRAL_REST_JOINTS
    names, parents = list(SMPL_JOINTS), list(SMPL_PARENTS)
    local, trans = known_pose(4, 24)
    local[:, 22:] = np.eye(3)  # SMPL's hand joints have no Mixamo bone
    body_names = names[:22]
    anim = build_rig(target[:22], body_names, parents[:22], local[:, :22], trans, k=0.8, yaw=-2.0, a_pose=False,
                     drop=("left_foot",), prefix="mixamorig1:")
    m = retarget(anim, target, parents, center=False, floor=False)
    assert m.left_hand is None and m.model_type == "smpl"
    expect = local.copy()
    expect[:, names.index("left_foot")] = np.eye(3)  # the missing toe stays at rest
    err = errors(m, expect, names)
    assert max(err.values()) < 1e-5, err
    assert np.abs(m.trans - trans - armature_shift(0.8, -2.0)).max() < 1e-9
    with pytest.raises(ValueError, match="Hips"):
        retarget(SkeletonAnimation(names=["Root"], parents=[-1], rest_rotations=np.eye(3)[None],
                                   rest_translations=np.zeros((1, 3)), rotations=np.eye(3)[None, None],
                                   translations=np.zeros((1, 1, 3)), fps=30), target, parents)


def write_rig_fbx(path, frames=5):
    """The A-posed rig as an FBX file: centimetres, a random PreRotation per bone (Lcl Rotation =
    PreRotation^T · local), the animated hips translation, and a bind pose holding the rest."""
    fbx = load_sibling("test_bvh_fbx.py")
    target = smplh_neutral_rest_joints()
    names, parents = list(SMPLH_JOINTS), list(SMPLH_PARENTS)
    local, trans = known_pose(frames, 52)
    anim = build_rig(target, names, parents, local, trans)
    n = len(anim.names)
    pre = RNG.uniform(-60, 60, (n, 3))
    euler = np.stack([[fbx.euler_xyz_from_matrix(fbx.fbx_euler(pre[j]).T @ anim.rotations[f, j]) for j in range(n)]
                      for f in range(anim.frames)])
    rest_r, rest_p = anim.rest_world()
    bind = np.tile(np.eye(4), (n, 1, 1))
    bind[:, :3, :3], bind[:, :3, 3] = rest_r, rest_p * 100
    fbx.write_ascii_fbx(path, anim.names, anim.parents, anim.rest_translations * 100, euler, pre_rotation=pre,
                        bind_world=bind, translation_keys={1: anim.translations[:, 1] * 100}, fps=30.0)
    return anim, target, parents, names, local, trans


def test_retarget_from_an_fbx_file(tmp_path):
    pytest.importorskip("ufbx")
    anim, target, parents, names, local, trans = write_rig_fbx(tmp_path / "rig.fbx")
    loaded = load_fbx(tmp_path / "rig.fbx", isolated=False)
    assert sorted(loaded.names) == sorted(anim.names) and loaded.frames == 5  # depth-first order
    m = retarget(loaded, target, parents, center=False, floor=False)
    err = errors(m, local, names)
    assert max(err.values()) < 1e-5, err
    assert np.abs(m.trans - trans - armature_shift(1.25, 0.6)).max() < 1e-9


# ----------------------------------------------------------------------------- BVH, and the node
def euler_xyz_intrinsic(m):
    """Angles (deg) with m = Rx(a) · Ry(b) · Rz(c), the BVH reading of 'Xrotation Yrotation Zrotation'."""
    a, b, c = np.arctan2(-m[1, 2], m[2, 2]), np.arcsin(np.clip(m[0, 2], -1, 1)), np.arctan2(-m[0, 1], m[0, 0])
    return np.degrees([a, b, c])


def to_bvh(anim) -> str:
    """BVH text of a SkeletonAnimation (rest rotations must be identity: they are folded into the frames)."""
    kids = {}
    for j, p in enumerate(anim.parents):
        kids.setdefault(int(p), []).append(j)
    lines, order = ["HIERARCHY"], []

    def block(j, depth):
        order.append(j)  # the MOTION rows follow the hierarchy's order
        pad = "\t" * depth
        lines.append(f"{pad}{'ROOT' if anim.parents[j] < 0 else 'JOINT'} {anim.names[j]}\n{pad}{{")
        lines.append(f"{pad}\tOFFSET {' '.join(repr(float(v)) for v in anim.rest_translations[j])}")
        lines.append(f"{pad}\tCHANNELS 6 Xposition Yposition Zposition Xrotation Yrotation Zrotation")
        for c in kids.get(j, []):
            block(c, depth + 1)
        lines.append(f"{pad}}}")

    block(0, 0)
    lines += ["MOTION", f"Frames: {anim.frames}", f"Frame Time: {1 / anim.fps!r}"]
    for f in range(anim.frames):
        row = []
        for j in order:
            row += list(anim.translations[f, j]) + list(euler_xyz_intrinsic(anim.rotations[f, j]))
        lines.append(" ".join(repr(float(v)) for v in row))
    return "\n".join(lines) + "\n"


def bvh_rig(frames=6):
    """A rig whose rest pose is in its offsets (BVH has no rest rotations): the A-posed SMPL-H rig with
    world-aligned bones (Q = I), animated from a known pose."""
    target = smplh_neutral_rest_joints()
    names, parents = list(SMPLH_JOINTS), list(SMPLH_PARENTS)
    local, trans = known_pose(frames, 52)
    anim = build_rig(target, names, parents, local, trans, yaw=0.0)
    w, pos = anim.world()
    wr, rest_p = anim.rest_world()
    rel = w @ np.swapaxes(wr, -1, -2)  # world change from rest, per bone (bone axes = world axes at rest)
    lr = rel.copy()
    offsets = rest_p.copy()
    for j in range(1, len(anim.names)):
        lr[:, j] = np.swapaxes(rel[:, anim.parents[j]], -1, -2) @ rel[:, j]
        offsets[j] = rest_p[j] - rest_p[anim.parents[j]]
    tr = np.broadcast_to(offsets, (frames, len(anim.names), 3)).copy()
    tr[:, 0] = pos[:, 0]
    tr[:, 1] = pos[:, 1] - pos[:, 0]  # hips relative to the (unrotated) armature
    bvh = SkeletonAnimation(names=anim.names, parents=anim.parents, rest_translations=offsets,
                            rest_rotations=np.tile(np.eye(3), (len(anim.names), 1, 1)), rotations=lr,
                            translations=tr, fps=anim.fps)
    return bvh, target, parents, names, local, trans


def test_retarget_from_a_bvh_file(tmp_path):
    rig, target, parents, names, local, trans = bvh_rig()
    (tmp_path / "clip.bvh").write_text(to_bvh(rig))
    anim = load_bvh(tmp_path / "clip.bvh")  # 2.1 units tall: metres
    m = retarget(anim, target, parents, center=False, floor=False)
    err = errors(m, local, names)
    assert max(err.values()) < 1e-5, err
    assert np.abs(m.trans - trans - armature_shift(1.25, 0.0)).max() < 1e-9


@pytest.mark.comfy
def test_load_mixamo_node(comfy_server):
    rig, *_ = bvh_rig(frames=12)
    (comfy_server.input_dir / "mixamo").mkdir(parents=True, exist_ok=True)
    (comfy_server.input_dir / "mixamo" / "dance.bvh").write_text(to_bvh(rig))
    info = comfy_server.object_info(refresh=True)["MIMOLoadMixamo"]
    assert info["output"] == ["MIMO_MOTION", "FLOAT", "INT"]
    inputs = {**info["input"]["required"], **info["input"].get("optional", {})}
    assert all(spec[1].get("tooltip") for spec in inputs.values())
    file = inputs["file"]
    assert "mixamo/dance.bvh" in (file[0] if isinstance(file[0], list) else file[1]["options"])

    prompt = {"1": {"class_type": "MIMOLoadMixamo",
                    "inputs": {"file": "mixamo/dance.bvh", "fps": 60.0, "start_frame": 0, "max_frames": 0}},
              "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 2]}}}
    assert comfy_server.run(prompt, check=True).outputs["2"]["text"] == ["24"]  # 12 frames at 30 -> 24 at 60
    prompt["3"] = {"class_type": "MIMOBodyModelLoader", "inputs": {"body_model": "demo body (built-in)"}}
    prompt["1"]["inputs"].update(body=["3", 0], fps=0.0, max_frames=5)
    assert comfy_server.run(prompt, check=True).outputs["2"]["text"] == ["5"]
    (comfy_server.input_dir / "mixamo" / "broken.bvh").write_text("HIERARCHY\nROOT Hips\n{\n")
    prompt["1"]["inputs"]["file"] = "mixamo/broken.bvh"
    bad = comfy_server.run(prompt)
    assert not bad.ok and "broken.bvh" in bad.error["exception_message"]
    if importlib.util.find_spec("ufbx"):  # FBX, read by ufbx in a child process of the server
        write_rig_fbx(comfy_server.input_dir / "mixamo" / "rig.fbx", frames=7)
        prompt["1"]["inputs"].update(file="mixamo/rig.fbx", max_frames=0)
        assert comfy_server.run(prompt, check=True).outputs["2"]["text"] == ["7"]
