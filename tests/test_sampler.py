"""The denoising loop: context windows, averaging, guidance and reference tokens."""

import pytest
import torch

from mimo_pack.models.generate import sampler as S
from mimo_pack.models.generate.attention import ReferenceContext
from mimo_pack.models.generate.tiny import tiny_networks


def test_windows_match_the_official_uniform_schedule():
    assert S.context_windows(12) == [list(range(12))]
    w = S.context_windows(64)
    assert w == [list(range(0, 24)), list(range(20, 44)), list(range(40, 64)), [60, 61, 62, 63] + list(range(20))]
    w = S.context_windows(150)
    assert len(w) == 8 and w[-1] == list(range(140, 150)) + list(range(14))
    for n in (25, 28, 47, 100):
        covered = sorted({i for win in S.context_windows(n) for i in win})
        assert covered == list(range(n)) and all(len(set(x)) == len(x) == 24 for x in S.context_windows(n))
    with pytest.raises(ValueError, match="overlap"):
        S.context_windows(30, 8, 8)


class ConstantUNet(torch.nn.Module):
    """Predicts v = 1 everywhere (records the calls)."""

    def __init__(self):
        super().__init__()
        self.conv_in = torch.nn.Conv2d(8, 4, 1)
        self.calls = []

    @property
    def dtype(self):
        return torch.float32

    def forward(self, x, t, context, frames, pose_features, reference):
        self.calls.append((x.shape[0], frames, reference.plain_rows, context.shape[0]))
        return torch.ones(x.shape[0], 4, *x.shape[2:])


@pytest.mark.parametrize("cfg", [1.0, 3.5])
def test_overlapping_predictions_are_averaged_with_and_without_guidance(cfg):
    frames, h, w = 30, 2, 2
    unet = ConstantUNet()
    noise = torch.randn(frames, 4, h, w)
    out = S.denoise(unet, {}, torch.ones(1, 8), torch.zeros(frames, 4, h, w), torch.zeros(1, 4, h, w), noise,
                    steps=1, cfg=cfg, context_frames=8, overlap=4)
    sched = S.make_scheduler()
    sched.set_timesteps(1)
    expected = sched.step(torch.ones_like(noise), sched.timesteps[0], noise).prev_sample
    # A summing (official no-guidance) loop would give 2 in the overlapped frames instead of 1.
    torch.testing.assert_close(out, expected)
    guided = cfg > 1
    assert all(c == ((16 if guided else 8), 8, 8 if guided else 0, 2 if guided else 1) for c in unet.calls)


def test_trailing_zero_snr_v_prediction_schedule():
    sched = S.make_scheduler()
    sched.set_timesteps(25)
    assert sched.timesteps.tolist() == list(range(999, 0, -40))
    assert float(sched.alphas_cumprod[999]) == 0.0


@pytest.fixture(scope="module")
def nets():
    return tiny_networks(seed=3)


def test_reference_tokens_reach_only_the_conditional_rows(nets):
    denoiser, reference, _ = nets
    torch.manual_seed(0)
    frames, h, w = 3, 8, 8
    ref_latent = torch.randn(1, 4, h, w)
    clip = torch.randn(1, 1, 32)
    record = {}
    reference(ref_latent, 0, clip, record=record)
    kv = S.project_reference_tokens(denoiser, {k: v.half() for k, v in record.items()})
    x = torch.randn(frames, 8, h, w)
    pose = torch.randn(frames, 32, h, w)
    context = torch.cat([torch.zeros_like(clip), clip])
    with torch.no_grad():
        both = denoiser(torch.cat([x, x]), 999, context, frames, torch.cat([pose, pose]),
                        reference=ReferenceContext(kv, plain_rows=frames))
        plain = denoiser(torch.cat([x, x]), 999, context, frames, torch.cat([pose, pose]))
        cond_only = denoiser(x, 999, clip, frames, pose, reference=ReferenceContext(kv, plain_rows=0))
    # uncond: no reference at all (float32 rounding only: its projections run on half the batch)
    torch.testing.assert_close(both[:frames], plain[:frames], rtol=1e-4, atol=1e-4)
    assert (both[frames:] - plain[frames:]).abs().max() > 1e-3  # cond: the reference matters
    torch.testing.assert_close(both[frames:], cond_only, rtol=1e-4, atol=1e-5)


def test_odd_latent_sizes_come_back_to_size(nets):
    denoiser = nets[0]
    x = torch.randn(2, 8, 25, 13)  # 25 -> 13 -> 7 -> 4 on the way down
    with torch.no_grad():
        out = denoiser(x, 10, torch.randn(1, 1, 32), frames=2)
    assert out.shape == (2, 4, 25, 13)


def test_motion_modules_mix_frames_and_spatial_layers_do_not(nets):
    denoiser = nets[0]
    torch.manual_seed(1)
    x = torch.randn(4, 8, 8, 8)
    ctx = torch.randn(1, 1, 32)
    with torch.no_grad():
        base = denoiser(x, 500, ctx, frames=4)
        x2 = x.clone()
        x2[3] += 1.0
        changed = denoiser(x2, 500, ctx, frames=4)
        separate = torch.cat([denoiser(x[i:i + 2], 500, ctx, frames=2) for i in (0, 2)])
    assert (changed[0] - base[0]).abs().max() > 0  # frame 3 reaches frame 0 through time
    assert (separate - base).abs().max() > 1e-4  # windows of 2 differ from one window of 4
    bigger = torch.randn(40, 8, 8, 8)
    with pytest.raises(ValueError, match="context_frames"):
        denoiser(bigger, 500, ctx, frames=40)
