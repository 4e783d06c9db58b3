"""Reference preparation (official §1.3) and the shared image helpers."""

import numpy as np
import pytest
import torch
from PIL import Image

from mimo_pack.models import image_ops
from mimo_pack.models.generate import reference_prep as rp



def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _official_composite(color, mask_u8):
    # process_seg of the official run_edit.py, written out
    alpha = mask_u8 / 255
    bk = np.ones_like(color) * 255
    return (color * alpha[:, :, np.newaxis] + bk * (1 - alpha[:, :, np.newaxis])).astype(np.uint8)


def test_crop_and_pad_by_hand():
    img = _image(40, 30)
    alpha = np.zeros((40, 30), np.float32)
    alpha[10:30, 5:15] = 1.0  # bbox x=5, y=10, w=10, h=20 -> grow int(0.05*20)=1 -> rows 9..30
    out = rp.prepare_reference(img, alpha)
    # crop 22 x 10 -> side 32, top 5, bottom 5, left 11, right 11
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    expected = np.full((32, 32, 3), 255, np.uint8)
    crop = img[9:31, 5:15].copy()
    crop[0] = 255  # rows 9 and 30 are outside the matte: composited to white
    crop[-1] = 255
    expected[5:27, 11:21] = crop
    np.testing.assert_array_equal(out, expected)


def test_vertical_growth_is_clamped_and_horizontal_untouched():
    img = _image(50, 60, 1)
    alpha = np.zeros((50, 60), np.uint8)
    alpha[0:40, 20:30] = 255  # h=40 -> grow 2; top clamps at 0, bottom to row 42
    assert rp.crop_box(alpha > 0) == (0, 42, 20, 30)
    out = rp.prepare_reference(img, alpha)
    # crop 42 x 10 -> side 48: top 3, bottom 3, left 19, right 19
    assert out.shape == (48, 48, 3)
    np.testing.assert_array_equal(out[3:43, 19:29], img[0:40, 20:30])
    assert (out[43:45, 19:29] == 255).all()  # grown rows below the matte are white
    assert (out[:3] == 255).all() and (out[:, :19] == 255).all() and (out[:, 29:] == 255).all()


def test_small_bbox_does_not_grow():
    alpha = np.zeros((30, 30), np.float32)
    alpha[5:24, 3:7] = 1  # h = 19 -> int(0.95) = 0
    assert rp.crop_box(alpha > 0) == (5, 24, 3, 7)


def test_composite_matches_official_float64_for_every_value():
    color = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 256, axis=1)[:, :, None].repeat(3, axis=2)
    mask = np.repeat(np.arange(256, dtype=np.uint8)[None, :], 256, axis=0)
    want = _official_composite(color, mask)
    got = rp._composite_white(color, rp._alpha_bytes(mask)[0])
    np.testing.assert_array_equal(got, want)
    # a ComfyUI mask is float32 A/255: it must give the same bytes (snapped to the grid)
    got32 = rp._composite_white(color, rp._alpha_bytes((mask / 255).astype(np.float32))[0])
    np.testing.assert_array_equal(got32, want)


def test_soft_alpha_end_to_end():
    img = _image(64, 48, 2)
    mask = np.zeros((64, 48), np.uint8)
    mask[8:56, 10:40] = np.random.default_rng(3).integers(1, 256, (48, 30), dtype=np.uint8)
    out = rp.prepare_reference(img, (mask / 255).astype(np.float32))
    comp = _official_composite(img, mask)[6:58, 10:40]  # h=48 -> grow 2
    side = 64
    top, left = (side - 52) // 2, (side - 30) // 2
    assert out.shape == (side, side, 3)
    np.testing.assert_array_equal(out[top:top + 52, left:left + 30], comp)


def test_no_mask_pads_only():
    img = _image(20, 37, 4)
    out = rp.prepare_reference(img, None)
    assert out.shape == (48, 48, 3)  # 37 -> 48
    top, left = (48 - 20) // 2, (48 - 37) // 2
    np.testing.assert_array_equal(out[top:top + 20, left:left + 37], img)
    assert out.sum(dtype=np.int64) - img.sum(dtype=np.int64) == 255 * 3 * (48 * 48 - 20 * 37)


def test_multiple_of_16_not_padded_further():
    img = _image(32, 16, 5)
    out, pads = rp.pad_square(img)
    assert out.shape == (32, 32, 3) and pads == (0, 0, 8, 8)


def test_empty_mask_raises():
    with pytest.raises(ValueError, match="empty"):
        rp.prepare_reference(_image(16, 16), np.zeros((16, 16), np.float32))


def test_mask_size_mismatch_raises():
    with pytest.raises(ValueError, match="mask size"):
        rp.prepare_reference(_image(16, 16), np.ones((8, 16), np.float32))


def test_clip_pixel_values_formula():
    ref = _image(48, 48, 6)
    got = rp.clip_pixel_values(ref)
    assert got.shape == (1, 3, 224, 224) and got.dtype == torch.float32
    pil = np.asarray(Image.fromarray(ref).resize((224, 224), Image.BICUBIC), np.float32) / 255
    want = (pil - np.array(rp.CLIP_MEAN, np.float32)) / np.array(rp.CLIP_STD, np.float32)
    torch.testing.assert_close(got[0], torch.from_numpy(want).permute(2, 0, 1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", ["case_a", "case_b"])
def test_clip_pixel_values_parity(case, parity_case):
    path = parity_case(case) / "case.safetensors"
    from safetensors.torch import load_file

    d = load_file(str(path))
    ref = image_ops.to_uint8(d["ref_image"][0])
    err = (rp.clip_pixel_values(ref) - d["clip_pixel_values"]).abs().max().item()
    assert err <= 1e-6, err


def test_to_uint8_is_exact_for_byte_images():
    x = torch.arange(256, dtype=torch.float32).reshape(1, 16, 16, 1).expand(2, 16, 16, 3) / 255
    np.testing.assert_array_equal(image_ops.to_uint8(x)[0, :, :, 0].ravel(), np.arange(256))
    assert image_ops.to_uint8(torch.tensor([-0.2, 0.5 / 255, 1.7])).tolist() == [0, 0, 255]


def test_resize_frames():
    frames = np.stack([_image(20, 30, 7), _image(20, 30, 8)])
    assert image_ops.resize_frames(frames, 30, 20) is frames
    out = image_ops.resize_frames(frames, 16, 24, "lanczos")
    assert out.shape == (2, 24, 16, 3)
    np.testing.assert_array_equal(out[1], np.asarray(Image.fromarray(frames[1]).resize((16, 24), Image.LANCZOS)))
    bic = image_ops.resize_frames(frames, 16, 24, "bicubic")
    np.testing.assert_array_equal(bic[0], np.asarray(Image.fromarray(frames[0]).resize((16, 24), Image.BICUBIC)))
    with pytest.raises(ValueError):
        image_ops.resize_frames(frames, 16, 24, "nearest")


def test_unit_and_signed_tensors():
    frames = np.stack([_image(4, 5, 9)])
    unit = image_ops.to_unit_tensor(frames)
    assert unit.shape == (1, 3, 4, 5) and unit.dtype == torch.float32
    assert torch.equal(unit[0, 1], torch.from_numpy(frames[0, :, :, 1].astype(np.float32) / 255))
    assert torch.equal(image_ops.to_signed_tensor(frames), unit * 2 - 1)


def test_a_character_below_the_minimum_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"the reference image is 1x1 pixels.*at least 32 pixels on the longer side"):
        rp.prepare_reference(_image(1, 1), None, min_side=rp.MIN_CHARACTER_SIDE)
    alpha = np.zeros((64, 64), np.float32)
    alpha[10:38, 20:40] = 1.0  # box 20x30 (28 grown by 5%): too small
    with pytest.raises(ValueError, match=r"character's box \(cropped to its mask\) is 20x30 pixels"):
        rp.prepare_reference(_image(64, 64), alpha, min_side=32)
    alpha[:] = 0
    alpha[10:60, 30:33] = 1.0  # 3 wide: a line, not a character
    with pytest.raises(ValueError, match=r"is 3x54 pixels.*4 on the shorter"):
        rp.prepare_reference(_image(64, 64), alpha, min_side=32)
    alpha[10:50, 30:34] = 1.0  # 4x52: enough
    assert rp.prepare_reference(_image(64, 64), alpha, min_side=32).shape == (64, 64, 3)
