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
        x.add_(1)  # in place: 4 MiB read, 4 written
        y = x * 2  # 4 read, 4 written
        y.copy_(x)  # 4 read, 4 written (the destination is not read)
        torch.cat([x, y])  # 8 read, 8 written
        x @ x.transpose(1, 2)  # a matrix product: compute, not counted
        torch.nn.functional.layer_norm(x, (128,))  # 4 read, 4 written (and its small statistics)
        w = torch.empty(32, 128, 3, 3, device="cuda", dtype=torch.float16)
        torch.nn.functional.conv2d(x[:, :128].unflatten(1, (128, 1)).expand(-1, -1, 4, -1)[:1], w, w[:, 0, 0, 0])
        # ^ a convolution with a bias: compute, then its bias added in place over the [1, 32, 2, 126] output
    mib = {k: v / 2**20 for k, v in traffic.bytes.items()}
    assert mib["layout"] == 8 + 8 and mib["casts"] == 12 and mib["cat"] == 16 and mib["pointwise"] == 8 + 8
    assert mib["norms"] == 8 + 2 * 64 * 256 * 4 / 2**20  # and its float32 mean and rstd
    assert mib["conv_bias"] == 2 * 32 * 2 * 126 * 2 / 2**20 and mib["fused"] == 0
    assert traffic.mixed_layouts == 0
    fused = footprint.Traffic()
    with footprint.fake_cuda():
        a = torch.empty(1024, 1024, device="cuda", dtype=torch.float16)  # 2 MiB
        b = a * 2  # before the counter is on: not counted
        with fused:
            out = fused.fused(lambda u, v: (u * 2 + v).relu(), a, b)  # 2 read twice, 2 written, nothing between
        fused.fused(torch.add, a, b)  # the counter is off: runs, not counted
    assert out.shape == a.shape and fused.bytes == {**dict.fromkeys(fused.KINDS, 0), "fused": 6 * 2**20}
    with footprint.fake_cuda(), footprint.Traffic() as mixed:
        a = torch.empty(8, 16, 32, 32, device="cuda", dtype=torch.float16)
        a + a.contiguous(memory_format=torch.channels_last)  # same shape, different layouts
    assert mixed.mixed_layouts == 1


def test_attention_work_counts_exponentials_and_the_kernels_head_tile():
    with footprint.fake_cuda(), footprint.AttentionWork() as work, footprint.flop_counter() as flops:
        q = torch.empty(2, 8, 1024, 40, device="cuda", dtype=torch.float16)  # SD1.5's 40-wide heads
        k = torch.empty(2, 8, 3072, 40, device="cuda", dtype=torch.float16)
        F.scaled_dot_product_attention(q, k, k)
        q @ k.transpose(-1, -2)  # a plain product is not attention
    scores = 2 * 8 * 1024 * 3072
    assert work.calls == 1 and work.scores == scores
    assert work.flops == 4 * scores * 40 and work.tile_flops == 4 * scores * 64  # run in the 64-wide variant
    assert flops.get_total_flops() == work.flops + 2 * scores * 40  # the same FLOPs as the counter's
    # exponentials the slower part (50.3 M at 0.002 T/s: 25.2 ms; tile FLOPs 12.9 G at 1000 TFLOP/s: 0.01 ms)
    floor = footprint.floor_ms(2e12 + work.flops, work, 8e9, {"tflop_s": 1000.0, "tb_s": 4.0, "exp_t_s": 0.002})
    assert floor == {"products": 2.0, "attention": 25.2, "memory_bound": 2.0, "total": 29.2}
    # the tile-wide FLOPs the slower part (12.9 G at 1 TFLOP/s: 12.9 ms; products 2 TFLOP: 2000 ms)
    floor = footprint.floor_ms(2e12 + work.flops, work, 8e9, {"tflop_s": 1.0, "tb_s": 4.0, "exp_t_s": 4.0})
    assert floor == {"products": 2000.0, "attention": 12.9, "memory_bound": 2.0, "total": 2014.9}


@pytest.mark.parametrize("mode", ["fast", "low"])
def test_estimates_cover_the_counted_activations(mode):
    counted = bench_footprint.ours(256, 256, 24, mode, torch.float16, 3.5, free_gib=80)
    assert counted["memory"] == mode and counted["tflop_per_step"] > 1  # the full-size networks ran
    assert counted["later_step_transfers"]["to_host"]["count"] <= 1  # fast: none (the window index is kept);
    # low: one a window, its prediction going to the step state on the host
    estimate = M.estimate(mode, width=256, height=256, context_frames=24, frames=24, cfg=3.5, dtype=torch.float16,
                          weight_bytes=0).activations / footprint.GIB
    assert counted["step_activations_gib"] <= estimate <= 1.3 * counted["step_activations_gib"]


def test_the_official_step_is_counted_the_same_way(tmp_path, monkeypatch, capsys):
    """Ours against the official (its code and pinned libraries, in its own process) at a small size:
    less work of every kind, from the reference attention left out of the unconditional half down."""
    import json
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "shared" / "official_mimo"
    if not (folder / "src").is_dir():
        pytest.skip(f"the official pipeline folder is missing ({folder})")
    monkeypatch.setenv("OFFICIAL_LIB", str(tmp_path / "official-lib"))
    bench_footprint.main(["--width", "256", "--height", "256", "--frames", "8", "--memory", "fast",
                          "--official", str(folder)])
    ours, theirs, ratio = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (ours["impl"], theirs["impl"], ratio["check"]) == ("ours", "official", "footprint_vs_official")
    for r in (ours, theirs):
        assert 0 < r["attention"]["tflop"] < r["attention"]["tflop_at_64_wide_heads"]
        assert r["attention"]["tflop"] < r["tflop_per_step"]
        assert set(r["floor_ms"]) == {"h100_sxm", "h200"} and r["floor_ms"]["h200"]["total"] > 0
    # the official also attends to the reference in the unconditional half (then recomputes those rows)
    assert ours["attention"]["g_exponentials"] < theirs["attention"]["g_exponentials"]
    assert 0 < ratio["traffic_ratio"] < 0.8 and 0 < ratio["floor_ratio"]["h200"] < 1
