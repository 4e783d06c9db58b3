"""BVH parser and FBX reader: files written by the test from known rotations are read back exactly.
The ASCII FBX 7.4 writer below (models with PreRotation, a bind pose, an animation stack/layer and
curve nodes for Lcl Rotation/Translation) is also used by test_mixamo.py."""

import numpy as np
import pytest

from mimo_pack.models.motion import BVHError, FBXError, load_bvh, load_fbx, parse_bvh
from mimo_pack.models.motion import rotations as rot

RNG = np.random.default_rng(11)
KTIME = 46186158000  # FBX time ticks per second


def rx(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def ry(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rz(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


AXIS = {"X": rx, "Y": ry, "Z": rz}


def fbx_euler(deg):
    """FBX's default rotation order eEulerXYZ: X first, then Y, then Z about the fixed axes."""
    a = np.radians(deg)
    return rz(a[2]) @ ry(a[1]) @ rx(a[0])


def euler_xyz_from_matrix(m):
    """Inverse of fbx_euler (degrees), away from gimbal lock."""
    return np.degrees([np.arctan2(m[2, 1], m[2, 2]), np.arcsin(-np.clip(m[2, 0], -1, 1)), np.arctan2(m[1, 0], m[0, 0])])


# ----------------------------------------------------------------------------- BVH
def test_bvh_channels_in_any_order_are_recovered():
    frames = 4
    spec = [  # name, parent, offset, channels
        ("Hips", -1, (0, 90, 0), ["Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation"]),
        ("Spine", 0, (0, 10, 1), ["Xrotation", "Yrotation", "Zrotation"]),
        ("Neck", 1, (0, 30, 0), ["Yrotation", "Xrotation"]),  # two channels only
        ("LeftArm", 1, (15, 25, 0), ["Zposition", "Yrotation", "Zrotation", "Xrotation", "Xposition", "Yposition"]),
    ]
    values = {j: RNG.uniform(-170, 170, size=(frames, len(s[3]))) for j, s in enumerate(spec)}
    lines = ["HIERARCHY"]

    def block(j, depth):
        name, _, off, chans = spec[j]
        pad = "  " * depth
        lines.append(f"{pad}{'ROOT' if j == 0 else 'JOINT'} {name}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {off[0]} {off[1]} {off[2]}")
        lines.append(f"{pad}  CHANNELS {len(chans)} {' '.join(chans)}")
        for c, s in enumerate(spec):
            if s[1] == j:
                block(c, depth + 1)
        if name == "Neck":
            lines.append(f"{pad}  End Site\n{pad}  {{\n{pad}    OFFSET 0 12 0\n{pad}  }}")
        lines.append(f"{pad}}}")

    block(0, 0)
    lines += ["MOTION", f"Frames: {frames}", "Frame Time: 0.0333333"]
    for k in range(frames):
        lines.append(" ".join(repr(float(v)) for j in range(len(spec)) for v in values[j][k]))
    anim = parse_bvh("\n".join(lines), scale=1.0)

    assert anim.names == ("Hips", "Spine", "Neck", "Neck_End", "LeftArm")
    assert list(anim.parents) == [-1, 0, 1, 2, 1]
    assert anim.fps == pytest.approx(30.0, rel=1e-5) and anim.frames == frames
    order = {"Hips": 0, "Spine": 1, "Neck": 2, "LeftArm": 4}
    worst = 0.0
    for j, (name, _, off, chans) in enumerate(spec):
        for k in range(frames):
            expect, pos = np.eye(3), np.array(off, float)
            for c, ch in enumerate(chans):
                if ch.endswith("rotation"):
                    expect = expect @ AXIS[ch[0]](np.radians(values[j][k, c]))
                else:
                    pos["XYZ".index(ch[0])] = values[j][k, c]
            worst = max(worst, np.abs(anim.rotations[k, order[name]] - expect).max())
            assert np.allclose(anim.translations[k, order[name]], pos)
    assert worst < 1e-12
    assert np.allclose(anim.offsets[3], [0, 12, 0]) and np.allclose(anim.rotations[:, 3], np.eye(3))


def test_bvh_forward_kinematics_units_and_errors(tmp_path):
    text = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Chest
  {
    OFFSET 100 0 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 50 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.04
0 100 0 0 0 0 0 0 0
10 100 0 90 0 0 90 0 0
"""
    (tmp_path / "a.bvh").write_text(text)
    anim = load_bvh(tmp_path / "a.bvh")  # 150 units tall: taken as centimetres
    assert anim.fps == pytest.approx(25.0) and anim.source == "a.bvh"
    _, pos = anim.world()
    assert np.allclose(pos[0], [[0, 1, 0], [1, 1, 0], [1, 1.5, 0]])
    # root turned 90° about Z: the chest offset (+X) points up; with the chest's own 90° the tip (+Y) points down
    assert np.allclose(pos[1], [[0.1, 1, 0], [0.1, 2, 0], [0.1, 1.5, 0]], atol=1e-12)
    assert np.allclose(load_bvh(tmp_path / "a.bvh", scale=1.0).rest_world()[1][2], [100, 50, 0])
    (tmp_path / "short.bvh").write_text(text.replace("Frames: 2", "Frames: 3"))
    with pytest.raises(BVHError, match="needs 27 values"):
        load_bvh(tmp_path / "short.bvh")
    with pytest.raises(BVHError, match="unknown channel 'Wrotation'"):
        parse_bvh(text.replace("Zrotation Xrotation Yrotation\n    End", "Wrotation Xrotation Yrotation\n    End"))
    with pytest.raises(BVHError, match="Cannot read"):
        load_bvh(tmp_path / "missing.bvh")


# ----------------------------------------------------------------------------- FBX
def _fmt(v):
    return ",".join(repr(float(x)) for x in np.ravel(v))


def write_ascii_fbx(path, names, parents, translations, euler_deg, pre_rotation=None, bind_world=None,
                    translation_keys=None, fps=30.0, up="Y", unit_cm=True, kinds=None):
    """A minimal ASCII FBX 7.4: Model (LimbNode) per joint, Lcl Translation (file units), PreRotation (deg),
    per-frame Lcl Rotation keys euler_deg [F,J,3] (XYZ order, deg), optional translation keys {joint: [F,3]},
    optional BindPose of world matrices [J,4,4]; up 'Y' or 'Z' (right-handed); units cm or m."""
    frames, joints = euler_deg.shape[:2]
    up_axis, front, front_sign = {"Y": (1, 2, 1), "Z": (2, 1, -1)}[up]
    out = ["; FBX 7.4.0 project file",
           "FBXHeaderExtension:  {\n\tFBXHeaderVersion: 1003\n\tFBXVersion: 7400\n}",
           "GlobalSettings:  {\n\tVersion: 1000\n\tProperties70:  {"]
    for key, value in (("UpAxis", up_axis), ("UpAxisSign", 1), ("FrontAxis", front), ("FrontAxisSign", front_sign),
                       ("CoordAxis", 0), ("CoordAxisSign", 1)):
        out.append(f'\t\tP: "{key}", "int", "Integer", "",{value}')
    out.append(f'\t\tP: "UnitScaleFactor", "double", "Number", "",{1.0 if unit_cm else 100.0}')
    out.append('\t\tP: "TimeMode", "enum", "", "",14')  # custom frame rate
    out.append(f'\t\tP: "CustomFrameRate", "double", "Number", "",{fps}')
    out.append("\t}\n}\nObjects:  {")
    for j in range(joints):
        kind = (kinds or {}).get(j, "LimbNode")
        out.append(f'\tModel: {1000 + j}, "Model::{names[j]}", "{kind}" {{\n\t\tVersion: 232\n\t\tProperties70:  {{')
        out.append(f'\t\t\tP: "Lcl Translation", "Lcl Translation", "", "A",{_fmt(translations[j])}')
        out.append(f'\t\t\tP: "Lcl Rotation", "Lcl Rotation", "", "A",{_fmt(euler_deg[0, j])}')
        if pre_rotation is not None:
            out.append('\t\t\tP: "RotationActive", "bool", "", "",1')
            out.append(f'\t\t\tP: "PreRotation", "Vector3D", "Vector", "",{_fmt(pre_rotation[j])}')
        out.append("\t\t}\n\t}")
    if bind_world is not None:
        out.append(f'\tPose: 5000, "Pose::BIND_POSES", "BindPose" {{\n\t\tType: "BindPose"\n\t\tVersion: 100\n'
                   f'\t\tNbPoseNodes: {joints}')
        for j in range(joints):  # column-major 4x4
            matrix = _fmt(bind_world[j].T)
            out.append(f'\t\tPoseNode:  {{\n\t\t\tNode: {1000 + j}\n'
                       f'\t\t\tMatrix: *16 {{\n\t\t\t\ta: {matrix}\n\t\t\t}}\n\t\t}}')
        out.append("\t}")
    stop = round((frames - 1) / fps * KTIME)
    out.append('\tAnimationStack: 2000, "AnimStack::Take 001", "" {\n\t\tProperties70:  {')
    for key, value in (("LocalStart", 0), ("LocalStop", stop), ("ReferenceStart", 0), ("ReferenceStop", stop)):
        out.append(f'\t\t\tP: "{key}", "KTime", "Time", "",{value}')
    out.append('\t\t}\n\t}\n\tAnimationLayer: 2001, "AnimLayer::BaseLayer", "" {\n\t}')
    times = ",".join(str(round(k / fps * KTIME)) for k in range(frames))
    conns = [f'\tC: "OO",{1000 + j},{0 if parents[j] < 0 else 1000 + parents[j]}' for j in range(joints)]
    conns.append('\tC: "OO",2001,2000')
    next_id = [3000]

    def curves(kind, prop, target, values):
        node = next_id[0]
        next_id[0] += 1
        out.append(f'\tAnimationCurveNode: {node}, "AnimCurveNode::{kind}", "" {{\n\t\tProperties70:  {{')
        for a, ax in enumerate("XYZ"):
            out.append(f'\t\t\tP: "d|{ax}", "Number", "", "A",{float(values[0, a])!r}')
        out.append("\t\t}\n\t}")
        conns.extend([f'\tC: "OO",{node},2001', f'\tC: "OP",{node},{target}, "{prop}"'])
        for a, ax in enumerate("XYZ"):
            cid = next_id[0]
            next_id[0] += 1
            out.append(f'\tAnimationCurve: {cid}, "AnimCurve::", "" {{\n\t\tDefault: 0\n\t\tKeyVer: 4009\n'
                       f'\t\tKeyTime: *{frames} {{\n\t\t\ta: {times}\n\t\t}}\n'
                       f'\t\tKeyValueFloat: *{frames} {{\n\t\t\ta: {_fmt(values[:, a])}\n\t\t}}\n'
                       '\t\tKeyAttrFlags: *1 {\n\t\t\ta: 260\n\t\t}\n'  # linear keys
                       '\t\tKeyAttrDataFloat: *4 {\n\t\t\ta: 0,0,0,0\n\t\t}\n'
                       f'\t\tKeyAttrRefCount: *1 {{\n\t\t\ta: {frames}\n\t\t}}\n\t}}')
            conns.append(f'\tC: "OP",{cid},{node}, "d|{ax}"')

    for j in range(joints):
        curves("R", "Lcl Rotation", 1000 + j, euler_deg[:, j])
    for j, values in (translation_keys or {}).items():
        curves("T", "Lcl Translation", 1000 + j, values)
    out.append("}\nConnections:  {")
    out.extend(conns)
    out.append("}\n")
    path.write_text("\n".join(out))


def fbx_world(parents, translations, pre, euler_k, root_t):
    """Expected world rotations/positions (file units and axes): T · PreRotation · Rotation per joint."""
    wr, wp = [], []
    for j, p in enumerate(parents):
        local = fbx_euler(pre[j]) @ fbx_euler(euler_k[j])
        t = root_t if p < 0 else translations[j]
        wr.append(local if p < 0 else wr[p] @ local)
        wp.append(t if p < 0 else wp[p] + wr[p] @ t)
    return np.array(wr), np.array(wp)


@pytest.mark.parametrize("up", ["Y", "Z"])
def test_fbx_ascii_round_trip(tmp_path, up):
    pytest.importorskip("ufbx")
    names = ["mixamorig:Hips", "mixamorig:Spine", "mixamorig:Head", "mixamorig:LeftArm"]
    parents = [-1, 0, 1, 1]
    trans = np.array([[0, 100, 0], [0, 10, 2], [0, 25, 0], [12, 20, 0]], float)  # cm
    pre = RNG.uniform(-80, 80, (4, 3))
    frames = 7
    euler = RNG.uniform(-85, 85, (frames, 4, 3))
    root_path = trans[0] + RNG.uniform(-30, 30, (frames, 3))
    path = tmp_path / f"clip_{up}.fbx"
    write_ascii_fbx(path, names, parents, trans, euler, pre_rotation=pre, translation_keys={0: root_path}, fps=24.0,
                    up=up)
    anim = load_fbx(path, isolated=False)
    assert anim.names == tuple(names) and list(anim.parents) == [-1, 0, 1, 1]
    assert anim.fps == 24.0 and anim.frames == frames
    axes = np.eye(3) if up == "Y" else rx(-np.pi / 2)  # file frame -> Y up
    wr, wp = anim.world()
    rot_err = pos_err = 0.0
    for k in range(frames):
        er, ep = fbx_world(parents, trans, pre, euler[k], root_path[k])
        rot_err = max(rot_err, rot.geodesic_angle(wr[k], axes @ er).max())
        pos_err = max(pos_err, np.abs(wp[k] - 0.01 * ep @ axes.T).max())
    assert rot_err < 1e-9 and pos_err < 1e-9, (rot_err, pos_err)
    # rest (no bind pose): the static node transforms, whose Lcl Rotation is frame 0's here
    rr, rp = anim.rest_world()
    er, ep = fbx_world(parents, trans, pre, euler[0], trans[0])
    assert rot.geodesic_angle(rr, axes @ er).max() < 1e-9 and np.abs(rp - 0.01 * ep @ axes.T).max() < 1e-9


def test_fbx_bind_pose_subprocess_and_errors(tmp_path):
    pytest.importorskip("ufbx")
    names = ["Armature", "Hips", "Spine"]
    parents = [-1, 0, 1]
    trans = np.array([[0, 0, 0], [0, 1, 0], [0, 0.2, 0]])
    frames = 3
    euler = RNG.uniform(-60, 60, (frames, 3, 3))
    bind = np.tile(np.eye(4), (3, 1, 1))
    bind_rot = [fbx_euler([0, 30, 0]), fbx_euler([10, 30, 0]), fbx_euler([10, 30, 45])]
    for j in range(3):
        bind[j, :3, :3] = bind_rot[j]
    bind[:, :3, 3] = [[0, 0, 0], [0, 1, 0], [0.1, 1.2, 0]]
    path = tmp_path / "bound.fbx"
    write_ascii_fbx(path, names, parents, trans, euler, bind_world=bind, unit_cm=False, kinds={0: "Null"})
    inproc = load_fbx(path, isolated=False)
    child = load_fbx(path)  # ufbx in a child process
    for a in ("rotations", "translations", "rest_rotations", "rest_translations"):
        assert np.allclose(getattr(inproc, a), getattr(child, a), atol=1e-12), a
    rr, rp = child.rest_world()
    assert rot.geodesic_angle(rr, np.array(bind_rot)).max() < 1e-9 and np.allclose(rp, bind[:, :3, 3])
    wr, _ = child.world()
    er, _ = fbx_world(parents, trans, np.zeros((3, 3)), euler[2], trans[0])
    assert rot.geodesic_angle(wr[2], er).max() < 1e-9

    with pytest.raises(FBXError, match="not found"):
        load_fbx(tmp_path / "nope.fbx")
    (tmp_path / "junk.fbx").write_text("this is not an fbx file")
    with pytest.raises(FBXError, match="junk.fbx"):
        load_fbx(tmp_path / "junk.fbx")
    static = tmp_path / "static.fbx"
    static.write_text(path.read_text().split("\tAnimationStack")[0] + "}\nConnections:  {\n"
                      + "\n".join(f'\tC: "OO",{1000 + j},{0 if p < 0 else 1000 + p}' for j, p in enumerate(parents))
                      + "\n}\n")
    with pytest.raises(FBXError, match="no animation"):
        load_fbx(static)
