"""Paste-back (mimo_official.md §1.6, trap 13) on synthetic frames whose result is known."""

import numpy as np
import pytest

from mimo_pack.models.composite import paste as cp
from mimo_pack.models.composite import roi

W, H = 200, 160
A = (20, 100, 30, 110)
C = (120, 200, 30, 110)


def textured(seed: int, n: int = 10) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)


def as_generated(crops: np.ndarray) -> np.ndarray:
    """uint8 crops as the decoder's floats: (v + 0.5) / 255, so that the official
    ``(x * 255).astype(uint8)`` gives v back."""
    return (crops.astype(np.float32) + 0.5) / 255


def test_modes_follow_the_official_order():
    assert cp.MASK_MODES == ("up_down_left_right", "left_right_up", "left_right_down", "up_down_left",
                             "up_down_right", "left_right", "up_down", "left_up", "right_up", "left_down",
                             "right_down", "left", "right", "up", "down", "inner")
    assert cp.border_mode((0, W, 0, H), W, H) == "up_down_left_right"
    assert cp.border_mode((0, W, 0, 50), W, H) == "left_right_up"
    assert cp.border_mode((0, 50, 0, H), W, H) == "up_down_left"
    assert cp.border_mode((10, W, 0, H), W, H) == "up_down_right"
    assert cp.border_mode((0, 50, 0, 50), W, H) == "left_up"
    assert cp.border_mode((10, W, 10, H), W, H) == "right_down"
    assert cp.border_mode(C, W, H) == "right"
    assert cp.border_mode(A, W, H) == "inner"
    assert cp.border_mode((0, 0, 0, 0), W, H) == "left_up"  # the degenerate box of empty motion


def test_feather_masks():
    inner = cp.feather_mask("inner", 80, 60)  # feather max(4, round(0.1 * 60)) = 6 px
    assert inner.shape == (60, 80) and inner.dtype == np.float32
    assert inner[0].max() == 0 and inner[:, 0].max() == 0 and inner[-1].max() == 0 and inner[:, -1].max() == 0
    assert (inner[6:-6, 6:-6] == 1).all()
    np.testing.assert_allclose(inner[30, :7], np.arange(7) / 6)  # linear: d / 6 at distance d
    left = cp.feather_mask("left", 80, 60)
    assert (left[6:-6, :74] == 1).all() and left[30, -1] == 0  # no ramp on the border side
    full = cp.feather_mask("up_down_left_right", 80, 60)
    assert (full == 1).all()
    assert cp.feather_px(20, 20) == 4  # at least 4 px
    assert (cp.feather_mask("inner", 50, 50, feather=0) == 1).all()  # hard edge
    assert len(cp.mask_set(32, 32)) == 16


@pytest.fixture
def scene():
    return textured(1)


@pytest.fixture
def video():
    return textured(2)


def two_clip_plan():
    return roi.plan_from_boxes([A] * 6 + [C] * 4, W, H)  # contexts 0..5 and 2..9, both 80x80 crops


def test_true_crops_give_the_original_inside_the_roi(scene, video):
    plan = two_clip_plan()
    generated = as_generated(roi.crop(plan, video, roi.WHITE).frames)  # working size = padded size: no resize
    out = cp.composite(generated, plan, scene, feather=0)
    x0, x1, y0, y1 = A
    np.testing.assert_array_equal(out[:2, y0:y1, x0:x1], video[:2, y0:y1, x0:x1])  # frames of clip 0 only
    x0, x1, y0, y1 = C
    np.testing.assert_array_equal(out[6:, y0:y1, x0:x1], video[6:, y0:y1, x0:x1])  # frames of clip 1 only
    outside = np.ones((H, W), bool)
    outside[A[2]:A[3], A[0]:A[1]] = False
    np.testing.assert_array_equal(out[0][outside], scene[0][outside])  # the original person never shows
    # overlap frames: both results are the video (inside A: clip 0; inside C: clip 1) blended with the
    # scene the other clip put there; in the middle of C at frame 5 (f = 4/5): 0.2 * scene + 0.8 * video
    f = 0.8
    expect = (scene[5, 50, 150] * (1 - f) + video[5, 50, 150] * np.float32(f)).astype(np.uint8)
    np.testing.assert_array_equal(out[5, 50, 150], expect)


def test_feathered_edges_blend_with_the_scene(scene, video):
    plan = roi.plan_from_boxes([A] * 4, W, H)
    scene, video = scene[:4], video[:4]
    out = cp.composite(as_generated(roi.crop(plan, video, roi.WHITE).frames), plan, scene)
    x0, x1, y0, y1 = A  # inner box: 8 px ramps on all sides (0.1 * 80)
    np.testing.assert_array_equal(out[:, y0 + 8:y1 - 8, x0 + 8:x1 - 8], video[:, y0 + 8:y1 - 8, x0 + 8:x1 - 8])
    np.testing.assert_array_equal(out[:, y0, x0:x1], scene[:, y0, x0:x1])  # alpha 0 on the outermost row
    a = np.float32(4 / 8)  # 4 px in from the left edge, in the middle rows
    expect = (video[:, 70, x0 + 4] * a + scene[:, 70, x0 + 4] * (1 - a)).astype(np.uint8)
    np.testing.assert_array_equal(out[:, 70, x0 + 4], expect)


def test_occluders_come_from_the_video(scene, video):
    plan = two_clip_plan()
    generated = np.full((plan.crops, 80, 80, 3), 0.5, np.float32)  # a grey "person"
    occ = np.zeros((10, H, W), np.uint8)
    occ[:, 60:80, 40:60] = 255  # a hard occluder over clip 0's box
    occ[:, 0:20, 0:20] = 255  # and one over the scene only
    occ[:, 90:100, 150:160] = 128  # a soft one over clip 1's box
    out = cp.composite(generated, plan, scene, video, occ, feather=0)
    np.testing.assert_array_equal(out[:, 60:80, 40:60], video[:, 60:80, 40:60])
    np.testing.assert_array_equal(out[:, 0:20, 0:20], video[:, 0:20, 0:20])
    a = 128 / 255
    expect = (127 * (1 - a) + video[9, 95, 155] * a).astype(np.uint8)  # 0.5 * 255 = 127.5 -> 127
    np.testing.assert_array_equal(out[9, 95, 155], expect)
    with pytest.raises(ValueError, match="original video"):
        cp.composite(generated, plan, scene, None, occ)


def test_overlap_cross_fade_weights():
    plan = two_clip_plan()
    generated = np.empty((14, 80, 80, 3), np.float32)
    generated[:6] = 200.5 / 255  # clip 0 generates 200
    generated[6:] = 100.5 / 255  # clip 1 generates 100
    scene = np.full((1, H, W, 3), 50, np.uint8)  # a still scene of 50
    out = cp.composite(generated, plan, scene, feather=0)
    a, c = out[:, 70, 60, 0], out[:, 70, 160, 0]  # inside box A, inside box C
    # frames 2..5 are repeated at the start of clip 1 with f = 1/5, 2/5, 3/5, 4/5:
    # box A: 200 (clip 0) then clip 1's scene 50 over it: 200 (1 - f) + 50 f;
    # box C: the scene 50 (clip 0) then clip 1's 100: 50 (1 - f) + 100 f
    assert a.tolist() == [200, 200, 170, 140, 110, 80, 50, 50, 50, 50]
    assert c.tolist() == [50, 50, 60, 70, 80, 90, 100, 100, 100, 100]


def test_three_clips_fade_frames_twice():
    plan = roi.plan_from_boxes([A, A, C, C, A, A], W, H)  # contexts [0,1], [0..3], [0..5]
    values = [200] * 2 + [100] * 4 + [10] * 6
    generated = np.stack([np.full((80, 80, 3), (v + 0.5) / 255, np.float32) for v in values])
    out = cp.composite(generated, plan, np.full((1, H, W, 3), 50, np.uint8), feather=0)
    # frame 0 in box A: 200; clip 1 (pos 0, f 0.2) puts the scene 50 there -> 170;
    # clip 2 (pos 0, f 0.2) generates 10 -> 170*0.8 + 10*0.2 = 138
    assert out[0, 70, 60, 0] == 138
    # frame 1 in box A: 200 -> 200*0.6 + 50*0.4 = 140 (clip 1) -> 140*0.6 + 10*0.4 = 88 (clip 2)
    assert out[1, 70, 60, 0] == 88
    # frame 3 in box C: first made by clip 1 (100); clip 2 (pos 3, f 0.8) puts the scene there -> 20 + 40
    assert out[3, 70, 160, 0] == 60


def test_resizes_back_with_bicubic_and_strips_padding(scene, video):
    plan = roi.plan_from_boxes([(121, 200, 31, 111)] * 3, W, H)  # 79 x 80 crop: one padding column
    assert plan.padding(0) == (80, (0, 0, 0, 1))
    generated = np.full((3, 64, 64, 3), 0.9, np.float32)  # at the working size 64: resized to 80, bicubic
    generated[:, :, :32, 1] = 0.0  # left half without green
    out = cp.composite(generated[:, :, :, :], plan, scene[:3], feather=0)
    block = out[:, 31:111, 121:200]
    assert block.shape == (3, 80, 79, 3) and (block[..., 0] == 229).all()  # 0.9 * 255 = 229.5 -> 229
    assert (block[:, :, :38, 1] == 0).all() and (block[:, :, 42:, 1] == 229).all()  # the edge stays at 40 of 80


def test_degenerate_plan_pastes_w_minus_1(scene):
    plan = roi.plan_from_boxes([(0, 0, 0, 0)] * 2, W, H)
    size = plan.padding(0)[0]
    generated = np.full((2, size, size, 3), 30.5 / 255, np.float32)
    scene = scene[:2]
    out = cp.composite(generated, plan, scene, feather=0)
    assert (out[:, :H - 1, :W - 1] == 30).all()
    np.testing.assert_array_equal(out[:, H - 1], scene[:, H - 1])  # last row / column stay scene
    np.testing.assert_array_equal(out[:, :, W - 1], scene[:, :, W - 1])


def test_frame_counts_are_checked(scene):
    plan = two_clip_plan()
    with pytest.raises(ValueError, match="generated: 13 frames, but the ROI plan needs 14"):
        cp.composite(np.zeros((13, 80, 80, 3), np.float32), plan, scene)
    with pytest.raises(ValueError, match="scene: 3 frames"):
        cp.composite(np.zeros((14, 80, 80, 3), np.float32), plan, scene[:3])
