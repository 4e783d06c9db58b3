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

    def attend(self, qkv: list[torch.Tensor]) -> torch.Tensor:
        """qkv: [q, k, v], each [N, L, C] already projected; returns the projected output [N, Lq, C].
        The list is emptied, so the projections are freed before the output projection (peak memory:
        arguments passed one by one would stay alive until this returns)."""
        n, length, c = qkv[0].shape
        heads = [self.split_heads(t) for t in qkv]
        qkv.clear()
        out = F.scaled_dot_product_attention(*heads)
        del heads
        out = out.transpose(1, 2).reshape(n, length, c)
        return self.to_out[0](out)

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
            flat = x.reshape(-1, c)
            return torch.cat([self._forward(flat[i:i + step]) for i in range(0, flat.shape[0], step)]).view(x.shape)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        gated = COMPILED_GEGLU if self.compiled else geglu
        return self.net[2](gated(self.net[0].proj(x)))


def geglu(projected: torch.Tensor) -> torch.Tensor:
    """hidden * GELU(gate) of the doubled projection: compiled (``COMPILED_GEGLU``) into one pass."""
    hidden, gate = projected.chunk(2, dim=-1)
    return hidden * F.gelu(gate)


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

    def self_attention(self, n: torch.Tensor, reference: ReferenceContext | None) -> torch.Tensor:
        kv = reference.kv.get(self.path) if reference is not None else None
        if kv is None or reference.plain_rows >= n.shape[0]:
            return self.attn1(n)
        attn = self.attn1
        p = reference.plain_rows
        # The plain rows first, then the reference rows' keys/values built straight into their
        # concatenation: no keys/values of all rows and their copies alive at once (peak memory).
        plain = attn.attend([attn.to_q(n[:p]), attn.to_k(n[:p]), attn.to_v(n[:p])]) if p else None
        rows, count = n[p:], n.shape[0] - p
        with_ref = attn.attend([attn.to_q(rows), torch.cat([attn.to_k(rows), kv.key.expand(count, -1, -1)], dim=1),
                                torch.cat([attn.to_v(rows), kv.value.expand(count, -1, -1)], dim=1)])
        return with_ref if plain is None else torch.cat([plain, with_ref], dim=0)

    def forward(self, x, context, reference: ReferenceContext | None = None, record: dict | None = None):
        n = self.norm1(x)
        if record is not None:
            record[self.path] = n
        h = self.self_attention(n, reference)
        del n  # not alive during the feed-forward (peak memory)
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

    def forward(self, x, context, reference=None, record=None):
        rows = self.row_chunk
        if record is None and 0 < rows < x.shape[0]:
            return torch.cat([self._forward(x[i:i + rows], context[i:i + rows], _rows_of(reference, i, rows))
                              for i in range(0, x.shape[0], rows)])
        return self._forward(x, context, reference, record)

    def _forward(self, x, context, reference=None, record=None):
        n, c, h, w = x.shape
        y = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(n, h * w, c)
        for block in self.transformer_blocks:
            y = block(y, context, reference, record)
        y = y.reshape(n, h, w, c).permute(0, 3, 1, 2)
        return self.proj_out(y) + x
