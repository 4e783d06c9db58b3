"""Memory modes of the sampler: every plan gives the default output, and plans are picked as documented."""

import pytest
import torch

from mimo_pack.models.generate import memory_modes as M
from mimo_pack.models.generate import sampler as S
from mimo_pack.models.generate.tiny import tiny_sampler_inputs

GIB = 2**30


@pytest.fixture(scope="module")
def video():
    return tiny_sampler_inputs(seed=5, frames=18)  # float64: any real difference shows


def run(video, plan=None, pose=None, steps=2, cfg=3.5):
    pose = pose if pose is not None else S.PoseFeatures(video["guider"], video["motion"],
                                                          cache_bytes=plan.pose_cache_bytes if plan else 0)
    return S.denoise(video["denoiser"], video["kv"], video["clip"], pose, video["scene"], video["noise"],
                     steps=steps, cfg=cfg, context_frames=8, overlap=2, plan=plan)


def test_pose_features_by_window_equal_the_whole_video_at_once(video):
    whole = S.encode_pose(video["guider"], video["motion"].permute(0, 3, 1, 2).float() / 255.0)  # all at once
    lazy = S.PoseFeatures(video["guider"], video["motion"], cache_bytes=GIB)
    index = torch.tensor([16, 17, 0, 1, 2])
    torch.testing.assert_close(lazy(index), whole[index], rtol=1e-12, atol=1e-12)
    assert lazy(index) is lazy(index)  # cached within the budget
    uncached = S.PoseFeatures(video["guider"], video["motion"], cache_bytes=0)
    assert uncached(index) is not uncached(index)
    torch.testing.assert_close(uncached(index), lazy(index), rtol=0, atol=0)  # same bits either way


@pytest.fixture(scope="module")
def default_output(video):
    base = run(video)
    assert (base - run(video, cfg=1.0)).abs().max() > 1e-2  # guidance matters: the comparisons can fail
    return base


@pytest.mark.parametrize("plan", [
    S.SamplerPlan(sequential_guidance=True),
    S.SamplerPlan(row_chunk=3),
    S.SamplerPlan(windows_per_forward=3, pose_cache_bytes=GIB),
    S.SamplerPlan(state_on_device=False),
    S.SamplerPlan(ff_tokens=1),  # tiny widths: pieces of about 100 tokens
    S.SamplerPlan(sequential_guidance=True, row_chunk=2, ff_tokens=1, state_on_device=False),  # what low mode uses
], ids=["sequential", "row-chunk", "windows-batched", "state-on-host", "ff-pieces", "low"])
def test_every_plan_gives_the_default_output(video, default_output, plan):
    out = run(video, plan)
    # The step state is float32: a float64 difference of 1e-15 may flip its last bit (6e-7), no more.
    assert (out - default_output).abs().max() < 1e-5
    assert all(getattr(m, "row_chunk", 0) == 0 and getattr(m, "token_chunk", 0) == 0
               for m in video["denoiser"].modules())  # restored


def test_window_groups_batch_consecutive_windows_of_one_length():
    windows = S.context_windows(30, 8, 2)  # 5 windows of 8
    assert S.window_groups(windows, 1) == [[i] for i in range(len(windows))]
    assert S.window_groups(windows, 2) == [[0, 1], [2, 3], [4]]
    assert S.window_groups([[0, 1, 2], [3, 4, 5], [6, 7]], 4) == [[0, 1], [2]]


CALL = dict(width=784, height=784, frames=24, context_frames=24, overlap=4, cfg=3.5, dtype=torch.float16,
            weight_bytes=int(2.5 * GIB))


def test_cpu_runs_the_fast_plan_one_window_at_a_time():
    plan, mode = M.plan_sampler("auto", device=torch.device("cpu"), free_bytes=None, **CALL)
    assert mode == "fast" and plan.windows_per_forward == 1 and not plan.sequential_guidance
    assert plan.row_chunk == M.CPU_ROW_CHUNK  # layers in 4-frame pieces: Cancel is checked between them
    assert M.plan_sampler("fast", device=torch.device("cuda"), free_bytes=40 * GIB, **CALL)[0].row_chunk == 0


def test_low_pieces_hold_the_same_latent_pixels_at_every_size():
    def low_chunk(size, device="cuda"):
        call = dict(CALL, width=size, height=size)
        return M.plan_sampler("low", device=torch.device(device), free_bytes=40 * GIB, **call)[0].row_chunk

    assert (low_chunk(784), low_chunk(512), low_chunk(256), low_chunk(2048)) == (4, 9, 37, 1)
    assert low_chunk(512, "cpu") == M.CPU_ROW_CHUNK  # on the CPU: 4 frames, for Cancel


def test_auto_picks_low_when_fast_does_not_fit_or_lowvram_is_set():
    gpu = torch.device("cuda")
    plan, mode = M.plan_sampler("auto", device=gpu, free_bytes=40 * GIB, **CALL)
    assert mode == "fast" and plan.pose_cache_bytes > 0
    plan, mode = M.plan_sampler("auto", device=gpu, free_bytes=7 * GIB, **CALL)
    assert mode == "low" and plan.sequential_guidance and plan.row_chunk > 0 and not plan.state_on_device
    assert M.plan_sampler("auto", device=gpu, free_bytes=40 * GIB, force_low=True, **CALL)[1] == "low"


def test_fast_batches_small_windows_only_with_room_and_long_videos_keep_their_state_on_the_host():
    gpu = torch.device("cuda")
    long = dict(CALL, frames=1000)
    plan, _ = M.plan_sampler("fast", device=gpu, free_bytes=80 * GIB, **long)
    assert plan.windows_per_forward == 1  # one 784x784 window already fills a forward
    assert not plan.state_on_device and plan.pose_cache_bytes <= M.POSE_CACHE_MAX
    small = dict(long, width=256, height=256)
    assert M.plan_sampler("fast", device=gpu, free_bytes=80 * GIB, **small)[0].windows_per_forward == 4
    assert M.plan_sampler("fast", device=gpu, free_bytes=3 * GIB, **small)[0].windows_per_forward < 4


def test_low_mode_that_cannot_fit_says_what_would():
    with pytest.raises(MemoryError, match=r"low-VRAM mode at 784x784.*Try a working size of about \d+x\d+"):
        M.plan_sampler("low", device=torch.device("cuda"), free_bytes=3 * GIB, **CALL)
    with pytest.raises(ValueError, match="memory must be one of auto, fast, low"):
        M.plan_sampler("fastest", device=torch.device("cpu"), free_bytes=None, **CALL)


def test_feed_forwards_run_in_token_pieces_in_every_gpu_mode():
    gpu = torch.device("cuda")
    assert M.plan_sampler("fast", device=gpu, free_bytes=40 * GIB, **CALL)[0].ff_tokens == M.FAST_FF_TOKENS
    assert M.plan_sampler("low", device=gpu, free_bytes=7 * GIB, **CALL)[0].ff_tokens == M.LOW_FF_TOKENS
    assert M.plan_sampler("fast", device=torch.device("cpu"), free_bytes=None, **CALL)[0].ff_tokens == M.CPU_FF_TOKENS


def test_denoising_bytes_add_the_pose_cache_and_a_device_state_to_one_forward():
    call = {k: v for k, v in CALL.items() if k not in ("overlap", "weight_bytes")}
    plan, mode = M.plan_sampler("fast", device=torch.device("cuda"), free_bytes=40 * GIB, **CALL)
    forward = M.estimate("fast", weight_bytes=0, **call).activations
    assert M.denoising_bytes(plan, mode, **call) == forward + plan.pose_cache_bytes + M.state_bytes(24, 784, 784)
    low, _ = M.plan_sampler("low", device=torch.device("cuda"), free_bytes=7 * GIB, **CALL)
    assert M.denoising_bytes(low, "low", **call) == M.estimate("low", weight_bytes=0, **call).activations
