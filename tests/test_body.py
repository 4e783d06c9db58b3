"""Body models: SMPL-family files (synthetic, real key layout), our LBS against a loop reference
and against smplx (when installed), hand vertices, safe unpickling, and the built-in demo body."""

import os
import pickle
import pickletools

import numpy as np
import pytest
import torch

from mimo_pack.models.body import BodyModel, demo_body, load_body
from mimo_pack.models.body.files import BodyFileError, read_body_model
from mimo_pack.models.body.model import rotvec_to_matrix
from mimo_pack.models.body.params import PoseParams
from mimo_pack.models.body.skeleton import SKELETONS, SMPL_JOINTS
from mimo_pack.devtools.synthetic_body import write_synthetic_model

KINDS = ("smpl", "smplh", "smplx")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(kind, fmt, chumpy) -> (path, arrays written)."""
    root = tmp_path_factory.mktemp("bodies")
    out = {}
    for kind in KINDS:
        for fmt, chumpy in (("pkl", False), ("pkl", True), ("npz", False)):
            path = root / f"{kind}_{'ch' if chumpy else 'plain'}.{fmt}"
            out[kind, fmt, chumpy] = path, write_synthetic_model(path, kind, vertices=240, fmt=fmt,
                                                                 chumpy_style=chumpy, seed=len(out))
    return out


def random_params(frames, hands=True, betas=16, seed=0, scale=0.6):
    g = torch.Generator().manual_seed(seed)
    return PoseParams(
        root_orient=torch.randn(frames, 3, generator=g) * scale,
        body_pose=torch.randn(frames, 21, 3, generator=g) * scale,
        trans=torch.randn(frames, 3, generator=g),
        left_hand=torch.randn(frames, 15, 3, generator=g) * scale if hands else None,
        right_hand=torch.randn(frames, 15, 3, generator=g) * scale if hands else None,
        betas=torch.randn(betas, generator=g) if betas else None,
    )


# ----------------------------------------------------------------------------- independent reference

def ref_rotation(rotvec):
    """exp of the skew matrix by its power series (float64), independent of the Rodrigues formula."""
    k = np.array([[0, -rotvec[2], rotvec[1]], [rotvec[2], 0, -rotvec[0]], [-rotvec[1], rotvec[0], 0]], float)
    out, term = np.eye(3), np.eye(3)
    for n in range(1, 40):
        term = term @ k / n
        out = out + term
    return out


def ref_full_pose(kind, p, f):
    root, body = p.root_orient[f].numpy(), p.body_pose[f].numpy()
    lh = p.left_hand[f].numpy() if p.left_hand is not None else np.zeros((15, 3))
    rh = p.right_hand[f].numpy() if p.right_hand is not None else np.zeros((15, 3))
    rows = {"smpl": [root[None], body, np.zeros((2, 3))], "smplh": [root[None], body, lh, rh],
            "smplx": [root[None], body, np.zeros((3, 3)), lh, rh]}[kind]
    return np.concatenate(rows)


def ref_lbs(a, kind, p):
    """Per-frame, per-vertex SMPL in float64 loops, straight from the file's arrays."""
    parents = SKELETONS[kind][1]
    nb = {"smplx": 10}.get(kind, a["shapedirs"].shape[2])
    betas = np.zeros(nb)
    if p.betas is not None:
        b = p.betas.numpy()[:nb]
        betas[: len(b)] = b
    v_shaped = a["v_template"] + a["shapedirs"][:, :, :nb] @ betas
    joints = a["J_regressor"] @ v_shaped
    verts_out, joints_out = [], []
    for f in range(p.frames):
        rots = [ref_rotation(r) for r in ref_full_pose(kind, p, f)]
        feature = np.concatenate([(r - np.eye(3)).reshape(-1) for r in rots[1:]])
        v_posed = v_shaped + np.einsum("vcp,p->vc", a["posedirs"], feature)
        world = []
        for j, r in enumerate(rots):
            local = np.eye(4)
            local[:3, :3] = r
            local[:3, 3] = joints[j] - (joints[parents[j]] if parents[j] >= 0 else 0)
            world.append(local if parents[j] < 0 else world[parents[j]] @ local)
        verts = np.zeros_like(v_posed)
        for i in range(len(v_posed)):
            for j in np.flatnonzero(a["weights"][i]):
                g = world[j]
                verts[i] += a["weights"][i, j] * (g[:3, :3] @ (v_posed[i] - joints[j]) + g[:3, 3])
        t = p.trans[f].numpy()
        verts_out.append(verts + t)
        joints_out.append(np.stack([w[:3, 3] for w in world]) + t)
    return np.stack(verts_out), np.stack(joints_out)


# ----------------------------------------------------------------------------- files

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fmt,chumpy", [("pkl", False), ("pkl", True), ("npz", False)])
def test_each_kind_and_format_loads(files, kind, fmt, chumpy):
    path, a = files[kind, fmt, chumpy]
    d = read_body_model(path)
    assert d.kind == kind
    np.testing.assert_array_equal(d.v_template, a["v_template"])
    np.testing.assert_array_equal(d.posedirs, a["posedirs"])
    np.testing.assert_array_equal(d.J_regressor, a["J_regressor"])
    np.testing.assert_array_equal(d.weights, a["weights"])
    np.testing.assert_array_equal(d.faces, a["f"])
    assert d.parents.tolist() == list(SKELETONS[kind][1])
    body = load_body(path)
    names = SKELETONS[kind][0]
    assert body.kind == kind and body.joint_names == names and body.parents == SKELETONS[kind][1]
    assert body.faces.dtype == torch.long and body.faces.shape == (480, 3)
    assert body.num_betas == {"smpl": 10, "smplh": 16, "smplx": 10}[kind]


def test_chumpy_and_sparse_pickles_really_use_the_stubs(files):
    path, _ = files["smpl", "pkl", True]
    names = {arg for op, arg, _ in pickletools.genops(path.read_bytes()) if op.name == "GLOBAL"}
    assert {"chumpy.ch Ch", "chumpy.reordering Select"} <= names
    assert any(n.startswith("scipy.sparse") and n.endswith("csc_matrix") for n in names)


@pytest.mark.parametrize("kind,betas,stored", [("smplh", 16, 16), ("smpl", 300, 300), ("smplx", 300, 400)])
def test_all_betas_in_the_file_are_kept(tmp_path, kind, betas, stored):
    path = tmp_path / f"{kind}.npz"
    a = write_synthetic_model(path, kind, vertices=240, num_betas=betas)
    assert a["shapedirs"].shape[2] == stored
    body = load_body(path)
    assert body.num_betas == betas
    b = torch.zeros(betas)
    b[-1] = 1.0  # the last coefficient still acts
    expected = a["v_template"] + a["shapedirs"][:, :, betas - 1]
    np.testing.assert_allclose(body.rest_vertices(b).numpy(), expected, atol=1e-6)


def test_amass_style_smplh_npz_without_hand_pca_loads(tmp_path):
    path = tmp_path / "model.npz"
    write_synthetic_model(path, "smplh", vertices=240, hand_pca=False)
    assert not any(k.startswith("hands_") for k in np.load(path).files)
    body = load_body(path)
    assert body.kind == "smplh" and body.num_betas == 16
    verts, _ = body.pose(random_params(2))
    assert torch.isfinite(verts).all()


def test_forbidden_global_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"v_template": Evil()}, protocol=2))
    with pytest.raises(BodyFileError) as err:
        read_body_model(path)
    assert str(path) in str(err.value) and "system" in str(err.value) and "refusing" in str(err.value)
    assert not marker.exists()


def test_file_errors_name_the_file_and_the_problem(tmp_path, files):
    with pytest.raises(BodyFileError, match="does not exist"):
        read_body_model(tmp_path / "nope.pkl")
    _, a = files["smpl", "npz", False]
    broken = dict(a)
    del broken["weights"]
    np.savez(tmp_path / "noweights.npz", **broken)
    with pytest.raises(BodyFileError, match=r"noweights\.npz.*no 'weights'"):
        read_body_model(tmp_path / "noweights.npz")
    odd = dict(a, posedirs=np.zeros((240, 3, 9 * 15)))  # 16 joints: a MANO hand
    np.savez(tmp_path / "mano.npz", **odd)
    with pytest.raises(BodyFileError, match=r"mano\.npz.*16 joints"):
        read_body_model(tmp_path / "mano.npz")
    np.savez(tmp_path / "obj.npz", **dict(a, J_regressor=np.array([{"a": 1}], dtype=object)))
    with pytest.raises(BodyFileError, match=r"obj\.npz.*'J_regressor'.*pickled object"):
        read_body_model(tmp_path / "obj.npz")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(BodyFileError, match=r"list\.pkl.*not a dict"):
        read_body_model(tmp_path / "list.pkl")


# ----------------------------------------------------------------------------- posing

def test_rotvec_to_matrix_matches_the_series_and_small_angles():
    vecs = torch.cat([torch.randn(20, 3, dtype=torch.float64) * 2, torch.randn(5, 3, dtype=torch.float64) * 1e-6,
                      torch.zeros(1, 3, dtype=torch.float64)])
    mats = rotvec_to_matrix(vecs)
    for v, m in zip(vecs, mats, strict=True):
        np.testing.assert_allclose(m.numpy(), ref_rotation(v.numpy()), atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_pose_and_betas_give_the_template_plus_trans(files, kind):
    path, a = files[kind, "npz", False]
    body = load_body(path)
    trans = torch.tensor([[0.0, 0.0, 0.0], [0.5, -1.0, 2.0]])
    p = PoseParams(root_orient=torch.zeros(2, 3), body_pose=torch.zeros(2, 21, 3), trans=trans)
    verts, joints = body.pose(p)
    expected = torch.as_tensor(a["v_template"], dtype=torch.float32)
    torch.testing.assert_close(verts, expected[None] + trans[:, None], atol=1e-6, rtol=0)
    torch.testing.assert_close(joints[0], body.rest_joints(), atol=1e-6, rtol=0)


def _descendants(parents, k):
    out = {k}
    for j, p in enumerate(parents):
        if p in out:
            out.add(j)
    return out


def test_rotating_one_joint_moves_only_its_descendants(files):
    path, a = files["smpl", "npz", False]
    body = load_body(path)
    k = SMPL_JOINTS.index("left_elbow")
    rotvec = np.array([0.3, -1.1, 0.4])
    p = PoseParams(root_orient=torch.zeros(1, 3), body_pose=torch.zeros(1, 21, 3), trans=torch.zeros(1, 3))
    p.body_pose[0, k - 1] = torch.as_tensor(rotvec)
    verts, joints = body.pose(p)
    r = ref_rotation(rotvec)
    # the pose blendshape of that one joint applies everywhere; its rotation only beyond the joint
    v_posed = a["v_template"] + a["posedirs"][:, :, (k - 1) * 9:k * 9] @ (r - np.eye(3)).reshape(-1)
    rest_j = a["J_regressor"] @ a["v_template"]
    below = sorted(_descendants(SKELETONS["smpl"][1], k))
    w_below = a["weights"][:, below].sum(1)
    moved = (r @ (v_posed - rest_j[k]).T).T + rest_j[k]
    expected = (1 - w_below)[:, None] * v_posed + w_below[:, None] * moved
    np.testing.assert_allclose(verts[0].numpy(), expected, atol=2e-6)
    still = w_below == 0
    assert still.sum() > 100 and (w_below == 1).sum() > 0
    np.testing.assert_allclose(verts[0].numpy()[still], v_posed[still], atol=2e-6)
    others = [j for j in range(24) if j not in below or j == k]
    np.testing.assert_allclose(joints[0].numpy()[others], rest_j[others], atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_lbs_matches_a_loop_reference(files, kind):
    path, a = files[kind, "pkl", True]
    body = load_body(path)
    p = random_params(3, hands=kind != "smpl", seed=1)
    verts, joints = body.pose(p)
    rv, rj = ref_lbs(a, kind, p)
    err_v = np.abs(verts.numpy() - rv).max()
    err_j = np.abs(joints.numpy() - rj).max()
    print(f"{kind}: LBS vs loop reference max |dv| {err_v:.2e} m, |dj| {err_j:.2e} m")
    assert err_v < 1e-5 and err_j < 1e-5


def test_missing_hands_are_flat_and_chunks_do_not_matter(files):
    body = load_body(files["smplh", "npz", False][0])
    p = random_params(5, hands=False, seed=2)
    zero = PoseParams(p.root_orient, p.body_pose, p.trans, torch.zeros(5, 15, 3), torch.zeros(5, 15, 3), p.betas)
    torch.testing.assert_close(body.pose(p), body.pose(zero))
    torch.testing.assert_close(body.pose(p, chunk=2), body.pose(p), atol=1e-6, rtol=0)
    empty = PoseParams(torch.zeros(0, 3), torch.zeros(0, 21, 3), torch.zeros(0, 3))
    assert body.pose(empty)[0].shape == (0, 240, 3)
    with pytest.raises(ValueError, match="body_pose"):
        body.pose(PoseParams(torch.zeros(2, 3), torch.zeros(2, 23, 3), torch.zeros(2, 3)))


@pytest.mark.parametrize("kind", KINDS)
def test_hand_vertices_are_those_skinned_beyond_the_wrist(files, kind):
    body = load_body(files[kind, "npz", False][0])
    names = body.joint_names
    owner = body.weights.argmax(1)
    for side, verts in (("left", body.left_hand_vertices), ("right", body.right_hand_vertices)):
        wrist = names.index(f"{side}_wrist")
        hand = _descendants(body.parents, wrist)  # the wrist's own region (palm) and everything after it
        expected = torch.nonzero(torch.isin(owner, torch.tensor(sorted(hand)))).flatten()
        assert torch.equal(verts, expected) and len(verts) > 0
    assert torch.equal(body.hand_vertices, torch.cat([body.left_hand_vertices, body.right_hand_vertices]).sort().values)


def test_to_returns_a_moved_copy(files):
    body = load_body(files["smpl", "npz", False][0])
    assert body.to("cpu") is body
    meta = body.to("meta")
    assert meta.v_template.device.type == "meta" and meta.faces.device.type == "meta"
    assert body.device.type == "cpu" and meta.kind == "smpl"


# ----------------------------------------------------------------------------- smplx as an oracle

def _smplx_model(smplx, kind, path, monkeypatch):
    from smplx.utils import Struct

    ids = {n: i + 1 for i, n in enumerate(("nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel",
                                            "RBigToe", "RSmallToe", "RHeel", "lthumb", "lindex", "lmiddle", "lring",
                                            "lpinky", "rthumb", "rindex", "rmiddle", "rring", "rpinky"))}
    if kind == "smpl":
        return smplx.SMPL(model_path=str(path), vertex_ids=ids, num_betas=10)
    if kind == "smplh":  # AMASS-style: 16 betas (smplx caps at 10 unless told), no hand PCA arrays
        data = dict(np.load(path))
        for side in "lr":
            data[f"hands_components{side}"], data[f"hands_mean{side}"] = np.eye(45), np.zeros(45)

        class SMPLH16(smplx.SMPLH):
            SHAPE_SPACE_DIM = 16

        return SMPLH16(model_path="", data_struct=Struct(**data), vertex_ids=ids, num_betas=16,
                       use_pca=False, flat_hand_mean=True)
    monkeypatch.setitem(smplx.body_models.VERTEX_IDS, "smplx", {**ids, **{n: i + 1 for i, n in enumerate(
        smplx.vertex_ids.vertex_ids["smplx"])}})
    return smplx.SMPLX(model_path=str(path), num_betas=10, num_expression_coeffs=10, use_pca=False,
                       flat_hand_mean=True)


@pytest.mark.parametrize("kind", KINDS)
def test_lbs_matches_smplx(files, kind, monkeypatch, tmp_path):
    smplx = pytest.importorskip("smplx", reason="smplx is not installed (optional oracle: pip install smplx)")
    if kind == "smplh":
        path = tmp_path / "amass_smplh.npz"
        write_synthetic_model(path, "smplh", vertices=240, hand_pca=False, seed=7)
    else:
        path = files[kind, "pkl" if kind == "smpl" else "npz", False][0]
    ours = load_body(path)
    theirs = _smplx_model(smplx, kind, path, monkeypatch)
    frames = 4
    p = random_params(frames, hands=kind != "smpl", betas=ours.num_betas, seed=3)
    kw = dict(betas=p.betas[None].expand(frames, -1), global_orient=p.root_orient, transl=p.trans)
    if kind == "smpl":
        kw["body_pose"] = torch.cat([p.body_pose.reshape(frames, 63), torch.zeros(frames, 6)], 1)
    else:
        kw.update(body_pose=p.body_pose.reshape(frames, 63), left_hand_pose=p.left_hand.reshape(frames, 45),
                  right_hand_pose=p.right_hand.reshape(frames, 45))
    if kind == "smplx":
        kw.update(expression=torch.zeros(frames, 10), jaw_pose=torch.zeros(frames, 3),
                  leye_pose=torch.zeros(frames, 3), reye_pose=torch.zeros(frames, 3))
    with torch.no_grad():
        out = theirs(**kw)
    verts, joints = ours.pose(p)
    err_v = (out.vertices - verts).abs().max().item()
    err_j = (out.joints[:, :ours.num_joints] - joints).abs().max().item()
    print(f"{kind}: LBS vs smplx {smplx.__name__} max |dv| {err_v:.2e} m, |dj| {err_j:.2e} m")
    assert err_v < 1e-5 and err_j < 1e-5


# ----------------------------------------------------------------------------- demo body

@pytest.fixture(scope="module")
def demo():
    return demo_body()


def test_demo_body_is_a_closed_skinned_human(demo):
    assert demo.kind == "demo" and demo.joint_names == SMPL_JOINTS and demo.num_betas == 0
    v, f = demo.v_template.numpy(), demo.faces.numpy()
    assert 5000 < len(v) < 12000
    # closed and consistently oriented: every directed edge appears once, its reverse once
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    keys = edges[:, 0] * len(v) + edges[:, 1]
    rev = edges[:, 1] * len(v) + edges[:, 0]
    assert len(np.unique(keys)) == len(keys) and np.isin(rev, keys).all()
    volume = np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6
    assert 0.04 < volume < 0.1  # m³, outward normals
    height = v[:, 1].max() - v[:, 1].min()
    assert 1.6 < height < 1.85 and v[:, 0].max() > 0.8 and v[:, 0].min() < -0.8  # T-pose arm span
    w = demo.weights.numpy()
    np.testing.assert_allclose(w.sum(1), 1, atol=1e-6)
    assert ((w > 0).sum(1) <= 4).all()
    nose = v[v[:, 1] > 0.35][:, 2].max()
    assert nose > 0.12  # faces +Z
    j = demo.rest_joints().numpy()
    assert j[SMPL_JOINTS.index("left_wrist"), 0] > 0.6  # left on +X
    # deterministic
    again = demo_body()
    assert torch.equal(again.v_template, demo.v_template) and torch.equal(again.weights, demo.weights)


def test_demo_hands_and_posing(demo):
    v = demo.v_template
    left, right = demo.left_hand_vertices, demo.right_hand_vertices
    assert len(left) > 500 and len(left) == len(right)
    assert (v[left, 0] > 0.64).all() and (v[right, 0] < -0.64).all()
    assert ((v[:, 0].abs() > 0.7) <= torch.isin(torch.arange(len(v)), demo.hand_vertices)).all()
    # arms down: the wrists drop below the shoulders, the hands follow, the legs stay
    p = PoseParams(root_orient=torch.zeros(1, 3), body_pose=torch.zeros(1, 21, 3), trans=torch.tensor([[0, 1.0, 0]]))
    p.body_pose[0, SMPL_JOINTS.index("left_shoulder") - 1, 2] = -1.3
    p.body_pose[0, SMPL_JOINTS.index("right_shoulder") - 1, 2] = 1.3
    verts, joints = demo.pose(p)
    wrist = SMPL_JOINTS.index("left_wrist")
    assert joints[0, wrist, 1] < joints[0, SMPL_JOINTS.index("left_shoulder"), 1] - 0.4
    assert (verts[0, left, 1] < 1.0).all()  # the hands went down with the arms (rest: y ≈ 1.2)
    feet = v[:, 1] < -1.0
    torch.testing.assert_close(verts[0, feet], v[feet] + torch.tensor([0, 1.0, 0]), atol=1e-6, rtol=0)
    # ignores betas and hand poses
    q = PoseParams(p.root_orient, p.body_pose, p.trans, torch.ones(1, 15, 3), None, torch.ones(10))
    torch.testing.assert_close(demo.pose(q)[0], verts)


def test_body_model_checks_its_arrays():
    with pytest.raises(ValueError, match="exactly one"):
        BodyModel("demo", np.zeros((3, 3)), np.zeros((1, 3), int), np.full((3, 24), 1 / 24), SKELETONS["smpl"][1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_pose_on_cuda_matches_cpu(files, demo):
    for body in (load_body(files["smplx", "npz", False][0]), demo):
        p = random_params(6, seed=4, betas=10)
        gpu = body.to("cuda")
        v, j = gpu.pose(p)
        assert v.device.type == "cuda" and gpu.faces.device.type == "cuda"
        cv, cj = body.pose(p)
        torch.testing.assert_close(v.cpu(), cv, atol=2e-5, rtol=0)
        torch.testing.assert_close(j.cpu(), cj, atol=2e-5, rtol=0)
