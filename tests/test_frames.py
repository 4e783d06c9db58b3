"""Frames and masks checked and converted in one place (models/image_ops.py)."""

import numpy as np
import pytest
import torch

from mimo_pack.models import image_ops


def test_frame_shape_and_its_errors():
    assert image_ops.frame_shape(torch.zeros(5, 8, 9, 3)) == (5, 8, 9)
    assert image_ops.frame_shape(np.zeros((2, 8, 9, 4), np.uint8)) == (2, 8, 9)
    assert image_ops.frame_shape(torch.zeros(8, 9, 3), single_ok=True) == (1, 8, 9)
    for bad in (torch.zeros(8, 9, 3), torch.zeros(4, 4), torch.zeros(2, 8, 9, 2), [1, 2, 3]):
        with pytest.raises(ValueError, match=r"The clip must be frames \[F,H,W,3\] \(an IMAGE batch \[frames, height"):
            image_ops.frame_shape(bad, "clip")
    with pytest.raises(ValueError, match="has no frames"):
        image_ops.frame_shape(torch.zeros(0, 8, 9, 3))
    with pytest.raises(ValueError, match="2 frames of 9x4 pixels; it needs at least one frame of 8x8"):
        image_ops.frame_shape(torch.zeros(2, 4, 9, 3), min_side=8)


def test_as_frames_converts_once_and_copies_only_when_needed():
    x = torch.rand(3, 4, 5, 3)
    assert image_ops.as_frames(x).data_ptr() == x.data_ptr()  # a float32 CPU IMAGE: no copy
    rgba = torch.rand(3, 4, 5, 4)
    out = image_ops.as_frames(rgba)
    assert out.shape == (3, 4, 5, 3) and torch.equal(out, rgba[..., :3])
    u8 = torch.randint(0, 256, (2, 4, 5, 3), dtype=torch.uint8)
    assert torch.equal(image_ops.as_frames(u8), u8.float() / 255)
    assert image_ops.as_frames(np.zeros((4, 5, 3)), single_ok=True).shape == (1, 4, 5, 3)
    assert image_ops.as_frames(x.double()).dtype == torch.float32


def test_uint8_round_trip_is_exact_and_chunked():
    u8 = np.random.default_rng(0).integers(0, 256, (37, 6, 7, 3), dtype=np.uint8)
    images = image_ops.to_image(u8)
    assert images.dtype == torch.float32 and torch.equal(images, torch.from_numpy(u8).float() / 255)
    back = image_ops.uint8_frames(torch.cat([images, torch.ones(37, 6, 7, 1)], -1))  # alpha dropped
    np.testing.assert_array_equal(back, u8)  # 37 frames: across several chunks
    np.testing.assert_array_equal(image_ops.uint8_frames(images, 5, 20), u8[5:20])
    np.testing.assert_array_equal(image_ops.uint8_frames(torch.from_numpy(u8), 3, 4), u8[3:4])  # uint8 as is
    np.testing.assert_array_equal(image_ops.uint8_frame(images, 9), u8[9])
    np.testing.assert_array_equal(image_ops.uint8_frame(images[:1], 9), u8[0])  # a still: its frame
    masks = torch.tensor([[[0.0, 0.5], [1.0, 0.2]]])
    np.testing.assert_array_equal(image_ops.uint8_frames(masks), [[[0, 128], [255, 51]]])
    assert image_ops.uint8_frames(masks[0]).shape == (1, 2, 2)  # one mask = one frame
    with pytest.raises(TypeError, match="uint8"):
        image_ops.to_image(np.zeros(3, np.float32))


def test_masks_at_the_video_size():
    video = torch.zeros(4, 8, 12, 3)
    one = torch.zeros(4, 6)
    one[:, :3] = 1
    masks = image_ops.as_masks(one, video)
    assert masks.shape == (4, 8, 12) and torch.equal(masks[0], masks[3])  # one mask for every frame, resized
    assert masks[0, :, :5].min() == 1 and masks[0, :, 7:].max() == 0
    image = torch.rand(4, 8, 12, 3) * 3
    maps = image_ops.as_maps(image, video, "depth")  # an IMAGE as maps: first channel, values kept
    assert torch.equal(maps, image[..., 0]) and maps.max() > 1
    assert image_ops.as_masks(image, video).max() <= 1  # masks are clamped
    assert image_ops.as_maps(image, (4, 8, 12)).shape == (4, 8, 12)  # or the video's (F, H, W)
    with pytest.raises(ValueError, match="The human mask has 3 frames but the video has 4: give one per frame"):
        image_ops.as_masks(torch.zeros(3, 8, 12), video, "human mask")
    with pytest.raises(ValueError, match=r"The box mask must be \[height, width\] or \[frames, height, width\]"):
        image_ops.mask_stack(torch.zeros(8), (8, 12), "box mask")
    batch = torch.stack([torch.zeros(8, 12), torch.ones(8, 12)])
    assert image_ops.one_mask(batch, (4, 6), 1).shape == (4, 6) and image_ops.one_mask(batch, (8, 12), 1).min() == 1
    assert image_ops.one_mask(batch, (8, 12), 7).max() == 0  # no such frame in the batch: its first


def test_node_input_checks_name_the_input():
    image_ops.check_count(torch.zeros(1, 4, 4, 3), 5, "scene")  # a still is fine
    with pytest.raises(ValueError, match="'video' has 1 frames but 5 are needed: connect frames of the same clip"):
        image_ops.check_count(torch.zeros(1, 4, 4, 3), 5, "video", single_ok=False)
    image_ops.check_size(torch.zeros(2, 4, 6), 6, 4, "mask", "the motion")
    with pytest.raises(ValueError, match="'scene' is 6x4 but the motion is 8x4"):
        image_ops.check_size(torch.zeros(2, 4, 6, 3), 8, 4, "scene", "the motion")


def test_grey_image():
    maps = torch.tensor([[[0.0, 2.0], [0.5, -1.0]]])
    grey = image_ops.grey_image(maps)
    assert grey.shape == (1, 2, 2, 3) and grey.is_contiguous()
    assert torch.equal(grey[..., 1], torch.tensor([[[0.0, 1.0], [0.5, 0.0]]]))
