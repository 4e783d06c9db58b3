"""The fake-CUDA counter of benchmarks/bench_footprint (GPU memory and FLOPs without a GPU), and the
sampler's memory estimates against what it counts for the full-size networks at a small size."""

import pytest
import torch
import torch.nn.functional as F

from benchmarks import bench_footprint, footprint
from mimo_pack.models.generate import memory_modes as M

MIB = 2**20


def test_counter_counts_each_live_cuda_storage_once():
    with footprint.fake_cuda() as mem:
        x = torch.empty(1024, 1024, device="cuda")  # 4 MiB
        y = x.view(-1)
        del x
        assert mem.now == 4 * MIB  # the view holds the storage
        z = (y * 2).sum()  # a 4 MiB temporary, then a 4-byte scalar
        assert mem.peak == 8 * MIB + 4 and mem.now == 4 * MIB + 4
        del y, z
        assert mem.now == 0
        torch.empty(10, device="cpu")  # host tensors are not counted
        assert mem.now == 0


def test_attention_is_counted_as_the_flash_kernel_not_the_score_matrix():
    with footprint.fake_cuda() as mem:
        q = torch.empty(1, 8, 8192, 64, device="cuda", dtype=torch.float16)  # 8 MiB
        mem.reset_peak()
        out = F.scaled_dot_product_attention(q, q, q)
        # the output (8 MiB) and its float32 log-sum-exp; the scores would be 1 GiB
        assert out.shape == q.shape and mem.peak - 8 * MIB <= 8 * MIB + 8 * 8192 * 4 + 4096
        with footprint.flop_counter() as flops:
            F.scaled_dot_product_attention(q, q, q)
        assert flops.get_total_flops() == 4 * 8 * 8192 * 8192 * 64  # QK^T and PV


def test_transfers_count_copies_between_host_and_device_and_casts():
    with footprint.fake_cuda(), footprint.Transfers() as moves:
        x = torch.ones(256, 1024, device="cpu").to("cuda")  # 1 MiB to the device
        half = x.half()  # a cast on the device: 0.5 MiB written
        x.view(-1)[:10].cpu()  # 40 bytes back: a host sync on a GPU
        torch.empty(4, device="cpu").copy_(half[0, :4])  # copy_ to the host, with a cast on the way
        x.float()  # same dtype, same device: no copy
    s = moves.summary()
    assert s["to_device"] == {"count": 1, "mib": 1.0} and s["casts"] == {"count": 1, "mib": 0.5}
    assert s["to_host"]["count"] == 2


def test_traffic_counts_what_memory_bound_ops_move_by_kind():
    with footprint.fake_cuda(), footprint.Traffic() as traffic:
        x = torch.empty(64, 256, 128, device="cuda", dtype=torch.float16)  # 4 MiB: an allocation, nothing moves
        x.transpose(1, 2)[:, :3].unsqueeze(0)  # views: nothing moves
        x.transpose(1, 2).contiguous()  # a layout copy: 4 MiB read, 4 written
        x.float()  # a cast: 4 read, 8 written
        x.add_(1)  # in place: 4 MiB (counted once)
        y = x * 2  # 4 read, 4 written
        torch.cat([x, y])  # 8 read, 8 written
        x @ x.transpose(1, 2)  # a matrix product: compute, not counted
        torch.nn.functional.layer_norm(x, (128,))  # 4 read, 4 written (and its small statistics)
    mib = {k: v / 2**20 for k, v in traffic.bytes.items()}
    assert mib["layout"] == 8 and mib["casts"] == 12 and mib["cat"] == 16 and mib["pointwise"] == 4 + 8
    assert mib["norms"] == 8 + 2 * 64 * 256 * 4 / 2**20  # and its float32 mean and rstd
    assert traffic.mixed_layouts == 0
    with footprint.fake_cuda(), footprint.Traffic() as mixed:
        a = torch.empty(8, 16, 32, 32, device="cuda", dtype=torch.float16)
        a + a.contiguous(memory_format=torch.channels_last)  # same shape, different layouts
    assert mixed.mixed_layouts == 1


@pytest.mark.parametrize("mode", ["fast", "low"])
def test_estimates_cover_the_counted_activations(mode):
    counted = bench_footprint.ours(256, 256, 24, mode, torch.float16, 3.5, free_gib=80)
    assert counted["memory"] == mode and counted["tflop_per_step"] > 1  # the full-size networks ran
    assert counted["later_step_transfers"]["to_host"]["count"] <= 1  # fast: none (the window index is kept);
    # low: one a window, its prediction going to the step state on the host
    estimate = M.estimate(mode, width=256, height=256, context_frames=24, frames=24, cfg=3.5, dtype=torch.float16,
                          weight_bytes=0).activations / footprint.GIB
    assert counted["step_activations_gib"] <= estimate <= 1.3 * counted["step_activations_gib"]
