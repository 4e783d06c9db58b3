"""Counting GPU memory and FLOPs without a GPU: the networks run on fake CUDA tensors (shapes and
dtypes only, no arithmetic), every CUDA storage an op makes is counted while it lives, and attention
goes to the flash kernel's fake version (the kernel SDPA picks on a Hopper GPU for fp16/bf16) rather
than the math fallback a fake tensor would otherwise take.

Counted: what PyTorch's allocator would hand out for tensors (``max_memory_allocated`` less the
rounding to 512-byte blocks). Not counted: cuBLAS/cuDNN workspaces and the CUDA context. Shared by
``bench_footprint`` (ours) and ``footprint_official`` (the official code, in its own process).
"""

import contextlib
import weakref

import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

GIB = 2**30


class LiveCudaBytes(TorchDispatchMode):
    """Bytes of CUDA storages alive now, and the most alive at once since ``reset_peak``."""

    def __init__(self):
        super().__init__()
        self._sizes: dict[int, int] = {}
        self.now = 0
        self.peak = 0

    def reset_peak(self) -> None:
        self.peak = self.now

    def _freed(self, key: int) -> None:
        self.now -= self._sizes.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "cuda":
                storage = t.untyped_storage()
                key = storage._cdata
                if key not in self._sizes:
                    self._sizes[key] = storage.nbytes()
                    self.now += storage.nbytes()
                    self.peak = max(self.peak, self.now)
                    weakref.finalize(storage, self._freed, key)
        return out


class Transfers(TorchDispatchMode):
    """Copies between host and device, and dtype casts on one device, with their bytes: on a GPU each
    copy to the host waits for the device (a host sync), each cast reads and writes the whole tensor."""

    KINDS = ("to_host", "to_device", "casts")

    def __init__(self):
        super().__init__()
        self.count = dict.fromkeys(self.KINDS, 0)
        self.bytes = dict.fromkeys(self.KINDS, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default):
            src, dst = (args[1], args[0]) if func is torch.ops.aten.copy_.default else (args[0], out)
            if isinstance(src, torch.Tensor) and isinstance(dst, torch.Tensor):
                kind = (("to_device" if dst.device.type == "cuda" else "to_host") if src.device != dst.device
                        else "casts" if src.dtype != dst.dtype else None)
                if kind:
                    self.count[kind] += 1
                    self.bytes[kind] += dst.numel() * dst.element_size()
        return out

    def summary(self) -> dict:
        return {k: {"count": self.count[k], "mib": round(self.bytes[k] / 2**20, 1)} for k in self.KINDS}


class Traffic(TorchDispatchMode):
    """Bytes read and written by the memory-bound ops (everything but matmuls, convolutions and
    attention), by kind: ``layout`` (same-dtype copies that change the layout: permute + contiguous),
    ``casts``, ``cat``, ``norms`` (GroupNorm, LayerNorm), ``pointwise`` (the rest), ``conv_bias``
    (a convolution's bias, which PyTorch adds after cuDNN's convolution in a pass of its own) and
    ``fused`` (functions counted as one kernel: ``fused``). On a GPU these
    run at memory speed, so their bytes bound their time; ``mixed_layouts`` counts pointwise ops whose
    same-shaped inputs are laid out differently (strided kernels, not vectorised ones)."""

    COMPUTE = ("mm", "addmm", "bmm", "baddbmm", "convolution", "_scaled_dot_product")
    KINDS = ("layout", "casts", "cat", "norms", "pointwise", "conv_bias", "fused")

    def __init__(self):
        super().__init__()
        self.bytes = dict.fromkeys(self.KINDS, 0)
        self.mixed_layouts = 0
        self.top: dict[tuple, int] = {}
        self.paused = 0
        self.active = False

    def __enter__(self):
        self.active = True
        return super().__enter__()

    def __exit__(self, *exc):
        self.active = False
        return super().__exit__(*exc)

    def fused(self, fn, *args):
        """``fn(*args)`` counted as one fused kernel (kind ``fused``): its tensor arguments read once,
        its outputs written once, nothing in between (what torch.compile makes of a pointwise and
        normalisation function); uncounted while this counter is not on."""
        if not self.active:
            return fn(*args)
        self.paused += 1
        try:
            out = fn(*args)
        finally:
            self.paused -= 1
        tensors = [t for t in tree_flatten((args, out))[0] if isinstance(t, torch.Tensor) and t.device.type == "cuda"]
        moved = sum(self._nbytes(t) for t in tensors)
        self.bytes["fused"] += moved
        key = ("fused", getattr(fn, "__name__", "fn"), tuple(tree_flatten(out)[0][0].shape))
        self.top[key] = self.top.get(key, 0) + moved
        return out

    @staticmethod
    def _nbytes(t: torch.Tensor) -> int:
        return min(t.numel(), t.untyped_storage().nbytes() // t.element_size()) * t.element_size()

    def _kind(self, name: str, inputs: list, out: list) -> str:
        if "norm" in name:
            return "norms"
        if name == "cat":
            return "cat"
        if name in ("_to_copy", "copy_", "clone"):
            return "casts" if inputs and out and inputs[0].dtype != out[-1].dtype else "layout"
        return "pointwise"

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if self.paused:
            return out
        if name == "convolution" and args[2] is not None and out.device.type == "cuda":
            # cuDNN convolves without the bias; PyTorch then adds it in a pass of its own (in place)
            self.bytes["conv_bias"] += 2 * self._nbytes(out)
            return out
        if name.startswith(self.COMPUTE) or "empty" in name:  # empty*: an allocation, nothing moves
            return out
        ins = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor) and t.device.type == "cuda"]
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor) and t.device.type == "cuda"]
        if not outs:
            return out
        moved = sum(self._nbytes(t) for t in ins)
        if name == "copy_":  # the destination is written, not read: counted once, as an input
            pass
        elif name.endswith("_"):  # in place (add_, gelu_, ...): the output, an input, is also written
            moved += sum(self._nbytes(t) for t in outs)
        else:
            in_storages = {t.untyped_storage()._cdata for t in ins}
            if all(t.untyped_storage()._cdata in in_storages for t in outs):
                return out  # a view: nothing moves
            moved += sum(self._nbytes(t) for t in outs)
        kind = self._kind(name, ins, outs)
        self.bytes[kind] += moved
        if kind == "pointwise":
            shaped = [t for t in ins if t.dim() >= 3 and t.shape == outs[0].shape]
            if len({t.stride() for t in shaped}) > 1:
                self.mixed_layouts += 1
        key = (kind, name, tuple(outs[0].shape))
        self.top[key] = self.top.get(key, 0) + moved
        return out

    def summary(self, bandwidth_tb_s: float = 4.0, top: int = 0) -> dict:
        total = sum(self.bytes.values())
        result = {"gib": {k: round(v / GIB, 2) for k, v in self.bytes.items()}, "total_gib": round(total / GIB, 2),
                  "ms_at_bandwidth": round(total / (bandwidth_tb_s * 1e12) * 1e3, 1),
                  "bandwidth_tb_s": bandwidth_tb_s, "mixed_layout_ops": self.mixed_layouts}
        if top:
            ranked = sorted(self.top.items(), key=lambda kv: -kv[1])[:top]
            result["top"] = [[k[0], k[1], list(k[2]), round(v / GIB, 2)] for k, v in ranked]
        return result


class AttentionWork(TorchDispatchMode):
    """What the attention kernels compute: the scores (one exponential each: softmax), and the FLOPs of
    QK^T and PV at the real head width and at the width of the kernel's tile (flash kernels run a
    40-wide head in their 64-wide variant; ``head_tile``). Exponentials run on the special-function
    units, far slower than the matrix units (H100: about 3.9 T/s beside 989 TFLOP/s of fp16 products,
    FlashAttention-3's figures), so at narrow heads they, not the FLOPs, can bound attention's time."""

    OPS = ("_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
           "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_attention_math")

    def __init__(self, head_tile: int = 64):
        super().__init__()
        self.head_tile = head_tile
        self.calls = 0
        self.scores = 0
        self.flops = 0
        self.tile_flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket.__name__ in self.OPS:
            q, k = args[0], args[1]  # [B, H, L, d]
            scores = q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2]
            d, tile = q.shape[-1], -(-q.shape[-1] // self.head_tile) * self.head_tile
            self.calls += 1
            self.scores += scores
            self.flops += 4 * scores * d
            self.tile_flops += 4 * scores * tile
        return out

    def summary(self) -> dict:
        return {"calls": self.calls, "g_exponentials": round(self.scores / 1e9, 2), "tflop": round(self.flops / 1e12, 2),
                f"tflop_at_{self.head_tile}_wide_heads": round(self.tile_flops / 1e12, 2)}


# A GPU's ceilings for floor_ms: dense fp16/bf16 matrix TFLOP/s, memory TB/s, special-function (exp) T/s.
GPUS = {"h100_sxm": {"tflop_s": 989.0, "tb_s": 3.35, "exp_t_s": 3.9},
        "h200": {"tflop_s": 989.0, "tb_s": 4.8, "exp_t_s": 3.9}}


def floor_ms(total_flops: float, attention: AttentionWork, traffic_bytes: float, gpu: dict) -> dict:
    """The least time a step can take on ``gpu`` with these counts, by kind, assuming every kernel at its
    ceiling and kernels of different kinds one after another (as they run): products and convolutions
    at the matrix rate; attention at the larger of its tile-wide FLOPs at the matrix rate and its
    exponentials at the special-function rate (the two perfectly overlapped, as FlashAttention-3 aims
    for); the memory-bound ops' bytes at the memory bandwidth. Real kernels reach a fraction of it."""
    products = (total_flops - attention.flops) / (gpu["tflop_s"] * 1e12)
    attend = max(attention.tile_flops / (gpu["tflop_s"] * 1e12), attention.scores / (gpu["exp_t_s"] * 1e12))
    memory = traffic_bytes / (gpu["tb_s"] * 1e12)
    parts = {"products": products, "attention": attend, "memory_bound": memory}
    return {**{k: round(v * 1e3, 1) for k, v in parts.items()}, "total": round(sum(parts.values()) * 1e3, 1)}


def floors(total_flops: float, attention: AttentionWork, traffic_bytes: float) -> dict:
    return {name: floor_ms(total_flops, attention, traffic_bytes, gpu) for name, gpu in GPUS.items()}


def _flash_sdpa(original):
    def sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
        if (attn_mask is None and not kwargs and q.device.type == "cuda" and q.dtype in (torch.float16, torch.bfloat16)
                and q.shape[-1] <= 256 and q.shape[-1] % 8 == 0):
            return torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, dropout_p, is_causal, False,
                                                                      scale=scale)[0]
        if attn_mask is None and not kwargs and q.device.type == "cuda":  # fp32: the memory-efficient kernel
            return torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, False, dropout_p, is_causal,
                                                                          scale=scale)[0]
        return original(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale, **kwargs)
    return sdpa


@contextlib.contextmanager
def fake_cuda():
    """Fake CUDA tensors and the flash attention path; yields the byte counter."""
    original_sdpa = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = _flash_sdpa(original_sdpa)
    counter = LiveCudaBytes()
    try:
        with FakeTensorMode(allow_non_fake_inputs=True), counter:
            yield counter
    finally:
        F.scaled_dot_product_attention = original_sdpa


@contextlib.contextmanager
def built_in(dtype: torch.dtype):
    """Networks constructed directly in ``dtype`` on the CUDA device (fake parameters cannot be cast
    afterwards: ``Module.to`` would have to swap them)."""
    original = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("cuda"):
            yield
    finally:
        torch.set_default_dtype(original)


def flop_counter() -> FlopCounterMode:
    return FlopCounterMode(display=False)


def gib(n: int) -> float:
    return round(n / GIB, 3)
