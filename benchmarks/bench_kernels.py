"""The denoiser's hot layers one at a time, in the variants worth choosing between on a GPU.

    python -m benchmarks.bench_kernels                 # CUDA, fp16, the shapes of 784x784 24 frames
    python -m benchmarks.bench_kernels --cpu           # the same variants at a tiny size (a smoke run)

Prints one JSON line a layer: ms a call of each variant (median of timed repeats after a warm-up),
or why a variant could not run. The shapes are those of a guided ``fast`` step at 784x784 and 24
frames (48 images of 98x98 latents): the 320-wide attentions (reference rows: 2x the keys), the
temporal attention (24 frames), GroupNorm+SiLU, a 3x3 convolution, the GEGLU feed-forward gate.
"""

import argparse
import contextlib
import json
import statistics
import time

import torch
import torch.nn.functional as F

from . import load_pack


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median ms a call, after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return round(statistics.median(times), 3)


def variants(name: str, cases: dict, device: torch.device, repeats: int) -> dict:
    result = {"layer": name}
    for label, fn in cases.items():
        try:
            with torch.no_grad():
                result[label] = timed(fn, device, repeats)
        except Exception as error:  # an unsupported back end or layout: say which and go on
            result[label] = f"failed: {type(error).__name__}: {str(error).strip().splitlines()[0][:160]}"
    return result


SDPA_BACKENDS = ("default", "cudnn", "flash", "efficient", "math")


def attention_backend(name: str):
    """A context running every scaled_dot_product_attention on one back end ("default": PyTorch's pick)."""
    if name == "default":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([{"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                         "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}[name]])


def attention_cases(q, k, v) -> dict:
    def with_backend(name):
        def run():
            with attention_backend(name):
                F.scaled_dot_product_attention(q, k, v)
        return run

    cases = {"default": lambda: F.scaled_dot_product_attention(q, k, v)}
    for name in ("cudnn", "flash", "efficient"):
        cases[f"{name}_attention"] = with_backend(name)
    return cases


def heads_view(n: int, length: int, heads: int, dim: int, **kw) -> torch.Tensor:
    """[N, heads, L, d] as our attention passes it: a transposed view of [N, L, heads*d]."""
    return torch.randn(n, length, heads * dim, **kw).view(n, length, heads, dim).transpose(1, 2)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="a tiny size on the CPU, fp32 (checks that it runs)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    load_pack()
    from mimo_pack.models.generate.attention import geglu, geglu_
    from mimo_pack.models.generate.unet import COMPILED_GROUP_NORM_SILU

    device = torch.device("cpu" if args.cpu else "cuda")
    kw = dict(device=device, dtype=torch.float32 if args.cpu else torch.float16)
    rows, side, frames = (4, 8, 4) if args.cpu else (24, 98, 24)  # frames of one half; latent side
    tokens, width = side * side, 320
    results = []

    def report(result):
        results.append(result)
        print(json.dumps(result), flush=True)

    q = heads_view(rows, tokens, 8, width // 8, **kw)
    kv = heads_view(rows, 2 * tokens, 8, width // 8, **kw)
    report(variants("attention_320_reference_rows", attention_cases(q, kv, kv), device, args.repeats))
    report(variants("attention_320_plain_rows", attention_cases(q, q, q), device, args.repeats))
    t = heads_view(2 * tokens, frames, 8, width // 8, **kw)
    report(variants("attention_320_temporal", attention_cases(t, t, t), device, args.repeats))
    del q, kv, t

    x = torch.randn(2 * rows, width, side, side, **kw)
    x_last = x.contiguous(memory_format=torch.channels_last)
    weight, bias = torch.ones(width, **kw), torch.zeros(width, **kw)
    report(variants("group_norm_silu_320", {
        "eager": lambda: F.silu(F.group_norm(x, 32, weight, bias, 1e-5)),
        "eager_channels_last": lambda: F.silu(F.group_norm(x_last, 32, weight, bias, 1e-5)),
        "compiled": lambda: COMPILED_GROUP_NORM_SILU(x, 32, weight, bias, 1e-5),
    }, device, args.repeats))
    conv = torch.nn.Conv2d(width, width, 3, padding=1).to(**kw)
    conv_last = torch.nn.Conv2d(width, width, 3, padding=1).to(**kw).to(memory_format=torch.channels_last)
    report(variants("conv3x3_320", {
        "nchw_bias": lambda: conv(x),
        "nchw_no_bias": lambda: F.conv2d(x, conv.weight, None, padding=1),
        "channels_last_bias": lambda: conv_last(x_last),
        "channels_last_no_bias": lambda: F.conv2d(x_last, conv_last.weight, None, padding=1),
    }, device, args.repeats))
    report(variants("residual_add_320", {
        "same_layout": lambda: x + x,
        "mixed_layout": lambda: x + x_last,
    }, device, args.repeats))
    del x, x_last

    piece = 4096 if args.cpu else 65536  # the fast mode's feed-forward piece at 320 channels
    h = torch.randn(piece, width, **kw)
    proj = torch.nn.Linear(width, 8 * width).to(**kw)
    inner = 4 * width

    def geglu_one_projection():  # the previous code: one wide product, then GELU and the product on its halves
        hidden, gate = proj(h).chunk(2, dim=-1)
        return hidden * F.gelu(gate)

    def geglu_two_projections():  # now: two contiguous products, GELU and the product in place
        return geglu_(F.linear(h, proj.weight[:inner], proj.bias[:inner]), F.linear(h, proj.weight[inner:], proj.bias[inner:]))

    report(variants("geglu_320", {
        "one_projection_strided": geglu_one_projection,
        "two_projections_in_place": geglu_two_projections,
        "two_projections_out_of_place": lambda: geglu(F.linear(h, proj.weight[:inner], proj.bias[:inner]),
                                                      F.linear(h, proj.weight[inner:], proj.bias[inner:])),
    }, device, args.repeats))
    return results


if __name__ == "__main__":
    main()
