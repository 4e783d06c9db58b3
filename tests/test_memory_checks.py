"""Bounded work: the estimates a node checks before heavy work, and the refusal with figure and limit."""

import pytest
import torch

from mimo_pack.models import memory
from mimo_pack.models.decompose import budget
from mimo_pack.models.generate import memory_modes
from mimo_pack.models.render import render_bytes


def test_refusal_states_the_figure_the_limit_and_the_fix():
    with pytest.raises(memory.NotEnoughMemoryError, match=r"X needs about 20\.0 GiB of host memory \(RAM\), but "
                                                          r"only 9\.0 GiB can be used \(10\.0 GiB available\)\. "
                                                          r"Refused before starting.*: do less") as e:
        memory.check_fits(20 * memory.GIB, 10 * memory.GIB, "X", "do less")
    assert isinstance(e.value, MemoryError)
    memory.check_fits(8 * memory.GIB, 10 * memory.GIB, "X", "")  # fits
    memory.check_fits(10**15, None, "X", "")  # unknown: allowed
    available = memory.host_available_bytes()
    assert available is None or available > 0


def test_host_check_uses_what_is_available(monkeypatch):
    monkeypatch.setattr(memory, "host_available_bytes", lambda: 4 * memory.GIB)
    need = budget.decomposition_bytes(1000, 1080, 1920, track=True, depth=True, occluders=True, scene=True)
    assert need > 80 * memory.GIB  # 43 bytes per pixel + SAM 2's state: far beyond 4 GiB
    with pytest.raises(memory.NotEnoughMemoryError, match="1000 frames of 1920x1080.*Trim it"):
        memory.check_host(need, "decomposition", budget.decomposition_fix(1000, 1080, 1920))
    memory.check_host(budget.decomposition_bytes(24, 64, 64), "decomposition", "")


def test_each_heavy_call_has_its_check(monkeypatch):
    from mimo_pack.models.render import check_render_fits

    monkeypatch.setattr(memory, "host_available_bytes", lambda: 4 * memory.GIB)
    with pytest.raises(memory.NotEnoughMemoryError, match=r"MIMO Decompose Video on 1000 frames of 1920x1080.*Trim"):
        budget.check_decomposition(torch.empty(1000, 1080, 1920, 3, device="meta"), "MIMO Decompose Video",
                                   track=True, scene=True)
    budget.check_decomposition(torch.empty(24, 64, 64, 3, device="meta"), "MIMO Track Human", track=True)
    with pytest.raises(memory.NotEnoughMemoryError, match=r"MIMO Sampler \(2000 frames at 784x784, 24-frame "
                                                          r"windows, on the CPU\).*cfg 1\.0"):
        memory_modes.check_host(width=784, height=784, frames=2000, context_frames=24, cfg=3.5, dtype=torch.float32,
                                on_cpu=True)
    memory_modes.check_host(width=64, height=64, frames=24, context_frames=24, cfg=3.5, dtype=torch.float32,
                            on_cpu=False)
    with pytest.raises(memory.NotEnoughMemoryError, match=r"MIMO Rasterize Motion \(5000 frames at 1024x1024, "
                                                          r"supersample 4\).*lower width/height or supersample"):
        check_render_fits(5000, 6890, 1024, 1024, supersample=4)
    check_render_fits(10, 6890, 64, 64)


def test_estimates_grow_with_the_work():
    d = budget.decomposition_bytes(10, 100, 100, track=True)
    assert d == 10 * 100 * 100 * budget.TRACK_PER_PIXEL + 10 * budget.SAM2_STATE_PER_FRAME + budget.SAM2_INPUT_BLOCK
    assert budget.decomposition_bytes(10, 100, 100, track=False, scene=True) == 10 * 100 * 100 * budget.SCENE_PER_PIXEL
    common = dict(width=784, height=784, frames=120, context_frames=24, cfg=3.5, dtype=torch.float32)
    gpu, cpu = memory_modes.host_bytes(on_cpu=False, **common), memory_modes.host_bytes(on_cpu=True, **common)
    assert gpu == 120 * 784 * 784 * 3 + 8 * 120 * 4 * 98 * 98 * 4
    assert cpu - gpu == memory_modes.forward_activations(784, 784, 48, torch.float32)  # SD1.5 width
    tiny = memory_modes.host_bytes(on_cpu=True, block_out_channels=(32,), **common)
    assert gpu < tiny < cpu
    assert render_bytes(10, 6890, 64, 64, supersample=2) > render_bytes(10, 6890, 64, 64) > 10 * 64 * 64 * 16
