"""AnimateDiff-v2 style ("Vanilla") temporal module with the official key names.

Input and output are [B*F, C, H, W] with frames folded into the batch; attention runs over F.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import COMPILED_ADD_LAYER_NORM, Attention, GEGLUFeedForward
from .compiled import CompiledCore


class PositionalEncoding(nn.Module):
    """Sinusoidal table stored as the ``pe`` buffer [1, max_len, C] (part of the state dict)."""

    def __init__(self, dim: int, max_len: int = 32):
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        pe = torch.zeros(1, max_len, dim)
        pe[0, :, 0::2] = torch.sin(position * div)
        pe[0, :, 1::2] = torch.cos(position * div)
        self.register_buffer("pe", pe)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.pe.shape[1]:
            raise ValueError(
                f"A context window of {x.shape[1]} frames exceeds the motion module's position table "
                f"({self.pe.shape[1]} frames): lower context_frames."
            )
        return x + self.pe[:, : x.shape[1]].to(x.dtype)


class TemporalAttention(Attention):
    def __init__(self, dim: int, heads: int, max_len: int):
        super().__init__(dim, heads)
        self.pos_encoder = PositionalEncoding(dim, max_len)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B*L, F, C], every token's frames in a row; the position encoding goes into the
        # normalised input only.
        t = self.pos_encoder(x)
        qkv = [self.to_q(t), self.to_k(t), self.to_v(t)]
        del t
        return self.attend(qkv)


class TemporalTransformerBlock(nn.Module):
    """Runs on [B*L, F, C]: attention over F; norms, feed-forward and residuals are per token, so
    the tokens stay in that order for the whole block (no reordering per attention)."""

    def __init__(self, dim: int, heads: int, max_len: int, num_attention: int = 2):
        super().__init__()
        self.attention_blocks = nn.ModuleList([TemporalAttention(dim, heads, max_len) for _ in range(num_attention)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(num_attention)])
        self.ff = GEGLUFeedForward(dim)
        self.ff_norm = nn.LayerNorm(dim)

    compiled = False  # True: each residual sum and the norm after it in one pass (MIMOUNet.set_compiled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled:
            n = self.norms[0](x)
            for i, attention in enumerate(self.attention_blocks):
                after = self.norms[i + 1] if i + 1 < len(self.norms) else self.ff_norm
                x, n = COMPILED_ADD_LAYER_NORM(attention(n), x, after.weight, after.bias, after.eps)
            return self.ff(n) + x
        for attention, norm in zip(self.attention_blocks, self.norms):
            x = attention(norm(x)) + x
        return self.ff(self.ff_norm(x)) + x


class TemporalTransformer(nn.Module):
    def __init__(self, channels: int, heads: int, max_len: int, groups: int = 32):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TemporalTransformerBlock(channels, heads, max_len)])
        self.proj_out = nn.Linear(channels, channels)

    compiled = False  # True: the GroupNorm and the reordering into rows of frames in one pass

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        # [B*F, C, H, W] -> [B*H*W, F, C] once (one copy in), and back through the residual add.
        n, c, h, w = x.shape
        b = n // frames
        g, norm = self.norm, COMPILED_GROUP_NORM_FRAMES if self.compiled else group_norm_frames
        y = self.proj_in(norm(x, frames, g.num_groups, g.weight, g.bias, g.eps))
        for block in self.transformer_blocks:
            y = block(y)
        y = self.proj_out(y).view(b, h, w, frames, c).permute(0, 3, 4, 1, 2)
        return (x.view(b, frames, c, h, w) + y).view(n, c, h, w)  # x first: the sum is laid out as x


def group_norm_frames(x, frames: int, groups: int, weight, bias, eps: float):
    """GroupNorm of [B*F, C, H, W] (per frame), as rows of frames [B*H*W, F, C] (contiguous);
    compiled (``COMPILED_GROUP_NORM_FRAMES``), the normalised map is written once, already reordered."""
    n, c, h, w = x.shape
    y = F.group_norm(x, groups, weight, bias, eps)
    return y.view(n // frames, frames, c, h * w).permute(0, 3, 1, 2).reshape(n // frames * h * w, frames, c)


COMPILED_GROUP_NORM_FRAMES = CompiledCore(group_norm_frames)


class MotionModule(nn.Module):
    """``VanillaTemporalModule``: keys ``temporal_transformer.*``; proj_out starts at zero."""

    def __init__(self, channels: int, heads: int = 8, max_len: int = 32, groups: int = 32):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, heads, max_len, groups)
        nn.init.zeros_(self.temporal_transformer.proj_out.weight)
        nn.init.zeros_(self.temporal_transformer.proj_out.bias)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        return self.temporal_transformer(x, frames)
