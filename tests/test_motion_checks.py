"""The motion refusals shared by every loader (models/motion/checks.py): NaN/Inf naming the frames,
implausible frame rates naming the value, betas of a shape no body has naming file/expected/found."""

import numpy as np
import pytest

from mimo_pack.devtools.demo_assets import MIXAMO_BVH, write_amass_walk
from mimo_pack.models.errors import MIMOInputError
from mimo_pack.models.motion import Motion, load_amass, load_bvh, parse_bvh
from mimo_pack.models.image_ops import frame_ranges
from mimo_pack.models.motion.checks import MotionError, check_fps
from mimo_pack.models.motion.from_video import PersonEstimate, motion_from_estimates
from mimo_pack.models.motion.skeletal import SkeletonAnimation


def amass_file(tmp_path, name="walk_poses.npz", **change):
    path = write_amass_walk(tmp_path / name, frames=40)
    data = dict(np.load(path))
    data.update(change)
    np.savez(path, **data)
    return path


def test_frame_ranges_are_compact():
    assert frame_ranges([5, 6, 7, 9, 11, 12]) == "5-7, 9, 11-12"
    assert frame_ranges(range(0, 40, 2)).endswith("14 and 12 more ranges")


def test_amass_nan_frames_are_named(tmp_path):
    poses = np.load(write_amass_walk(tmp_path / "x_poses.npz", frames=40))["poses"]
    poses[5:15, 10] = np.nan
    path = amass_file(tmp_path, "nan_poses.npz", poses=poses)
    with pytest.raises(MotionError, match=r"nan_poses\.npz: frames 5-14 \(of 40") as e:
        load_amass(path)
    assert "NaN or infinite" in str(e.value) and "re-export" in str(e.value)
    trans = np.load(path)["trans"]
    trans[39] = np.inf
    poses[:] = 0
    with pytest.raises(MotionError, match=r"frames 39 \(of 40.*\(in trans\)"):
        load_amass(amass_file(tmp_path, "inf_poses.npz", poses=poses, trans=trans))


def test_amass_betas_of_a_wrong_shape_name_file_expected_found(tmp_path):
    for betas, found in ((np.zeros((10, 3)), r"\(10, 3\)"), (np.zeros(0), r"\(0,\)"), (np.zeros((2, 2, 4)), r"\(2, 2, 4\)"),
                         (np.zeros(1000), r"\(1000,\)")):
        with pytest.raises(MotionError, match=rf"bad_poses\.npz: 'betas' has shape {found}; expected one shape "
                                              r"vector of 1 to 400 values"):
            load_amass(amass_file(tmp_path, "bad_poses.npz", betas=betas))
    ok = load_amass(amass_file(tmp_path, "rows_poses.npz", betas=np.ones((40, 16))))  # one row per frame: first
    assert ok.betas.shape == (16,)
    with pytest.raises(MotionError, match="'betas' holds NaN"):
        load_amass(amass_file(tmp_path, "nanb_poses.npz", betas=np.full(16, np.nan)))


def test_implausible_frame_rates_are_refused_with_the_value(tmp_path):
    with pytest.raises(MotionError, match=r"fast_poses\.npz: a frame rate of 1e\+06 fps"):
        load_amass(amass_file(tmp_path, "fast_poses.npz", mocap_framerate=np.array(1e6)))
    fast = tmp_path / "fast.bvh"
    fast.write_text(_with_frame_time(MIXAMO_BVH, "1e-9"))
    with pytest.raises(MotionError, match=r"fast\.bvh: a frame rate of 1e\+09 fps \(one frame every 1e-09 s\) is "
                                          r"implausible; expected 1 to 1000 fps.*Frame Time") as e:
        load_bvh(fast)
    assert isinstance(e.value, MIMOInputError)
    slow = _with_frame_time(MIXAMO_BVH, "2.5")  # 0.4 fps
    with pytest.raises(MotionError, match="0.4 fps"):
        parse_bvh(slow, source="slow.bvh")
    assert check_fps(30, "x") == 30.0 and check_fps(1000, "x") == 1000.0
    for bad in (float("nan"), 0.5, 1001, float("inf")):
        with pytest.raises(MotionError):
            check_fps(bad, "x")


def _with_frame_time(bvh: str, value: str) -> str:
    lines = bvh.splitlines()
    i = next(k for k, line in enumerate(lines) if line.strip().startswith("Frame Time:"))
    lines[i] = f"Frame Time: {value}"
    return "\n".join(lines) + "\n"


def test_bvh_and_fbx_animations_with_nan_are_refused_naming_frames(tmp_path):
    lines = MIXAMO_BVH.splitlines()
    first = next(k for k, line in enumerate(lines) if line.strip().startswith("Frame Time:")) + 1
    values = lines[first + 2].split()
    values[4] = "nan"
    lines[first + 2] = " ".join(values)
    path = tmp_path / "nan.bvh"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MotionError, match=r"nan\.bvh: frames 2 \(of \d+"):
        load_bvh(path)
    # FBX and other rigs arrive as a SkeletonAnimation: the same check
    f, j = 6, 2
    rotations = np.tile(np.eye(3), (f, j, 1, 1))
    rotations[3, 1, 0, 0] = np.inf
    with pytest.raises(MotionError, match=r"rig\.fbx: frames 3 \(of 6"):
        SkeletonAnimation(("Hips", "Spine"), [-1, 0], np.tile(np.eye(3), (j, 1, 1)), np.zeros((j, 3)), rotations,
                          np.zeros((f, j, 3)), 30.0, source="rig.fbx")


def test_motion_from_video_with_nan_estimates_is_refused():
    good = PersonEstimate(pose=np.zeros(72), trans=np.array([0, 0, 3.0]))
    bad = PersonEstimate(pose=np.full(72, np.nan), trans=np.array([0, 0, 3.0]))
    camera = {"fx": 500.0, "fy": 500.0, "cx": 32.0, "cy": 32.0, "width": 64, "height": 64}
    with pytest.raises(MotionError, match=r"nlf:x: frames 2-3 \(of 5"):
        motion_from_estimates([good, good, bad, bad, good], 30.0, camera, source="nlf:x")


def test_motion_itself_refuses():
    f = 20
    pose = np.zeros((f, 21, 3))
    pose[7] = np.nan
    with pytest.raises(MotionError, match=r"clip: frames 7 \(of 20"):
        Motion(np.zeros((f, 3)), pose, np.zeros((f, 3)), 30.0, source="clip")
    with pytest.raises(MotionError, match="2000 fps"):
        Motion(np.zeros((f, 3)), np.zeros((f, 21, 3)), np.zeros((f, 3)), 2000.0, source="clip")
    m = Motion(np.zeros((f, 3)), np.zeros((f, 21, 3)), np.zeros((f, 3)), 120.0, source="clip")
    assert m.resample(30).frames == 5  # resampled and trimmed clips keep passing the checks
