"""Canonical repose: the A-pose drive frame and one MIMO pass on tiny weights."""

import numpy as np
import pytest
import torch

from mimo_pack.models.generate import repose, tiny
from mimo_pack.models.body import demo_body
from mimo_pack.models.generate.loading import MIMOFiles, load_mimo
from mimo_pack.models.render import default_palette


def test_a_pose_lowers_both_arms_symmetrically():
    body = demo_body()
    names = body.joint_names

    def arm_angles(degrees):
        _, joints = body.pose(repose.a_pose(degrees))
        out = []
        for side, sign in (("left", 1), ("right", -1)):
            arm = joints[0, names.index(f"{side}_wrist")] - joints[0, names.index(f"{side}_shoulder")]
            assert sign * arm[0] > 0  # outwards
            out.append(float(torch.rad2deg(torch.atan2(-arm[1], sign * arm[0]))))  # degrees below horizontal
        return out

    rest, posed = arm_angles(0.0), arm_angles(45.0)
    for r, p in zip(rest, posed):
        assert abs(p - r - 45.0) < 1e-3


def test_a_pose_render_is_a_figure_on_black():
    body = demo_body()
    frame = repose.a_pose_render(body, default_palette(body.rest_vertices()), 96, 128)
    assert frame.shape == (1, 128, 96, 3) and frame.dtype == np.uint8
    covered = frame[0].max(-1) > 0
    assert 0.05 < covered.mean() < 0.6
    assert (frame[0][:, :48] > 0).any(-1).sum() == pytest.approx((frame[0][:, 48:] > 0).any(-1).sum(), rel=0.15)


def test_repose_runs_the_pipeline_once(tmp_path):
    paths = tiny.write_tiny_weights(tmp_path)
    models = load_mimo(MIMOFiles(paths["denoising_unet"], paths["reference_unet"], paths["pose_guider"],
                                 paths["motion_module"], vae=paths["vae"], image_encoder=paths["image_encoder"]))
    body = demo_body()
    drive = repose.a_pose_render(body, default_palette(body.rest_vertices()), 64, 64)
    reference = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    out = repose.repose(models, reference, drive, 64, 64, steps=2, seed=1)
    again = repose.repose(models, reference, drive, 64, 64, steps=2, seed=1)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, again)
