"""The scene layer: a static textured scene with a moving shape, where the true scene is known."""

import numpy as np
import pytest
import torch
from mimo_pack.models.decompose import inpaint

H, W, N = 72, 96, 16


def moving_shape_clip(n: int = N, seed: int = 0):
    """frames [n,H,W,3], masks [n,H,W] (the shape), the true background [H,W,3]."""
    rng = np.random.default_rng(seed)
    scene = torch.from_numpy(rng.random((H, W, 3)).astype(np.float32))
    frames = scene.expand(n, H, W, 3).clone()
    masks = torch.zeros(n, H, W)
    for t in range(n):
        x = 4 + 5 * t
        masks[t, 20:60, x:x + 14] = 1
        masks[t, 12:20, x + 4:x + 10] = 1  # a head
        frames[t][masks[t] > 0] = torch.tensor([0.9, 0.1, 0.1])
    return frames, masks, scene


def test_median_scene_is_exact_where_the_background_was_seen():
    frames, masks, scene = moving_shape_clip()
    out = inpaint.inpaint_scene(frames, masks, method="median")
    assert out.shape == (N, H, W, 3) and out.dtype == torch.float32
    assert torch.equal(out, scene.expand(N, H, W, 3))  # bit-exact, every frame


def test_median_keeps_unmasked_pixels_and_handles_strips(monkeypatch):
    frames, masks, scene = moving_shape_clip()
    frames = frames + 0.01 * torch.rand(N, H, W, 3, generator=torch.Generator().manual_seed(1))  # sensor noise
    whole = inpaint.inpaint_scene(frames, masks, method="median", dilate=2)
    region = inpaint.dilate_masks(masks > 0.5, 2)
    assert torch.equal(whole[~region], frames[~region])  # outside the (dilated) mask: the frame itself
    assert (whole[region] - scene.expand(N, H, W, 3)[region]).abs().max() < 0.011
    monkeypatch.setattr(inpaint, "_strip_rows", lambda n, w: 5)  # many strips: the same answer
    assert torch.equal(inpaint.inpaint_scene(frames, masks, method="median", dilate=2), whole)


def test_sliding_window_median_is_exact_and_follows_slow_changes():
    frames, masks, scene = moving_shape_clip(n=24)
    out = inpaint.inpaint_scene(frames, masks, method="median", window=8)
    assert torch.equal(out, scene.expand(24, H, W, 3))
    # the light fades over the clip: a window follows it, the whole-clip median cannot
    gain = torch.linspace(1.0, 0.6, 24).view(24, 1, 1, 1)
    lit = torch.where(masks[..., None] > 0, frames, frames * gain)
    truth = scene * gain
    err_window = (inpaint.inpaint_scene(lit, masks, method="median", window=6) - truth).abs().max()
    err_whole = (inpaint.inpaint_scene(lit, masks, method="median") - truth).abs().max()
    assert err_window < 0.5 * err_whole


def test_pixels_never_seen_are_filled_spatially():
    frames, masks, scene = moving_shape_clip()
    flat = torch.tensor([0.3, 0.5, 0.7])
    frames[:, 30:50, 40:60] = flat  # a flat area of the scene ...
    masks[:, 36:44, 46:54] = 1  # ... with a hole covered in every frame
    frames[:, 36:44, 46:54] = torch.tensor([0.9, 0.1, 0.1])
    out = inpaint.inpaint_scene(frames, masks, method="median", dilate=1)
    assert torch.isfinite(out).all()
    assert (out[:, 36:44, 46:54] - flat).abs().max() < 4 / 255  # Telea from a flat surround (a few levels off)
    seen = torch.ones(H, W, dtype=torch.bool)
    seen[35:45, 45:55] = False
    expected = scene.clone()
    expected[30:50, 40:60] = flat
    assert torch.equal(out[:, seen], expected[seen].expand(N, -1, 3))


def test_masks_are_broadcast_resized_and_checked():
    frames, masks, scene = moving_shape_clip()
    one = torch.zeros(H, W)
    one[:8, :8] = 1
    out = inpaint.inpaint_scene(frames, one, method="median")  # one mask for every frame
    assert out.shape == frames.shape
    half = torch.nn.functional.interpolate(masks[:, None], size=(H // 2, W // 2), mode="nearest")[:, 0]
    assert inpaint.inpaint_scene(frames, half, method="median").shape == frames.shape
    assert torch.equal(inpaint.inpaint_scene(frames, torch.zeros(N, H, W)), frames)  # nothing to remove
    with pytest.raises(ValueError, match="has 3 frames but the video has 16"):
        inpaint.inpaint_scene(frames, masks[:3])
    with pytest.raises(ValueError, match="covers every pixel"):
        inpaint.inpaint_scene(frames, torch.ones(N, H, W), method="median")
    with pytest.raises(ValueError, match="Unknown inpaint method"):
        inpaint.inpaint_scene(frames, masks, method="lama")
    with pytest.raises(ValueError, match=r"\[frames, height, width, 3\]"):
        inpaint.inpaint_scene(frames[..., 0], masks)


def test_dilation_is_the_official_cross():
    m = torch.zeros(1, 11, 11, dtype=torch.bool)
    m[0, 5, 5] = True
    d = inpaint.dilate_masks(m, 2)[0]
    yy, xx = torch.meshgrid(torch.arange(11), torch.arange(11), indexing="ij")
    assert torch.equal(d, (yy - 5).abs() + (xx - 5).abs() <= 2)  # a diamond, as scipy's binary_dilation


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_propainter_needs_cuda_and_auto_falls_back():
    frames, masks, scene = moving_shape_clip()
    with pytest.raises(RuntimeError, match="CUDA"):
        inpaint.inpaint_scene(frames, masks, method="propainter")
    assert torch.equal(inpaint.inpaint_scene(frames, masks, method="auto"), scene.expand(N, H, W, 3))


def test_propainter_weight_files_are_found(tmp_path):
    for name in ("raft_things-0000-d74fed4b.pth", "propainter_rfc-0000-a865ddc0.pth", "propainter-0000-5f3cc1e7.pth",
                 "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    w = inpaint.ProPainterWeights.find(str(tmp_path))
    assert w.raft.endswith("raft_things-0000-d74fed4b.pth")
    assert w.flow_completion.endswith("propainter_rfc-0000-a865ddc0.pth")
    assert w.propainter.endswith("propainter-0000-5f3cc1e7.pth")
    assert inpaint.ProPainterWeights.find(str(tmp_path / "missing")) == inpaint.ProPainterWeights()


def test_propainter_call_path_with_stand_in_networks():
    """Only where the optional 'propainter' package is installed: the streaming call on the CPU with
    a zero-flow RAFT stand-in (random RAFT gives NaN flows) and random ProPainter networks."""
    pytest.importorskip("propainter")
    from pytorchcv.models.propainter import propainter
    from pytorchcv.models.propainter_rfc import propainter_rfc

    class ZeroFlowRAFT(torch.nn.Module):
        iters = 20

        def forward(self, image1, image2, flow_init=None):
            z = image1.new_zeros(image1.shape[0], 2, *image1.shape[2:])
            return z, z

    frames, masks, _ = moving_shape_clip(n=6)
    out = inpaint.propainter_inpaint(frames, masks > 0.5, dilate=2, device="cpu", short_side=64,
                                     raft_model=ZeroFlowRAFT(),
                                     flow_model=propainter_rfc().eval(), pp_model=propainter().eval())
    region = inpaint.dilate_masks(masks > 0.5, 2)
    assert out.shape == frames.shape and torch.isfinite(out).all()
    assert torch.equal(out[~region], frames[~region])
