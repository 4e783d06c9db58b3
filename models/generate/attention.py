"""Attention layers with the official state-dict names (to_q / to_k / to_v / to_out.0).

Spatial self-attention can read reference tokens (MIMO's ReferenceNet "bank"); the reference
keys and values are projected once per video (``ReferenceKV``) and reused by every window and step.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .compiled import CompiledCore


class Attention(nn.Module):
    def __init__(self, query_dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        context_dim = context_dim or query_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, query_dim, bias=False)
        self.to_k = nn.Linear(context_dim, query_dim, bias=False)
        self.to_v = nn.Linear(context_dim, query_dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(query_dim, query_dim), nn.Dropout(0.0)])

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        n, length, c = x.shape
        return x.view(n, length, self.heads, c // self.heads).transpose(1, 2)

    def attend(self, qkv: list[torch.Tensor], out: torch.Tensor | None = None) -> torch.Tensor:
        """qkv: [q, k, v], each [N, L, C] already projected; returns the projected output [N, Lq, C],
        written into ``out`` when given (contiguous, e.g. some batch rows of a larger result). The
        list is emptied, so the projections are freed before the output projection (peak memory:
        arguments passed one by one would stay alive until this returns)."""
        n, length, c = qkv[0].shape
        heads = [self.split_heads(t) for t in qkv]
        qkv.clear()
        attended = F.scaled_dot_product_attention(*heads)
        del heads
        attended = attended.transpose(1, 2).reshape(n, length, c)
        if out is None:
            return self.to_out[0](attended)
        linear_into(self.to_out[0], attended, out)
        return out

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if context is None:
            return self.attend([self.to_q(x), self.to_k(x), self.to_v(x)])
        if context.shape[1] == 1:
            # One key: softmax is exactly 1, so the output is the projected value for every query.
            return self.to_out[0](self.to_v(context)).expand(-1, x.shape[1], -1)
        return self.attend([self.to_q(x), self.to_k(context), self.to_v(context)])


BASE_CHANNELS = 320  # SD1.5's first block width: the unit of GEGLUFeedForward.token_chunk


class GEGLUFeedForward(nn.Module):
    """diffusers/AnimateDiff ``FeedForward(activation_fn="geglu")``: keys net.0.proj, net.2."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        inner = dim * mult
        proj = nn.Module()
        proj.proj = nn.Linear(dim, inner * 2)
        self.net = nn.ModuleList([proj, nn.Dropout(0.0), nn.Linear(inner, dim)])

    # >0: at most this many tokens at a time at 320 channels, proportionally fewer where wider (the
    # same work per piece); every token is independent here. Bounds the 8x-wide hidden activation.
    token_chunk = 0

    compiled = False  # True: the GEGLU gate runs fused through torch.compile (MIMOUNet.set_compiled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-1]
        step = max(1, self.token_chunk * BASE_CHANNELS**2 // c**2) if self.token_chunk > 0 else 0
        if 0 < step < x.numel() // c:
            # Each piece's output projection writes straight into its rows of the result: no cat.
            flat, out = x.reshape(-1, c), x.new_empty(x.shape).view(-1, c)
            for i in range(0, flat.shape[0], step):
                self._forward(flat[i:i + step], out=out[i:i + step])
            return out.view(x.shape)
        return self._forward(x)

    def _forward(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        # The doubled projection as its two halves: hidden and gate come out contiguous (the gate
        # runs vectorised, in place), not as strided halves of one wide tensor.
        proj, inner = self.net[0].proj, self.net[2].in_features
        hidden = F.linear(x, proj.weight[:inner], proj.bias[:inner])
        gate = F.linear(x, proj.weight[inner:], proj.bias[inner:])
        gated = COMPILED_GEGLU(hidden, gate) if self.compiled else geglu_(hidden, gate)
        del hidden, gate
        if out is None:
            return self.net[2](gated)
        return linear_into(self.net[2], gated, out)


def linear_into(layer: nn.Linear, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` written into ``out`` (contiguous rows of a larger result), the bias added in the
    product: no output tensor of its own to copy in afterwards."""
    return torch.addmm(layer.bias, x.reshape(-1, layer.in_features), layer.weight.t(),
                       out=out.view(-1, layer.out_features))


def geglu(hidden: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """hidden * GELU(gate): compiled (``COMPILED_GEGLU``) into one pass."""
    return hidden * F.gelu(gate)


def geglu_(hidden: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """``geglu`` in place (two vectorised passes, no new tensor): the result is ``hidden``."""
    return hidden.mul_(torch.ops.aten.gelu_(gate))


COMPILED_GEGLU = CompiledCore(geglu)


@dataclass
class ReferenceKV:
    """Projected reference keys/values of one transformer block, shape [1, L_ref, C]."""

    key: torch.Tensor
    value: torch.Tensor


@dataclass
class ReferenceContext:
    """How a denoiser forward uses the reference tokens.

    ``kv`` maps block paths to projected tokens. The first ``plain_rows`` batch rows (the frames of
    the unconditional branch) run plain self-attention; the rest also attend to the reference.
    """

    kv: dict[str, ReferenceKV]
    plain_rows: int = 0


class SpatialTransformerBlock(nn.Module):
    """BasicTransformerBlock: self-attention (optionally reading reference tokens), CLIP
    cross-attention, GEGLU feed-forward; can record its post-norm1 tokens (ReferenceNet)."""

    def __init__(self, dim: int, heads: int, context_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = GEGLUFeedForward(dim)
        self.path = ""  # set by the UNet: the module path that pairs reference and denoiser blocks

    compiled = False  # True: the residual sums and the norm after them run fused (MIMOUNet.set_compiled)

    def self_attention(self, n: torch.Tensor, reference: ReferenceContext | None) -> torch.Tensor:
        kv = reference.kv.get(self.path) if reference is not None else None
        if kv is None or reference.plain_rows >= n.shape[0]:
            return self.attn1(n)
        attn = self.attn1
        p = reference.plain_rows
        # The plain rows first, then the reference rows' keys/values built straight into their
        # concatenation: no keys/values of all rows and their copies alive at once (peak memory).
        # Both write into their rows of one result (no concatenation of the outputs).
        result = n.new_empty(n.shape) if p else None
        if p:
            attn.attend([attn.to_q(n[:p]), attn.to_k(n[:p]), attn.to_v(n[:p])], out=result[:p])
        rows, count = n[p:], n.shape[0] - p
        with_ref = attn.attend([attn.to_q(rows), torch.cat([attn.to_k(rows), kv.key.expand(count, -1, -1)], dim=1),
                                torch.cat([attn.to_v(rows), kv.value.expand(count, -1, -1)], dim=1)],
                               out=result[p:] if p else None)
        return with_ref if result is None else result

    def forward(self, x, context, reference: ReferenceContext | None = None, record: dict | None = None):
        n = self.norm1(x)
        if record is not None:
            record[self.path] = n
        h = self.self_attention(n, reference)
        del n  # not alive during the feed-forward (peak memory)
        if context.shape[1] == 1:
            # One CLIP token: the cross-attention gives its projected value whatever the queries, so
            # norm2's output would go unused (not computed: a pass less).
            cross = self.attn2(x, context)
            if self.compiled:  # both sums and norm3 in one pass
                n3 = self.norm3
                x, n = COMPILED_ADD_LAYER_NORM(h, x, n3.weight, n3.bias, n3.eps, cross)
                del h
                return self.ff(n) + x
            x = h + x
            del h
            x += cross
        else:
            x = h + x
            del h
            x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x

    def project_reference(self, tokens: torch.Tensor, dtype: torch.dtype) -> ReferenceKV:
        # The official reader stores the bank in float16 whatever the model dtype.
        t = tokens.to(torch.float16).to(dtype)
        return ReferenceKV(self.attn1.to_k(t), self.attn1.to_v(t))


def _rows_of(reference: ReferenceContext | None, start: int, rows: int) -> ReferenceContext | None:
    """The reference context of batch rows start..start+rows (the plain rows come first)."""
    if reference is None:
        return None
    return ReferenceContext(reference.kv, plain_rows=min(max(reference.plain_rows - start, 0), rows))


class SpatialTransformer(nn.Module):
    """Transformer2DModel with 1x1-conv projections; frames are folded into the batch."""

    def __init__(self, channels: int, heads: int, context_dim: int, groups: int = 32):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList([SpatialTransformerBlock(channels, heads, context_dim)])
        self.proj_out = nn.Conv2d(channels, channels, 1)

    row_chunk = 0  # >0: at most this many frames at a time (low-VRAM mode; each frame is independent)
    compiled = False  # True: the GroupNorm and the reordering into tokens in one pass (MIMOUNet.set_compiled)

    def forward(self, x, context, reference=None, record=None):
        rows = self.row_chunk
        if record is None and 0 < rows < x.shape[0]:  # each piece writes into its rows of the result
            out = torch.empty_like(x)
            for i in range(0, x.shape[0], rows):
                self._forward(x[i:i + rows], context[i:i + rows], _rows_of(reference, i, rows), out=out[i:i + rows])
            return out
        return self._forward(x, context, reference, record)

    def _forward(self, x, context, reference=None, record=None, out=None):
        n, c, h, w = x.shape
        g, norm = self.norm, COMPILED_GROUP_NORM_TOKENS if self.compiled else group_norm_tokens
        tokens = norm(x, g.num_groups, g.weight, g.bias, g.eps)
        y = token_projection(self.proj_in, tokens)
        del tokens
        for block in self.transformer_blocks:
            y = block(y, context, reference, record)
        y = token_projection(self.proj_out, y).view(n, h, w, c).permute(0, 3, 1, 2)
        return torch.add(x, y, out=out)  # x first: the sum keeps x's layout (contiguous)


def group_norm_tokens(x, groups: int, weight, bias, eps: float):
    """GroupNorm of a map [N, C, H, W], as tokens [N, H*W, C] (contiguous); compiled
    (``COMPILED_GROUP_NORM_TOKENS``), the normalised map is written once, already reordered."""
    n, c, h, w = x.shape
    return F.group_norm(x, groups, weight, bias, eps).permute(0, 2, 3, 1).reshape(n, h * w, c)


def add_layer_norm(h, x, weight, bias, eps: float, add=None):
    """(h + x [+ add], LayerNorm of that sum): a residual sum and the norm after it, one pass when
    compiled (``COMPILED_ADD_LAYER_NORM``)."""
    x = h + x
    if add is not None:
        x = x + add
    return x, F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


COMPILED_GROUP_NORM_TOKENS = CompiledCore(group_norm_tokens)
COMPILED_ADD_LAYER_NORM = CompiledCore(add_layer_norm)


def token_projection(conv: nn.Conv2d, tokens: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution applied to [N, L, C] tokens as the matrix product it is: contiguous tokens
    in and out, the bias added in the product, no layout conversions around a convolution."""
    return F.linear(tokens, conv.weight.view(conv.out_channels, conv.in_channels), conv.bias)
