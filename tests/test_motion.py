"""Motion clips: rotation helpers, resampling (slerp, double cover, timing), trim/loop, AMASS loading."""

import numpy as np
import pytest
import torch

from mimo_pack.models.motion import AMASSError, Motion, load_amass
from mimo_pack.models.motion import rotations as rot
from mimo_pack.models.motion.amass import DEFAULT_REST_PELVIS

RNG = np.random.default_rng(7)


def random_aa(*shape, max_angle=np.pi):
    axis = RNG.normal(size=shape + (3,))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    return axis * RNG.uniform(0, max_angle, size=shape + (1,))


def make_motion(frames=10, fps=30.0, hands=True, **kw):
    return Motion(root_orient=random_aa(frames), body_pose=random_aa(frames, 21, max_angle=1.0),
                  trans=RNG.normal(size=(frames, 3)), fps=fps,
                  left_hand=random_aa(frames, 15, max_angle=0.5) if hands else None,
                  right_hand=random_aa(frames, 15, max_angle=0.5) if hands else None,
                  betas=RNG.normal(size=16), **kw)


# ----------------------------------------------------------------------------- rotations
def test_rotation_round_trips():
    aa = np.concatenate([random_aa(200), random_aa(5, max_angle=1e-9), np.zeros((1, 3)),
                         random_aa(20) / np.linalg.norm(random_aa(20), axis=-1, keepdims=True) * (np.pi - 1e-7)])
    m = rot.aa_to_matrix(aa)
    assert np.allclose(m @ np.swapaxes(m, -1, -2), np.eye(3), atol=1e-12)
    assert np.allclose(rot.aa_to_matrix(rot.matrix_to_aa(m)), m, atol=1e-9)
    assert np.allclose(rot.quat_to_matrix(rot.matrix_to_quat(m)), m, atol=1e-12)
    small = aa[np.linalg.norm(aa, axis=-1) < np.pi - 1e-3]
    assert np.allclose(rot.matrix_to_aa(rot.aa_to_matrix(small)), small, atol=1e-10)
    # Rodrigues, independently
    a = random_aa(1)[0]
    th = np.linalg.norm(a)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]]) / th
    assert np.allclose(rot.aa_to_matrix(a), np.eye(3) + np.sin(th) * k + (1 - np.cos(th)) * k @ k, atol=1e-12)
    # quaternion product = matrix product
    q1, q2 = rot.aa_to_quat(random_aa(10)), rot.aa_to_quat(random_aa(10))
    assert np.allclose(rot.quat_to_matrix(rot.quat_mul(q1, q2)), rot.quat_to_matrix(q1) @ rot.quat_to_matrix(q2))


def test_slerp_takes_the_short_arc_across_the_double_cover():
    y = np.array([0.0, 1.0, 0.0])
    q0 = rot.aa_to_quat(y * np.radians(170))
    q1 = rot.aa_to_quat(y * np.radians(-170))  # 20° away through 180°, but on the other quaternion hemisphere
    assert np.dot(q0, q1) < 0
    mid = rot.quat_slerp(q0, q1, 0.5)
    assert rot.geodesic_angle(rot.quat_to_matrix(mid), rot.aa_to_matrix(y * np.pi)) < 1e-12
    # q and -q give the same interpolation
    for t in (0.0, 0.25, 0.8, 1.0):
        a, b = rot.quat_slerp(q0, q1, t), rot.quat_slerp(q0, -q1, t)
        assert rot.geodesic_angle(rot.quat_to_matrix(a), rot.quat_to_matrix(b)) < 1e-12
    assert rot.geodesic_angle(rot.quat_to_matrix(rot.quat_slerp(q0, q1, 1.0)), rot.quat_to_matrix(q1)) < 1e-12


def test_euler_is_intrinsic_in_channel_order():
    a = RNG.uniform(-3, 3, size=3)
    m = rot.euler_to_matrix(a, "ZXY")
    assert np.allclose(m, rot.axis_rotation("z", a[0]) @ rot.axis_rotation("x", a[1]) @ rot.axis_rotation("y", a[2]))
    assert np.allclose(rot.axis_rotation("z", np.pi / 2) @ [1, 0, 0], [0, 1, 0])


# ----------------------------------------------------------------------------- resample
def test_resample_is_time_accurate():
    fps, frames = 120.0, 121  # one second + 1 frame
    t = np.arange(frames) / fps
    axis = np.array([0.3, -0.5, 0.81]) / np.linalg.norm([0.3, -0.5, 0.81])
    omega = 2.5  # rad/s, so frames step far less than pi
    angle = omega * t
    m = Motion(root_orient=axis * angle[:, None], body_pose=np.tile(axis, (frames, 21, 1)) * angle[:, None, None],
               trans=np.stack([t, 2 * t, -t], 1), fps=fps)
    for new_fps in (30.0, 50.0, 29.97, 200.0):
        r = m.resample(new_fps)
        assert r.frames == round(frames * new_fps / fps) and r.fps == new_fps
        tk = np.minimum(np.arange(r.frames) / new_fps, t[-1])  # clamped at the end
        assert np.allclose(r.trans, np.stack([tk, 2 * tk, -tk], 1), atol=1e-12)
        assert np.allclose(r.root_orient, axis * (omega * tk)[:, None], atol=1e-9)
        assert np.allclose(r.body_pose[:, 7], axis * (omega * tk)[:, None], atol=1e-9)
        assert r.meta["source_fps"] == fps


def test_resample_slerps_every_joint_across_the_double_cover():
    y = np.array([0.0, 1.0, 0.0])
    rots = np.stack([y * np.radians(170), y * np.radians(-170)])  # 20° apart through 180°
    m = Motion(root_orient=rots, body_pose=np.repeat(rots[:, None], 21, 1), trans=np.zeros((2, 3)), fps=1.0,
               left_hand=np.repeat(rots[:, None], 15, 1), right_hand=np.repeat(rots[:, None], 15, 1))
    r = m.resample(2.0)
    assert r.frames == 4
    half = rot.aa_to_matrix(y * np.pi)
    for arr in (r.root_orient[1], r.body_pose[1, 20], r.left_hand[1, 3], r.right_hand[1, 14]):
        assert rot.geodesic_angle(rot.aa_to_matrix(arr), half) < 1e-9
    assert np.allclose(r.root_orient[3], r.root_orient[2])  # past the end: held
    same = make_motion(5).resample(30.0)
    assert same.frames == 5


def test_trim_loop_params():
    m = make_motion(10)
    t = m.trim(2, 5)
    assert t.frames == 3 and np.array_equal(t.body_pose, m.body_pose[2:5])
    assert np.array_equal(t.left_hand, m.left_hand[2:5])
    assert m.trim(4).frames == 6
    assert m.duration == pytest.approx(10 / 30)
    for bad, word in (((10, None), "outside"), ((-1, 4), "outside"), ((3, 3), "Empty"), ((2, 11), "past")):
        with pytest.raises(ValueError, match=word):
            m.trim(*bad)

    walk = Motion(root_orient=np.zeros((4, 3)), body_pose=np.zeros((4, 21, 3)), fps=30.0,
                  trans=np.array([[0, 1, 0], [1, 1.1, 0], [2, 1, 0], [3, 1.1, 0]], float))
    plain = walk.loop(10)
    assert plain.frames == 10 and np.array_equal(plain.trans[4], walk.trans[0])
    moving = walk.loop(10, advance_root=True)
    assert np.allclose(moving.trans[:, 0], np.arange(10))  # constant speed across the seams
    assert np.allclose(moving.trans[:, 1], plain.trans[:, 1])  # height repeats
    assert walk.loop(2).frames == 2
    with pytest.raises(ValueError):
        walk.loop(0)

    p = m.params()
    assert p.body_pose.dtype == torch.float32 and p.body_pose.shape == (10, 21, 3)
    assert p.left_hand.shape == (10, 15, 3) and p.betas.shape == (16,) and p.frames == 10
    assert make_motion(3, hands=False).params().left_hand is None
    with pytest.raises(ValueError, match="body_pose"):
        Motion(root_orient=np.zeros((3, 3)), body_pose=np.zeros((3, 23, 3)), trans=np.zeros((3, 3)), fps=30)


# ----------------------------------------------------------------------------- AMASS
def toy_fk(root_aa, pose_aa, trans, rest):
    """A 3-joint chain pelvis -> hip -> knee with SMPL semantics (rotate about the rest pelvis, add trans)."""
    g0 = rot.aa_to_matrix(root_aa)
    g1 = g0 @ rot.aa_to_matrix(pose_aa[:, 0])
    p0 = rest[0] + trans
    p1 = p0 + g0 @ (rest[1] - rest[0])
    p2 = p1 + g1 @ (rest[2] - rest[1])
    return np.stack([p0, p1, p2], 1)


def write_smplh_g(path, frames=12, gender="female", fps=120.0):
    poses = np.concatenate([random_aa(frames), random_aa(frames, 51, max_angle=1.0).reshape(frames, -1)], 1)
    np.savez(path, poses=poses, trans=RNG.normal(size=(frames, 3)), betas=RNG.normal(size=16), gender=np.array(gender),
             mocap_framerate=np.array(fps), dmpls=np.zeros((frames, 8)))
    return poses


def test_amass_smplh_g(tmp_path):
    path = tmp_path / "walk_poses.npz"
    poses = write_smplh_g(path)
    m = load_amass(path)
    assert m.frames == 12 and m.fps == 120.0 and m.gender == "female" and m.betas.shape == (16,)
    assert m.model_type == "smplh" and m.source == "walk_poses.npz"
    assert np.allclose(m.body_pose.reshape(12, -1), poses[:, 3:66])
    assert np.allclose(m.left_hand.reshape(12, -1), poses[:, 66:111])
    assert np.allclose(m.right_hand.reshape(12, -1), poses[:, 111:156])
    write_smplh_g(tmp_path / "b_poses.npz", gender=np.array(b"male"))  # bytes gender
    assert load_amass(tmp_path / "b_poses.npz").gender == "male"


def test_amass_clip_placed_on_the_floor_over_the_kept_frames(tmp_path):
    from mimo_pack.models.body.demo import demo_body
    from mimo_pack.models.motion import placement

    write_smplh_g(tmp_path / "jump_poses.npz", frames=20)
    m = load_amass(tmp_path / "jump_poses.npz").trim(5, 15)  # the loaders trim first
    body = demo_body()
    low = placement.lowest_point(m, body)
    assert abs(low) > 0.05  # the synthetic capture floats or sinks
    placed = placement.place(m, "keep", m.meta["rest_pelvis"], body, centre_start=False)
    assert abs(placement.lowest_point(placed, body)) < 1e-5
    assert np.allclose(placed.trans[:, [0, 2]], m.trans[:, [0, 2]])  # AMASS keeps its horizontal path
    assert np.allclose(placed.trans[:, 1] - m.trans[:, 1], -low)
    assert placement.place(m, "keep", m.meta["rest_pelvis"]) is m  # "as captured": untouched


def test_amass_smplx_keys_and_poses_agree(tmp_path):
    t = 9
    root, body = random_aa(t), random_aa(t, 21, max_angle=1.0).reshape(t, -1)
    hand = random_aa(t, 30, max_angle=0.5).reshape(t, -1)
    jaw, eyes = random_aa(t), random_aa(t, 2).reshape(t, -1)
    common = {"trans": RNG.normal(size=(t, 3)), "betas": RNG.normal(size=16), "gender": np.array("neutral"),
              "mocap_frame_rate": np.array(60.0), "surface_model_type": np.array("smplx")}
    np.savez(tmp_path / "a_stageii.npz", root_orient=root, pose_body=body, pose_hand=hand, pose_jaw=jaw,
             pose_eye=eyes, poses=np.concatenate([root, body, jaw, eyes, hand], 1), **common)
    np.savez(tmp_path / "b_stageii.npz", poses=np.concatenate([root, body, jaw, eyes, hand], 1), **common)
    a, b = load_amass(tmp_path / "a_stageii.npz"), load_amass(tmp_path / "b_stageii.npz")
    assert a.fps == 60.0 and a.gender == "neutral" and a.model_type == "smplx" == b.model_type
    for name in ("root_orient", "body_pose", "left_hand", "right_hand", "trans"):
        assert np.allclose(getattr(a, name), getattr(b, name)), name
    assert np.allclose(a.left_hand.reshape(t, -1), hand[:, :45])
    assert np.allclose(a.right_hand.reshape(t, -1), hand[:, 45:])


def test_amass_z_up_to_y_up_rotates_the_posed_body_exactly(tmp_path):
    path = tmp_path / "c_poses.npz"
    poses = write_smplh_g(path, frames=8)
    with np.load(path) as d:
        trans_z = d["trans"]
    rest = np.array([[0.01, -0.21, 0.03], [0.07, -0.30, 0.02], [0.10, -0.68, 0.01]])  # toy pelvis, hip, knee
    joints_z = toy_fk(poses[:, :3], poses[:, 3:6].reshape(-1, 1, 3), trans_z, rest)
    r = rot.axis_rotation("x", -np.pi / 2)
    assert np.allclose(r @ [0, 0, 1], [0, 1, 0])  # Z up becomes Y up
    for given in (rest[0], lambda betas: np.concatenate([rest, np.zeros((5, 3))]), torch.tensor(rest)):
        m = load_amass(path, rest_pelvis=given)
        joints_y = toy_fk(m.root_orient, m.body_pose[:, :1], m.trans, rest)
        assert np.abs(joints_y - joints_z @ r.T).max() < 1e-12
    # with the default pelvis the error is one constant offset for the whole clip
    m = load_amass(path)
    err = toy_fk(m.root_orient, m.body_pose[:, :1], m.trans, rest) - joints_z @ r.T
    assert np.allclose(err, err[:1], atol=1e-12)
    assert np.allclose(err[0, 0], (r - np.eye(3)) @ (DEFAULT_REST_PELVIS - rest[0]), atol=1e-12)


def test_amass_shape_only_and_bad_files_are_refused(tmp_path):
    np.savez(tmp_path / "shape.npz", betas=np.zeros(16), gender=np.array("male"))
    np.savez(tmp_path / "x_stagei.npz", betas=np.zeros(16), gender=np.array("male"), markers_latent=np.zeros((3, 3)))
    for name in ("shape.npz", "x_stagei.npz"):
        with pytest.raises(AMASSError, match=r"only a body shape.*_poses\.npz.*_stageii\.npz"):
            load_amass(tmp_path / name)
    np.savez(tmp_path / "odd_poses.npz", poses=np.zeros((4, 100)), trans=np.zeros((4, 3)), mocap_framerate=30)
    with pytest.raises(AMASSError, match="100 values"):
        load_amass(tmp_path / "odd_poses.npz")
    np.savez(tmp_path / "pickled_poses.npz", poses=np.zeros((2, 156)), gender=np.array([{"a": 1}], dtype=object))
    with pytest.raises(AMASSError, match="pickle"):
        load_amass(tmp_path / "pickled_poses.npz")
    with pytest.raises(AMASSError, match="not found"):
        load_amass(tmp_path / "missing.npz")


# ----------------------------------------------------------------------------- node, in a real ComfyUI
def combo_options(spec) -> list:
    """A combo's choices from /object_info, in either form ([choices, {...}] or ["COMBO", {"options": ...}])."""
    return spec[0] if isinstance(spec[0], list) else spec[1]["options"]


def preview_prompt(loader: str, inputs: dict, output: int = 2, body: bool = False) -> dict:
    prompt = {"1": {"class_type": loader, "inputs": inputs},
              "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", output]}}}
    if body:
        prompt["3"] = {"class_type": "MIMOBodyModelLoader", "inputs": {"body_model": "demo body (built-in)"}}
        prompt["1"]["inputs"]["body"] = ["3", 0]
    return prompt


@pytest.mark.comfy
def test_load_amass_node(comfy_server):
    from mimo_pack.devtools.comfy_host import PromptError

    folder = comfy_server.input_dir / "amass" / "CMU" / "01"
    folder.mkdir(parents=True, exist_ok=True)
    write_smplh_g(folder / "01_01_poses.npz", frames=40, fps=120.0)
    np.savez(folder / "shape.npz", betas=np.zeros(16), gender=np.array("male"))
    info = comfy_server.object_info(refresh=True)["MIMOLoadAMASS"]
    assert info["output"] == ["MIMO_MOTION", "FLOAT", "INT"] and info["category"] == "MIMO/motion"
    inputs = {**info["input"]["required"], **info["input"].get("optional", {})}
    assert all(spec[1].get("tooltip") for spec in inputs.values())
    options = combo_options(inputs["file"])
    assert "amass/CMU/01/01_01_poses.npz" in options and not any("shape.npz" in o for o in options)

    args = {"file": "amass/CMU/01/01_01_poses.npz", "fps": 30.0, "start_frame": 2, "max_frames": 0}
    result = comfy_server.run(preview_prompt("MIMOLoadAMASS", args), check=True)
    assert result.outputs["2"]["text"] == ["8"]  # 40 frames at 120 fps -> 10 at 30, from frame 2
    result = comfy_server.run(preview_prompt("MIMOLoadAMASS", {**args, "max_frames": 5}, body=True), check=True)
    assert result.outputs["2"]["text"] == ["5"]
    result = comfy_server.run(preview_prompt("MIMOLoadAMASS", {**args, "fps": 0.0}, output=1), check=True)
    assert result.outputs["2"]["text"] == ["120.0"]
    assert combo_options(inputs["floor"]) == ["feet on the floor", "as captured"]
    for floor in ("as captured", "feet on the floor"):
        result = comfy_server.run(preview_prompt("MIMOLoadAMASS", {**args, "floor": floor}, body=True), check=True)
        assert result.outputs["2"]["text"] == ["8"]

    late = comfy_server.run(preview_prompt("MIMOLoadAMASS", {**args, "start_frame": 50}))
    assert not late.ok and "start_frame 50 is past the end" in late.error["exception_message"]
    with pytest.raises(PromptError, match="was not found in ComfyUI's input folder"):
        comfy_server.queue(preview_prompt("MIMOLoadAMASS", {**args, "file": "amass/none_poses.npz"}))
