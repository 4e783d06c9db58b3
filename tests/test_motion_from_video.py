"""Motion from video: the NLF adapter against a scripted STAND-IN for NLF's TorchScript model, the
camera -> world conversion, the video camera in the rasterizer, and the GVHMR adapter against a fake
``gvhmr`` module with the API of gvhmr 1.6.1.

The stand-in (``NLFStandIn``) is *not* NLF: it has no network and no detector. It is a
``torch.jit.script``-ed module with NLF's method ``detect_smpl_batched`` and NLF's output dict (boxes as
x, y, w, h, score; pose [P,72]; betas [P,10]; trans [P,3] in metres; joints3d / vertices3d in millimetres;
joints2d projected with the intrinsics it was given, or NLF's 55-degree default). It answers from tables:
the frame index is written in the red value of each frame's top-left pixel.
"""

import importlib.machinery
import math
import sys
import types
import warnings
from typing import Dict, List, Optional  # noqa: UP035  TorchScript annotations

import numpy as np
import pytest
import torch

from mimo_pack.models.body import demo_body
from mimo_pack.models.motion import rotations as rot
from mimo_pack.models.motion.from_video import (CAMERA_TO_WORLD, EstimatorError, EstimatorUnavailable,
                                                 PersonEstimate, choose_people, estimate_nlf,
                                                 load_nlf, motion_from_estimates, video_camera)
from mimo_pack.models.motion.gvhmr import estimate_gvhmr
from mimo_pack.models.render import Camera, camera_from_info, make_camera, render_motion

W, H = 96, 64  # landscape, so the longer side decides NLF's focal length


class NLFStandIn(torch.nn.Module):
    """Scripted stand-in for NLF's TorchScript model (see the module notes): tables [T,P,...] per frame."""

    def __init__(self, boxes, pose, betas, trans, joints_mm, vertices_mm, counts):
        super().__init__()
        self.register_buffer("boxes", boxes.float())
        self.register_buffer("pose", pose.float())
        self.register_buffer("betas", betas.float())
        self.register_buffer("trans", trans.float())
        self.register_buffer("joints", joints_mm.float())
        self.register_buffer("vertices", vertices_mm.float())
        self.register_buffer("counts", counts.long())

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
            raise ValueError("this stand-in only has SMPL")
        h, w = images.shape[2], images.shape[3]
        if intrinsic_matrix is None:  # NLF's default: the fov across the longer side, centre (W-1)/2, (H-1)/2
            f = float(max(h, w)) / (2.0 * math.tan(default_fov_degrees * math.pi / 360.0))
            k = torch.tensor([[f, 0.0, (w - 1) / 2.0], [0.0, f, (h - 1) / 2.0], [0.0, 0.0, 1.0]])
        else:
            k = intrinsic_matrix[0].float().cpu()
        out: Dict[str, List[torch.Tensor]] = {}
        for key in ["boxes", "pose", "betas", "trans", "joints3d", "vertices3d", "joints2d"]:
            out[key] = []
        for i in range(images.shape[0]):
            t = int(images[i, 0, 0, 0])
            c = int(self.counts[t])
            joints = self.joints[t, :c]
            xy = joints[..., :2] / joints[..., 2:] * torch.stack([k[0, 0], k[1, 1]]) + torch.stack([k[0, 2], k[1, 2]])
            out["boxes"].append(self.boxes[t, :c].to(images.device))
            out["pose"].append(self.pose[t, :c].to(images.device))
            out["betas"].append(self.betas[t, :c].to(images.device))
            out["trans"].append(self.trans[t, :c].to(images.device))
            out["joints3d"].append(joints.to(images.device))
            out["vertices3d"].append(self.vertices[t, :c].to(images.device))
            out["joints2d"].append(xy.to(images.device))
        return out


def nlf_intrinsics(width=W, height=H, fov=55.0):
    f = max(width, height) / (2 * math.tan(math.radians(fov) / 2))
    return f, (width - 1) / 2, (height - 1) / 2  # NLF's pixel convention (centres on integers)


def person(frames=6, seed=0, x=(-0.3, 0.3), depth=4.0):
    """Camera-space SMPL parameters of an upright person facing the camera, turning and walking sideways."""
    rng = np.random.default_rng(seed)
    yaw = np.linspace(-0.5, 0.5, frames)
    root = rot.matrix_to_aa(rot.axis_rotation("x", np.pi) @ rot.axis_rotation("y", yaw))
    body = rng.normal(0, 0.15, (frames, 21, 3))
    hands = rng.normal(0, 0.1, (frames, 2, 3))  # SMPL joints 22, 23: dropped by the adapter
    pelvis = np.stack([np.linspace(*x, frames), np.full(frames, 0.15), depth + np.linspace(0, 0.4, frames)], -1)
    betas = rng.normal(0, 0.5, (frames, 10))
    return root, body, hands, pelvis, betas


def posed(root, body, pelvis):
    """Demo body posed in camera space with these parameters -> vertices, joints (metres), trans."""
    b = demo_body()
    trans = pelvis - b.rest_joints()[0].double().numpy()
    from mimo_pack.models.body.params import PoseParams

    p = PoseParams(root_orient=torch.tensor(root).float(), body_pose=torch.tensor(body).float(),
                   trans=torch.tensor(trans).float())
    v, j = b.pose(p)
    return v.double(), j.double(), trans


def bbox(vertices, f, cx, cy):
    xy = vertices[..., :2] / vertices[..., 2:] * f + torch.tensor([cx, cy], dtype=vertices.dtype)
    lo, hi = xy.min(-2).values, xy.max(-2).values
    return torch.cat([lo, hi - lo, torch.ones(*lo.shape[:-1], 1, dtype=lo.dtype)], -1)


def build_tables(people, counts=None, order=None, joints_unit=1000.0):
    """people: list of (root, body, hands, pelvis, betas) of equal length -> stand-in tables [T,P,...]."""
    f, cx, cy = nlf_intrinsics()
    cols = {k: [] for k in ("boxes", "pose", "betas", "trans", "joints", "vertices")}
    for root, body, hands, pelvis, betas in people:
        v, j, trans = posed(root, body, pelvis)
        cols["boxes"].append(bbox(v, f, cx, cy))
        cols["pose"].append(torch.tensor(np.concatenate([root, body.reshape(-1, 63), hands.reshape(-1, 6)], 1)))
        cols["betas"].append(torch.tensor(betas))
        cols["trans"].append(torch.tensor(trans))
        cols["joints"].append(j * joints_unit)
        cols["vertices"].append(v * 1000.0)
    tables = {k: torch.stack(v, 1) for k, v in cols.items()}  # [T,P,...]
    frames = tables["pose"].shape[0]
    if order is not None:  # per frame, which person sits in which detection slot
        index = torch.tensor(order)
        tables = {k: torch.stack([v[t, index[t]] for t in range(frames)]) for k, v in tables.items()}
    counts = torch.full((frames,), len(people)) if counts is None else torch.tensor(counts)
    return tables, counts


def write_standin(path, tables, counts, box_override=None):
    boxes = tables["boxes"].clone()
    for (t, p), box in (box_override or {}).items():
        boxes[t, p] = torch.tensor(box, dtype=boxes.dtype)
    module = NLFStandIn(boxes, tables["pose"], tables["betas"], tables["trans"], tables["joints"],
                        tables["vertices"], torch.as_tensor(counts))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated; NLF ships TorchScript
        torch.jit.script(module).save(str(path))
    return path


def video(frames, width=W, height=H):
    """Frames [F,H,W,3] float 0..1 (as ComfyUI's IMAGE) with the frame index in pixel (0, 0)'s red value."""
    v = torch.rand(frames, height, width, 3) * 0.5
    v[:, 0, 0, 0] = torch.arange(frames) / 255.0
    return v


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    p = person()
    tables, counts = build_tables([p])
    path = write_standin(tmp_path_factory.mktemp("nlf") / "nlf_standin.torchscript", tables, counts)
    return path, p, tables


def rest_pelvis():
    return demo_body().rest_joints()[0]


def test_recovers_the_standin_parameters(single):
    path, (root, body, _, pelvis, betas), _ = single
    calls = []
    motion = estimate_nlf(video(6), path, fps=24.0, batch_size=4, rest_pelvis=rest_pelvis(),
                          progress=lambda done, total: calls.append((done, total)))
    assert calls == [(4, 6), (6, 6)]  # streamed in chunks of 4
    assert motion.frames == 6 and motion.fps == 24.0 and motion.model_type == "smpl"
    np.testing.assert_allclose(motion.body_pose, body, atol=1e-5)  # SMPL joints 1..21; 22, 23 dropped
    np.testing.assert_allclose(motion.betas, betas.mean(0), atol=1e-6)
    # root: turned 180 degrees about X
    world = rot.aa_to_matrix(motion.root_orient)
    np.testing.assert_allclose(world, CAMERA_TO_WORLD @ rot.aa_to_matrix(root), atol=1e-5)
    # the demo body's pelvis lands where the stand-in's pelvis is, turned into the world
    np.testing.assert_allclose(motion.trans + rest_pelvis().double().numpy(), pelvis @ CAMERA_TO_WORLD.T, atol=1e-5)
    cam = motion.meta["camera"]
    f, cx, cy = nlf_intrinsics()
    assert cam["width"] == W and cam["height"] == H
    np.testing.assert_allclose([cam["fx"], cam["fy"], cam["cx"], cam["cy"]], [f, f, cx + 0.5, cy + 0.5], atol=1e-9)
    np.testing.assert_allclose(cam["R"], np.diag([1.0, -1.0, -1.0]))
    assert cam["t"] == [0.0, 0.0, 0.0] and motion.meta["detected_frames"] == 6


def test_video_camera_overlays_the_source_frames(single):
    """World joints through the stored camera land exactly where the stand-in's camera-space joints
    project with the intrinsics NLF itself would use (its 55-degree default, asked without intrinsics)."""
    path, _, tables = single
    motion = estimate_nlf(video(6), path, fps=30.0, rest_pelvis=rest_pelvis())
    body = demo_body()
    verts_w, joints_w = body.pose(motion.params())
    cam = make_camera(verts_w, W, H, "motion", camera_info=motion.meta["camera"])
    joints_c = tables["joints"][:, 0].float() / 1000
    torch.testing.assert_close(cam.to_camera(joints_w), joints_c, atol=2e-5, rtol=0)
    xy, _ = cam.project(joints_w)
    standin = load_nlf(path)
    images = (video(6) * 255).round().to(torch.uint8).permute(0, 3, 1, 2)
    nlf_xy = torch.stack(standin.detect_smpl_batched(images)["joints2d"])[:, 0]  # NLF's own default camera
    torch.testing.assert_close(xy, nlf_xy + 0.5, atol=2e-3, rtol=0)  # + 0.5: pixel centres at +0.5 here
    # the rendered silhouette is the camera-space body's, pixel for pixel
    f, cx, cy = nlf_intrinsics()
    eye = Camera(fx=f, fy=f, cx=cx + 0.5, cy=cy + 0.5, R=torch.eye(3), t=torch.zeros(3), width=W, height=H)
    ones = torch.ones(body.num_vertices, 1)
    _, sil = render_motion(verts_w, body.faces, ones, W, H, camera_mode="motion", camera_info=motion.meta["camera"])
    _, ref = render_motion(tables["vertices"][:, 0].float() / 1000, body.faces, ones, W, H, camera=eye)
    assert ref.sum() > 200 * 6
    assert (sil != ref).float().mean() < 1e-3


def test_default_pelvis_without_a_body(single):
    path, (_, _, _, pelvis, _), _ = single
    motion = estimate_nlf(video(6), path, fps=30.0)
    from mimo_pack.models.motion.amass import DEFAULT_REST_PELVIS

    np.testing.assert_allclose(motion.trans + DEFAULT_REST_PELVIS, pelvis @ CAMERA_TO_WORLD.T, atol=1e-5)
    assert motion.meta["rest_pelvis"] == pytest.approx(DEFAULT_REST_PELVIS.tolist())


def test_joints_in_metres_and_a_given_field_of_view(tmp_path):
    p = person(frames=3, seed=3)
    tables, counts = build_tables([p], joints_unit=1.0)
    path = write_standin(tmp_path / "metres.torchscript", tables, counts)
    motion = estimate_nlf(video(3).mul(255).round().to(torch.uint8), path, fps=25.0, fov_degrees=40.0,
                          rest_pelvis=rest_pelvis())
    np.testing.assert_allclose(motion.trans + rest_pelvis().double().numpy(), p[3] @ CAMERA_TO_WORLD.T, atol=1e-5)
    f = max(W, H) / (2 * math.tan(math.radians(20)))
    assert motion.meta["camera"]["fx"] == pytest.approx(f) and motion.meta["fov_degrees"] == 40.0


def test_several_people_and_missing_frames(tmp_path):
    """Frame 0: the target and a smaller bystander; frame 1: a bigger bystander elsewhere (continuity keeps
    the target); frame 2: nobody (interpolated); frame 5: nobody (the last pose is held)."""
    target, other = person(seed=1), person(seed=2, x=(1.5, 1.5), depth=6.0)
    tables, _ = build_tables([target, other], order=[[0, 1], [1, 0], [0, 1], [0, 1], [0, 1], [0, 1]])
    counts = [2, 2, 0, 1, 1, 0]
    big = (66.0, 0.0, 30.0, 64.0, 0.9)  # larger than the target's box, no overlap
    path = write_standin(tmp_path / "crowd.torchscript", tables, counts, box_override={(1, 0): big})
    assert (tables["boxes"][0, 0, 2:4].prod() > tables["boxes"][0, 1, 2:4].prod()).item()
    assert (torch.tensor(big[2:4]).prod() > tables["boxes"][1, 1, 2:4].prod()).item()
    assert tables["boxes"][1, 1, 0] + tables["boxes"][1, 1, 2] < big[0]
    motion = estimate_nlf(video(6), path, fps=30.0, rest_pelvis=rest_pelvis())
    _, body, _, pelvis, betas = target
    expect = pelvis @ CAMERA_TO_WORLD.T - rest_pelvis().double().numpy()
    for t in (0, 1, 3, 4):
        np.testing.assert_allclose(motion.body_pose[t], body[t], atol=1e-5)
        np.testing.assert_allclose(motion.trans[t], expect[t], atol=1e-5)
    np.testing.assert_allclose(motion.trans[2], (expect[1] + expect[3]) / 2, atol=1e-5)
    mid = rot.quat_slerp(rot.aa_to_quat(body[1]), rot.aa_to_quat(body[3]), np.full(21, 0.5))
    np.testing.assert_allclose(rot.aa_to_quat(motion.body_pose[2]) * np.sign(mid[..., :1]), mid * np.sign(mid[..., :1]),
                               atol=1e-6)
    np.testing.assert_allclose(motion.trans[5], expect[4], atol=1e-5)
    np.testing.assert_allclose(motion.body_pose[5], body[4], atol=1e-5)
    np.testing.assert_allclose(motion.betas, betas[[0, 1, 3, 4]].mean(0), atol=1e-6)
    assert motion.meta["detected_frames"] == 4 and motion.meta["filled_frames"] == 2


def test_choose_people_rules():
    a, far_big, near = [10, 10, 20, 40, 1], [60, 0, 30, 60, 1], [12, 11, 20, 40, 1]
    assert choose_people([[a, far_big]]) == [1]  # first frame: the largest
    assert choose_people([[a], [far_big, near]]) == [0, 1]  # then: the one overlapping the previous choice
    assert choose_people([[a], [], [far_big, near]]) == [0, None, 1]  # the track survives a gap
    assert choose_people([[a], [far_big]]) == [0, 0]  # nothing overlaps: the largest


def test_nobody_anywhere_is_an_error(tmp_path):
    tables, _ = build_tables([person(frames=2)])
    path = write_standin(tmp_path / "empty.torchscript", tables, torch.zeros(2, dtype=torch.long))
    with pytest.raises(EstimatorError, match="No person was detected in any of the 2 frames"):
        estimate_nlf(video(2), path, fps=30.0)


def test_bad_model_files(tmp_path):
    with pytest.raises(EstimatorError, match="not found"):
        load_nlf(tmp_path / "missing.torchscript")
    junk = tmp_path / "junk.torchscript"
    junk.write_bytes(b"not a model")
    with pytest.raises(EstimatorError, match="is not a TorchScript model.*models/nlf"):
        load_nlf(junk)
    other = tmp_path / "other.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(other))
    with pytest.raises(EstimatorError, match="no detect_smpl_batched"):
        load_nlf(other)
    with pytest.raises(EstimatorError, match=r"frames \[F,H,W,3\]"):
        estimate_nlf(torch.zeros(4, 4), other, fps=30.0)


def test_camera_from_info_scaling_and_errors():
    info = video_camera(100.0, 100.0, 48.0, 32.0, W, H)
    same = camera_from_info(info)
    assert (same.width, same.height, same.fx, same.cx) == (W, H, 100.0, 48.0)
    double = camera_from_info(info, 2 * W, 2 * H)
    assert (double.fx, double.fy, double.cx, double.cy) == (200.0, 200.0, 96.0, 64.0)
    square = camera_from_info(info, 192, 192)  # letterboxed: scale 2, 32 px bands above and below
    assert (square.fx, square.cx, square.cy) == (200.0, 96.0, 64.0 + 32.0)
    point = torch.tensor([[[0.3, -0.2, -3.0]]])  # world point in front of the camera (which looks down -Z)
    xy, _ = same.project(point)
    xy2, _ = square.project(point)
    torch.testing.assert_close(xy2, xy * 2 + torch.tensor([0.0, 32.0]))
    with pytest.raises(ValueError, match="has none: only motions made from a video"):
        make_camera(point, 64, 64, "motion", camera_info=None)
    with pytest.raises(ValueError, match="lacks fy"):
        camera_from_info({k: v for k, v in info.items() if k != "fy"})


def test_motion_from_estimates_keeps_the_camera_through_edits():
    est = [PersonEstimate(pose=np.zeros(72), trans=np.array([0.0, 0.0, 3.0]), betas=np.zeros(10))] * 4
    motion = motion_from_estimates(est, 30.0, video_camera(50, 50, 32, 32, 64, 64, "test"))
    assert motion.trim(1, 3).meta["camera"]["fx"] == 50 and motion.resample(15).meta["camera"]["cx"] == 32
    upright = rot.aa_to_matrix(motion.root_orient[0])  # the zero camera-space root is upside down in the world
    np.testing.assert_allclose(upright, np.diag([1.0, -1.0, -1.0]), atol=1e-12)


# ----------------------------------------------------------------------------------------------- GVHMR
def test_gvhmr_not_installed_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gvhmr", None)  # import blocked, find_spec raises -> "not installed"
    with pytest.raises(EstimatorUnavailable, match="GVHMR is not installed"):
        estimate_gvhmr(video(2), 30.0)


def fake_gvhmr(length, seen):
    """A module with gvhmr 1.6.1's inference API (pipeline() -> callable -> MotionResult-like)."""
    def pipeline(task="human-motion-recovery", *, device=None, **kwargs):
        assert task == "human-motion-recovery"
        seen["device"] = device

        def run(video, **kw):
            import av

            with av.open(video) as c:
                seen["frames"] = sum(1 for _ in c.decode(video=0))
                s = c.streams.video[0]
                seen["size"] = (s.width, s.height)
            seen["kwargs"] = kw
            t = torch.arange(length, dtype=torch.float64) / 30.0
            root = torch.tensor(rot.matrix_to_aa(rot.axis_rotation("x", np.pi))).expand(length, 3)
            params = {"global_orient": root.clone(), "body_pose": torch.zeros(length, 63) + 0.1,
                      "betas": torch.ones(length, 10) * 0.5,
                      "transl": torch.stack([t, torch.zeros_like(t), 3.0 + 0 * t], -1)}
            K = torch.tensor([[80.0, 0, 32.0], [0, 80.0, 24.0], [0, 0, 1]]).expand(length, 3, 3)
            return types.SimpleNamespace(smpl_params_camera=params, smpl_params_world=params, intrinsics=K, fps=30.0)
        return run

    module = types.ModuleType("gvhmr")
    module.__spec__ = importlib.machinery.ModuleSpec("gvhmr", None)
    module.pipeline = pipeline
    return module


@pytest.mark.parametrize("fps, frames, length", [(24.0, 10, 12), (30.0, 7, 7)])
def test_gvhmr_adapter(monkeypatch, fps, frames, length):
    seen = {}
    monkeypatch.setitem(sys.modules, "gvhmr", fake_gvhmr(length, seen))
    clip = video(frames, width=63, height=47)  # odd sizes: padded by one pixel for H.264
    motion = estimate_gvhmr(clip, fps, fov_degrees=50.0, rest_pelvis=np.zeros(3))
    assert seen["frames"] == frames and seen["size"] == (64, 48)
    kw = seen["kwargs"]
    assert kw["static_camera"] is True and kw["progress"] is False
    assert kw["f_px"] == pytest.approx(63 / (2 * math.tan(math.radians(25))))
    assert motion.frames == frames and motion.fps == fps and motion.model_type == "smplx"
    cam = motion.meta["camera"]
    assert (cam["fx"], cam["cx"], cam["cy"], cam["width"], cam["height"]) == (80.0, 32.0, 24.0, 63, 47)
    # upright, body pose kept, translation as GVHMR's at the same times (x = t), flipped into the world
    np.testing.assert_allclose(motion.root_orient, 0.0, atol=1e-9)
    np.testing.assert_allclose(motion.body_pose, 0.1, atol=1e-9)
    times = np.arange(frames) / fps
    np.testing.assert_allclose(motion.trans[:, 0], np.minimum(times, (length - 1) / 30.0), atol=1e-9)
    np.testing.assert_allclose(motion.trans[:, 1:], [[0.0, -3.0]] * frames, atol=1e-9)
    np.testing.assert_allclose(motion.betas, 0.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nlf_adapter_on_cuda_matches_cpu(single):
    path, _, _ = single
    cpu = estimate_nlf(video(6), path, fps=30.0, rest_pelvis=rest_pelvis())
    gpu = estimate_nlf(video(6), path, fps=30.0, device="cuda", rest_pelvis=rest_pelvis())
    np.testing.assert_allclose(gpu.trans, cpu.trans, atol=1e-6)
    np.testing.assert_allclose(gpu.body_pose, cpu.body_pose, atol=1e-6)
    assert gpu.meta["camera"] == cpu.meta["camera"]
