"""Every common rig convention, written as a small BVH by the test, retargets with limbs that move like the
source (bone directions), left and right kept, upright, and its floor found on the frames used; a rig whose
limbs do not map is refused."""

import numpy as np
import pytest

from mimo_pack.models.body.demo import demo_body
from mimo_pack.models.body.skeleton import SMPLH_JOINTS, SMPLH_PARENTS
from mimo_pack.models.motion import parse_bvh, placement, retarget, rig_names, smplh_neutral_rest_joints
from mimo_pack.models.motion import rotations as rot

REST = smplh_neutral_rest_joints()
J = {n: REST[i] for i, n in enumerate(SMPLH_JOINTS[:22])}
LIMBS = [(f"{s}_{a}", f"{s}_{b}") for s in ("left", "right")
         for a, b in (("hip", "knee"), ("knee", "ankle"), ("shoulder", "elbow"), ("elbow", "wrist"))]


def mid(a, b, t=0.5):
    return J[a] * (1 - t) + J[b] * t


def sided(fmt_left, fmt_right, table):
    """Rig rows for both sides: table of (name pattern with {s}, parent pattern or central name, position key)."""
    rows = []
    for side, fmt in (("left", fmt_left), ("right", fmt_right)):
        for name, parent, where in table:
            pos = where(side) if callable(where) else J[f"{side}_{where}"]
            rows.append((name.format(s=fmt), parent.format(s=fmt), pos))
    return rows


def rig_mixamo():
    rows = [("mixamorig:Hips", None, J["pelvis"]), ("mixamorig:Spine", "mixamorig:Hips", J["spine1"]),
            ("mixamorig:Spine1", "mixamorig:Spine", J["spine2"]), ("mixamorig:Spine2", "mixamorig:Spine1", J["spine3"]),
            ("mixamorig:Neck", "mixamorig:Spine2", J["neck"]), ("mixamorig:Head", "mixamorig:Neck", J["head"])]
    rows += sided("Left", "Right", [
        ("mixamorig:{s}Shoulder", "mixamorig:Spine2", "collar"), ("mixamorig:{s}Arm", "mixamorig:{s}Shoulder", "shoulder"),
        ("mixamorig:{s}ForeArm", "mixamorig:{s}Arm", "elbow"), ("mixamorig:{s}Hand", "mixamorig:{s}ForeArm", "wrist"),
        ("mixamorig:{s}UpLeg", "mixamorig:Hips", "hip"), ("mixamorig:{s}Leg", "mixamorig:{s}UpLeg", "knee"),
        ("mixamorig:{s}Foot", "mixamorig:{s}Leg", "ankle"), ("mixamorig:{s}ToeBase", "mixamorig:{s}Foot", "foot")])
    return rows, {"left_collar": "mixamorig:LeftShoulder", "left_shoulder": "mixamorig:LeftArm",
                  "spine1": "mixamorig:Spine", "spine3": "mixamorig:Spine2"}


def rig_cmu_motionbuilder():
    rows = [("Hips", None, J["pelvis"]), ("LowerBack", "Hips", J["spine1"]), ("Spine", "LowerBack", J["spine2"]),
            ("Spine1", "Spine", J["spine3"]), ("Neck", "Spine1", J["neck"]), ("Neck1", "Neck", mid("neck", "head")),
            ("Head", "Neck1", J["head"])]
    rows += sided("Left", "Right", [
        ("{s}Shoulder", "Spine1", "collar"), ("{s}Arm", "{s}Shoulder", "shoulder"), ("{s}ForeArm", "{s}Arm", "elbow"),
        ("{s}Hand", "{s}ForeArm", "wrist"), ("{s}FingerBase", "{s}Hand", lambda s: J[f"{s}_wrist"] * 1.1)])
    rows += [(f"{c}HipJoint", "Hips", mid("pelvis", f"{s}_hip")) for c, s in (("L", "left"), ("R", "right"))]
    rows += sided("Left", "Right", [
        ("{s}UpLeg", "{s[0]}HipJoint", "hip"), ("{s}Leg", "{s}UpLeg", "knee"), ("{s}Foot", "{s}Leg", "ankle"),
        ("{s}ToeBase", "{s}Foot", "foot")])
    return rows, {"left_collar": "LeftShoulder", "left_shoulder": "LeftArm", "spine1": "LowerBack",
                  "spine2": "Spine", "spine3": "Spine1", "left_hip": "LeftUpLeg", "neck": "Neck"}


def rig_cmu_3dsmax():
    """CMU's 3ds Max-friendly BVH: LeftShoulder is the UPPER ARM (LeftCollar is the collar)."""
    rows = [("Hips", None, J["pelvis"]), ("Chest", "Hips", J["spine2"]), ("Chest2", "Chest", J["spine3"]),
            ("Neck", "Chest2", J["neck"]), ("Head", "Neck", J["head"])]
    rows += sided("Left", "Right", [
        ("{s}Collar", "Chest2", "collar"), ("{s}Shoulder", "{s}Collar", "shoulder"),
        ("{s}Elbow", "{s}Shoulder", "elbow"), ("{s}Wrist", "{s}Elbow", "wrist"),
        ("{s}Hip", "Hips", "hip"), ("{s}Knee", "{s}Hip", "knee"), ("{s}Ankle", "{s}Knee", "ankle"),
        ("{s}Toe", "{s}Ankle", "foot")])
    return rows, {"left_collar": "LeftCollar", "left_shoulder": "LeftShoulder", "left_elbow": "LeftElbow",
                  "left_hip": "LeftHip", "spine1": "Chest", "spine3": "Chest2"}


def rig_shoulder_is_upper_arm_no_collar():
    rows = [("Hips", None, J["pelvis"]), ("Chest", "Hips", J["spine3"]), ("Head", "Chest", J["head"])]
    rows += sided("Left", "Right", [
        ("{s}Shoulder", "Chest", "shoulder"), ("{s}Elbow", "{s}Shoulder", "elbow"), ("{s}Wrist", "{s}Elbow", "wrist"),
        ("{s}Hip", "Hips", "hip"), ("{s}Knee", "{s}Hip", "knee"), ("{s}Ankle", "{s}Knee", "ankle")])
    return rows, {"left_shoulder": "LeftShoulder", "left_ankle": "LeftAnkle"}


def rig_biped():
    """3ds Max Biped names, clavicles on the neck, thighs on the first spine bone, written Z up."""
    rows = [("Bip01", None, J["pelvis"]), ("Bip01 Pelvis", "Bip01", J["pelvis"] + [0, 0.001, 0]),
            ("Bip01 Spine", "Bip01 Pelvis", J["spine1"]), ("Bip01 Spine1", "Bip01 Spine", J["spine3"]),
            ("Bip01 Neck", "Bip01 Spine1", J["neck"]), ("Bip01 Head", "Bip01 Neck", J["head"])]
    rows += sided("L", "R", [
        ("Bip01 {s} Clavicle", "Bip01 Neck", "collar"), ("Bip01 {s} UpperArm", "Bip01 {s} Clavicle", "shoulder"),
        ("Bip01 {s} Forearm", "Bip01 {s} UpperArm", "elbow"), ("Bip01 {s} Hand", "Bip01 {s} Forearm", "wrist"),
        ("Bip01 {s} Finger0", "Bip01 {s} Hand", lambda s: J[f"{s}_wrist"] + [0, -0.01, 0.03]),
        ("Bip01 {s} Thigh", "Bip01 Spine", "hip"), ("Bip01 {s} Calf", "Bip01 {s} Thigh", "knee"),
        ("Bip01 {s} Foot", "Bip01 {s} Calf", "ankle"), ("Bip01 {s} Toe0", "Bip01 {s} Foot", "foot")])
    return rows, {"pelvis": "Bip01 Pelvis", "left_collar": "Bip01 L Clavicle", "neck": "Bip01 Neck",
                  "left_thumb1": "Bip01 L Finger0"}


def rig_poser():
    rows = [("hip", None, J["pelvis"]), ("abdomen", "hip", J["spine1"]), ("chest", "abdomen", J["spine3"]),
            ("neck", "chest", J["neck"]), ("head", "neck", J["head"])]
    rows += sided("l", "r", [
        ("{s}Collar", "chest", "collar"), ("{s}Shldr", "{s}Collar", "shoulder"), ("{s}ForeArm", "{s}Shldr", "elbow"),
        ("{s}Hand", "{s}ForeArm", "wrist"), ("{s}Thigh", "hip", "hip"), ("{s}Shin", "{s}Thigh", "knee"),
        ("{s}Foot", "{s}Shin", "ankle"), ("{s}Toe", "{s}Foot", "foot")])
    return rows, {"pelvis": "hip", "left_shoulder": "lShldr", "left_knee": "lShin", "left_ankle": "lFoot"}


def rig_unreal():
    rows = [("root", None, J["pelvis"] * [1, 0, 1] + [0, -1.2, 0]), ("pelvis", "root", J["pelvis"]),
            ("spine_01", "pelvis", J["spine1"]), ("spine_02", "spine_01", J["spine2"]),
            ("spine_03", "spine_02", J["spine3"]), ("neck_01", "spine_03", J["neck"]), ("head", "neck_01", J["head"])]
    rows += sided("l", "r", [
        ("clavicle_{s}", "spine_03", "collar"), ("upperarm_{s}", "clavicle_{s}", "shoulder"),
        ("upperarm_twist_01_{s}", "upperarm_{s}", lambda s: mid(f"{s}_shoulder", f"{s}_elbow")),
        ("lowerarm_{s}", "upperarm_{s}", "elbow"), ("hand_{s}", "lowerarm_{s}", "wrist"),
        ("thigh_{s}", "pelvis", "hip"), ("calf_{s}", "thigh_{s}", "knee"), ("foot_{s}", "calf_{s}", "ankle"),
        ("ball_{s}", "foot_{s}", "foot")])
    return rows, {"left_elbow": "lowerarm_l", "left_foot": "ball_l", "pelvis": "pelvis"}


def rig_rigify():
    rows = [("DEF-spine", None, J["pelvis"]), ("DEF-spine.001", "DEF-spine", J["spine1"]),
            ("DEF-spine.002", "DEF-spine.001", J["spine2"]), ("DEF-spine.003", "DEF-spine.002", J["spine3"]),
            ("DEF-spine.004", "DEF-spine.003", J["neck"]), ("DEF-spine.005", "DEF-spine.004", mid("neck", "head")),
            ("DEF-spine.006", "DEF-spine.005", J["head"])]
    rows += sided("L", "R", [
        ("DEF-shoulder.{s}", "DEF-spine.003", "collar"), ("DEF-upper_arm.{s}", "DEF-shoulder.{s}", "shoulder"),
        ("DEF-forearm.{s}", "DEF-upper_arm.{s}", "elbow"), ("DEF-hand.{s}", "DEF-forearm.{s}", "wrist"),
        ("DEF-pelvis.{s}", "DEF-spine", lambda s: mid("pelvis", f"{s}_hip")),
        ("DEF-thigh.{s}", "DEF-spine", "hip"), ("DEF-shin.{s}", "DEF-thigh.{s}", "knee"),
        ("DEF-foot.{s}", "DEF-shin.{s}", "ankle"), ("DEF-toe.{s}", "DEF-foot.{s}", "foot")])
    return rows, {"pelvis": "DEF-spine", "left_collar": "DEF-shoulder.L", "neck": "DEF-spine.004",
                  "head": "DEF-spine.006", "spine3": "DEF-spine.003"}


def rig_smpl_names():
    rows = [("Pelvis", None, J["pelvis"]), ("Spine1", "Pelvis", J["spine1"]), ("Spine2", "Spine1", J["spine2"]),
            ("Spine3", "Spine2", J["spine3"]), ("Neck", "Spine3", J["neck"]), ("Head", "Neck", J["head"])]
    rows += sided("L", "R", [
        ("{s}_Collar", "Spine3", "collar"), ("{s}_Shoulder", "{s}_Collar", "shoulder"),
        ("{s}_Elbow", "{s}_Shoulder", "elbow"), ("{s}_Wrist", "{s}_Elbow", "wrist"),
        ("{s}_Hand", "{s}_Wrist", lambda s: J[f"{s}_wrist"] * [1.12, 1, 1]),
        ("{s}_Hip", "Pelvis", "hip"), ("{s}_Knee", "{s}_Hip", "knee"), ("{s}_Ankle", "{s}_Knee", "ankle"),
        ("{s}_Foot", "{s}_Ankle", "foot")])
    return rows, {"left_shoulder": "L_Shoulder", "left_wrist": "L_Wrist", "left_foot": "L_Foot",
                  "left_ankle": "L_Ankle", "spine2": "Spine2"}


RIGS = {"mixamo": rig_mixamo, "cmu_motionbuilder": rig_cmu_motionbuilder, "cmu_3dsmax": rig_cmu_3dsmax,
        "shoulder_upper_arm": rig_shoulder_is_upper_arm_no_collar, "biped_z_up": rig_biped, "poser": rig_poser,
        "unreal": rig_unreal, "rigify": rig_rigify, "smpl": rig_smpl_names}
Z_UP = {"biped_z_up"}
Y_TO_Z = rot.axis_rotation("x", np.pi / 2)  # a Y-up rig written Z up


def bvh_text(rows, frames=6, seed=0, z_up=False, lift_first=0.0):
    """BVH (cm) of the rig at rest plus random joint rotations; frame 0 is the rest pose (lifted by lift_first m)."""
    rng = np.random.default_rng(seed)
    names = [r[0] for r in rows]
    parent = {r[0]: r[1] for r in rows}
    pos = {r[0]: np.asarray(r[2], float) @ (Y_TO_Z.T if z_up else np.eye(3)) for r in rows}
    kids = {n: [m for m in names if parent[m] == n] for n in names}
    lines, order = ["HIERARCHY"], []

    def block(n, depth):
        order.append(n)
        pad = "  " * depth
        off = pos[n] - (pos[parent[n]] if parent[n] else 0)
        lines.append(f"{pad}{'ROOT' if parent[n] is None else 'JOINT'} {n}\n{pad}{{")
        lines.append(f"{pad}  OFFSET {' '.join(f'{100 * v:.6f}' for v in off)}")
        lines.append(f"{pad}  CHANNELS {6 if parent[n] is None else 3} " +
                     ("Xposition Yposition Zposition " if parent[n] is None else "") + "Zrotation Xrotation Yrotation")
        for k in kids[n]:
            block(k, depth + 1)
        if not kids[n]:
            lines.append(f"{pad}  End Site\n{pad}  {{\n{pad}    OFFSET 0 {5 if not z_up else 0} {5 if z_up else 0}\n"
                         f"{pad}  }}")
        lines.append(f"{pad}}}")

    block(names[0], 0)
    lines += ["MOTION", f"Frames: {frames}", "Frame Time: 0.0333333"]
    up = 2 if z_up else 1
    for f in range(frames):
        row = []
        for n in order:
            angles = rng.uniform(-35, 35, 3) if f else np.zeros(3)
            if parent[n] is None:
                p = pos[n] * 100 + (rng.normal(0, 5, 3) if f else 0)
                if f == 0:
                    p[up] += 100 * lift_first
                row += list(p)
            row += list(angles)
        lines.append(" ".join(f"{v:.6f}" for v in row))
    return "\n".join(lines) + "\n"


def target_joints(motion):
    """SMPL-H joint positions [F,52,3] of a retargeted motion on the REST skeleton."""
    flat = np.zeros((motion.frames, 15, 3))
    hands = [flat if h is None else h for h in (motion.left_hand, motion.right_hand)]
    local = rot.aa_to_matrix(np.concatenate([motion.root_orient[:, None], motion.body_pose, *hands], 1))
    g = local.copy()
    pos = np.empty(local.shape[:2] + (3,))
    pos[:, 0] = REST[0] + motion.trans
    for j in range(1, 52):
        p = SMPLH_PARENTS[j]
        g[:, j] = g[:, p] @ local[:, j]
        pos[:, j] = pos[:, p] + g[:, p] @ (REST[j] - REST[p])
    return pos


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.mark.parametrize("convention", sorted(RIGS))
def test_convention_maps_and_moves_like_the_source(convention):
    rows, expect = RIGS[convention]()
    z_up = convention in Z_UP
    anim = parse_bvh(bvh_text(rows, z_up=z_up), source=f"{convention}.bvh")
    assert anim.fps == 30.0  # 'Frame Time: 0.0333333' snapped
    found = rig_names.assign(anim.names, anim.parents)
    for smpl, name in expect.items():
        assert anim.names[found[smpl]] == name, (smpl, anim.names[found[smpl]])
    assert all(j in found for j in rig_names.LIMB_JOINTS)
    motion = retarget(anim, REST, SMPLH_PARENTS, center=False, floor=False)
    got = target_joints(motion)
    _, src = anim.world()
    if z_up:
        src = src @ Y_TO_Z  # back to the Y-up frame the rig was built in
    index = {n: i for i, n in enumerate(SMPLH_JOINTS)}
    for a, b in LIMBS:  # limbs move like the source's: same bone directions every frame
        d_src = unit(src[:, found[b]] - src[:, found[a]])
        d_got = unit(got[:, index[b]] - got[:, index[a]])
        cos = (d_src * d_got).sum(-1)
        assert cos.min() > 1 - 1e-6, (convention, a, b, cos.min())
    # left stays left (+X at rest, the body facing +Z), and the rest frame stands upright
    rest = got[0]
    for part in ("wrist", "ankle", "elbow"):
        assert rest[index[f"left_{part}"], 0] > 0.05 > -0.05 > rest[index[f"right_{part}"], 0]
    up = unit(rest[index["neck"]] - rest[index["pelvis"]])
    assert up[1] > 0.97, (convention, up)
    assert rest[index["head"], 1] > rest[index["pelvis"], 1] > rest[index["left_ankle"], 1]


def test_refusal_lists_unmapped_joints_and_conventions():
    rows = [("Hips", None, J["pelvis"]), ("Torso", "Hips", J["spine3"])]
    rows += sided("Left", "Right", [("UpperLeg_{s}x", "Hips", "hip"), ("LowerLeg_{s}x", "UpperLeg_{s}x", "knee"),
                                    ("Arm1_{s}x", "Torso", "shoulder"), ("Arm2_{s}x", "Arm1_{s}x", "elbow")])
    anim = parse_bvh(bvh_text(rows), source="odd.bvh")
    with pytest.raises(ValueError) as e:
        retarget(anim, REST, SMPLH_PARENTS)
    msg = str(e.value)
    assert "odd.bvh" in msg and "left_knee" in msg and "right_wrist" in msg and "pelvis" not in msg.split("found")[0]
    assert "UpperLeg_Leftx" in msg and "Mixamo" in msg and "CMU" in msg and "Rigify" in msg


def test_floor_is_found_on_the_frames_used_and_soles_touch_it():
    rows, _ = rig_mixamo()
    anim = parse_bvh(bvh_text(rows, frames=8, lift_first=-0.5))  # frame 0: a T-pose 50 cm lower (calibration)
    whole = retarget(anim, REST, SMPLH_PARENTS, center=False, floor=False)
    body = demo_body()
    grounded = placement.ground(whole.trim(1, None), body)  # the loaders: trim first, then the floor
    verts, _ = body.pose(grounded.params())
    assert abs(float(verts[..., 1].min())) < 1e-5  # soles (the lowest vertex) on y = 0
    lifted = placement.ground(whole, body).trim(1, None)  # the whole file's floor lifts the clip
    lifted_verts, _ = body.pose(lifted.params())
    assert float(lifted_verts[..., 1].min()) > 0.3
    old = retarget(anim, REST, SMPLH_PARENTS, center=False, floor=True).trim(1, None)  # joint centres, whole file
    old_verts, _ = body.pose(old.params())
    assert abs(float(old_verts[..., 1].min())) > 0.02


def test_snap_fps():
    assert placement.snap_fps(1 / 0.0333333) == 30.0
    assert placement.snap_fps(1 / 0.008333) == 120.0
    assert placement.snap_fps(29.97) == 30000 / 1001 and placement.snap_fps(1 / 0.0416667) == 24.0
    assert placement.snap_fps(31.0) == 31.0 and placement.snap_fps(30.01) == 30.01  # 3e-4 off: kept


def test_facing_options_turn_about_the_pelvis():
    rows, _ = rig_mixamo()
    motion = retarget(parse_bvh(bvh_text(rows, frames=6, seed=4)), REST, SMPLH_PARENTS, center=False, floor=False)
    turned = placement.rotate_about_pelvis(motion, 1.1, REST[0])
    assert np.allclose(placement.headings(turned), np.angle(np.exp(1j * (placement.headings(motion) + 1.1))))
    first = placement.face(turned, "face camera (first frame)", REST[0])
    assert abs(placement.headings(first)[0]) < 1e-9
    assert np.allclose(first.trans[0], turned.trans[0])  # the pivot is the first pelvis: it does not move
    avg = placement.face(turned, "face camera (average)", REST[0])
    h = placement.headings(avg)
    assert abs(np.arctan2(np.sin(h).sum(), np.cos(h).sum())) < 1e-9
    pelvis_paths = [m.trans + REST[0] for m in (turned, first)]
    step = [np.linalg.norm(np.diff(p[:, [0, 2]], axis=0), axis=1) for p in pelvis_paths]
    assert np.allclose(step[0], step[1])  # a rigid turn: the path keeps its shape
    assert placement.face(motion, "keep", REST[0]) is motion
    with pytest.raises(ValueError, match="facing must be one of"):
        placement.face(motion, "north", REST[0])
