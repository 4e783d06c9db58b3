"""The official ROI clip plan (mimo_official.md §1.5, trap 12), checked on hand-made boxes and frames.

Every expected value here is worked out by hand from the official rules; boxes are (x0, x1, y0, y1).
"""

import numpy as np
import pytest

from mimo_pack.models.composite import roi

W, H = 200, 160
A = (20, 100, 30, 110)  # 80x80, area 6400
B = (100, 180, 30, 110)  # union(A, B) = (20, 180, 30, 110): 12800, A covers exactly 0.5 of it
C = (120, 200, 30, 110)  # union(A, C) = (20, 200, 30, 110): 14400, A covers 0.444
E = (0, 0, 0, 0)  # an empty frame


def plan(boxes):
    return roi.plan_from_boxes(list(boxes), W, H)


def test_split_uses_the_previous_union_and_repeats_four_frames():
    p = plan([A] * 6 + [C] * 4)
    # frame 6: the union grows to (20,200,30,110); frames 0..5 cover 64/144 < 0.5 -> split before 6
    assert p.contexts == [[0, 1, 2, 3, 4, 5], [2, 3, 4, 5, 6, 7, 8, 9]]
    assert p.clip_boxes == [A, C]  # the first clip keeps the union *before* frame 6
    assert p.overlaps == [0, 4]
    assert p.crops == 14 and p.frames == 10
    assert p.order[6:8] == [(1, 2), (1, 3)]


def test_overlap_is_capped_by_the_previous_context():
    p = plan([A] * 3 + [C] * 5)
    assert p.contexts == [[0, 1, 2], list(range(8))]  # min(4, 3) = 3 frames repeated
    assert p.overlaps == [0, 3]


def test_exactly_half_does_not_split():
    p = plan([A] * 4 + [B] * 4)  # ratios 6400/12800 = 0.5, not < 0.5
    assert p.contexts == [list(range(8))]
    assert p.clip_boxes == [(20, 180, 30, 110)]


def test_the_last_frame_always_joins_the_open_clip():
    p = plan([A] * 5 + [C])
    assert p.contexts == [list(range(6))]
    assert p.clip_boxes == [(20, 200, 30, 110)]


def test_only_earlier_frames_count():
    # at i=1 the ratios are those of the earlier frames only: [A / union(A, C)] = [0.444] -> split
    # before 1 with box A; the last clip repeats min(4, 1) = 1 frame.
    p = plan([A, C, C])
    assert p.contexts == [[0], [0, 1, 2]]
    assert p.clip_boxes == [A, C]


def test_three_clips_repeat_frames_of_two_clips_back():
    p = plan([A, A, C, C, A, A])
    # i=2: split, clip [0,1] box A; i=4: split, clip range(2-2, 4) box C; last: range(4-4, 6) box A
    assert p.contexts == [[0, 1], [0, 1, 2, 3], [0, 1, 2, 3, 4, 5]]
    assert p.clip_boxes == [A, C, A]
    assert p.overlaps == [0, 2, 4]


def test_empty_frames_drag_the_union_to_the_origin():
    p = plan([A, A, A, E, A, A])
    # i=3: union (0,100,0,110) = 110.0; ratios 64/110 = 0.58 -> no split
    # i=4: ratios [0.58, 0.58, 0.58, 0.0] -> split before 4 with the previous union
    assert p.contexts == [[0, 1, 2, 3], [0, 1, 2, 3, 4, 5]]
    assert p.clip_boxes == [(0, 100, 0, 110), A]


def test_all_empty_is_one_degenerate_clip_cropped_to_w_minus_1():
    p = plan([E] * 3)
    assert p.contexts == [[0, 1, 2]] and p.clip_boxes == [E]  # area_max 0 -> ratios 0, sum 0: no split
    assert p.crop_box(0) == (0, W - 1, 0, H - 1)  # official fallback [0:H-1, 0:W-1]
    assert p.crop_size(0) == (H - 1, W - 1)
    assert p.padding(0) == (208, (24, 25, 4, 5))  # ceil16(199) = 208


def test_single_frame():
    assert plan([A]).contexts == [[0]]


# ----------------------------------------------------------------------------- per-frame boxes

def body(x0, x1, y0, y1, colour=(200, 120, 40)):
    f = np.zeros((H, W, 3), np.uint8)
    f[y0:y1, x0:x1] = colour
    return f


def test_frame_box_by_hand():
    # drawn x 50..70, y 40..100. OpenCV anchors the 2x2 opening at (1,1): the clean mask moves one
    # pixel right and down -> x 51..71, y 41..101 (w 20, h 60).
    # +int(0.1*60)=6 up/down, +int(0.05*20)=1 left/right -> x 50..72, y 35..107 (22 x 72, even);
    # side ceil16(72) = 80: top 4 bottom 4, left 29 right 29 -> x 21..101, y 31..111.
    assert roi.frame_box(body(50, 70, 40, 100)) == (21, 101, 31, 111)


def test_odd_sizes_are_made_even():
    # drawn 21 x 61 -> clean x 51..72, y 41..102; +1 / +6 -> x 50..73 (23, odd -> 24), y 35..108 (73 -> 74)
    # side 80: top 3 bottom 3, left 28 right 28 -> x 22..102, y 32..112
    assert roi.frame_box(body(50, 71, 40, 101)) == (22, 102, 32, 112)


def test_boxes_are_clamped_at_the_border():
    # drawn x 5..25 -> clean 6..26 -> 5..27 (22 wide), left pad 29 clamps to 0 -> x 0..56; y as above
    assert roi.frame_box(body(5, 25, 40, 100)) == (0, 56, 31, 111)
    # within 2 px of the border the 5x5 closing fills up to the edge (OpenCV's erosion treats the
    # outside as set): drawn x 2..22 -> clean 0..23 -> 0..24 (int(0.05*23) = 1), left 28 right 28
    assert roi.bounding_rect(roi.sdc_mask(body(2, 22, 40, 100)))[::2] == (0, 23)
    assert roi.frame_box(body(2, 22, 40, 100)) == (0, 52, 31, 111)


def test_threshold_is_on_rgb_gray_above_10():
    # RGB->gray: 0.299 R + 0.587 G + 0.114 B. Red 40 -> 12 (kept); blue 40 -> 5 (dropped, would be 12 as BGR)
    assert roi.frame_box(body(50, 70, 40, 100, colour=(40, 0, 0))) == (21, 101, 31, 111)
    assert roi.frame_box(body(50, 70, 40, 100, colour=(0, 0, 40))) == E
    assert roi.frame_box(body(50, 70, 40, 100, colour=(10, 10, 10))) == E  # gray 10 is not > 10


def test_clean_mask_removes_specks_and_closes_gaps():
    f = body(50, 70, 40, 100)
    f[5, 180] = 255  # a single noisy pixel: removed by the 2x2 opening
    f[70:73, 50:70] = 0  # a 3-pixel gap across the body: closed by the 5x5 closing
    mask = roi.sdc_mask(f)
    assert roi.bounding_rect(mask) == (51, 41, 20, 60)
    assert mask[72, 60] == 255


def test_plan_clips_on_frames_and_crops():
    frames = np.stack([body(50, 70, 40, 100)] * 6 + [body(150, 170, 40, 100)] * 4)
    p = roi.plan_clips(frames)
    a = (21, 101, 31, 111)
    c = (121, 200, 31, 111)  # x 150..170 -> 151..171 -> 150..172, +29 +29 -> 121..201 clamped to 200
    assert p.frame_boxes[0] == a and p.frame_boxes[-1] == c
    assert p.contexts == [list(range(6)), list(range(2, 10))] and p.clip_boxes == [a, c]

    crops = roi.crop(p, frames, roi.BLACK)  # no resize: clip 0 is 80x80, clip 1 79 wide -> 80x80 too
    assert crops.frames.shape == (14, 80, 80, 3)
    assert crops.pads[0] == (80, (0, 0, 0, 0)) and crops.pads[6] == (80, (0, 0, 0, 1))
    assert (crops.frames[6][:, 79] == 0).all()  # the black padding column of clip 1
    np.testing.assert_array_equal(crops.frames[0], frames[0][31:111, 21:101])

    white = roi.crop(p, np.zeros((1, H, W, 3), np.uint8), roi.WHITE, 64, 64)  # one still for all frames
    assert white.frames.shape == (14, 64, 64, 3)
    assert white.frames[6, :, -1].min() > 200  # white padding survives the LANCZOS resize


def test_crop_checks_sizes():
    p = plan([A, A])
    with pytest.raises(ValueError, match="motion frames"):
        roi.crop(p, np.zeros((2, 10, 10, 3), np.uint8), 0, 64, 64)
    with pytest.raises(ValueError, match="3 frames given"):
        roi.crop(p, np.zeros((3, H, W, 3), np.uint8), 0, 64, 64)
    with pytest.raises(ValueError, match="uint8"):
        roi.plan_clips(np.zeros((2, H, W, 3), np.float32))


def test_plan_round_trips_through_a_dict():
    p = plan([A] * 6 + [C] * 4)
    q = roi.RoiPlan.from_dict(p.to_dict())
    assert q.contexts == p.contexts and q.clip_boxes == p.clip_boxes and q.frame_boxes == p.frame_boxes
