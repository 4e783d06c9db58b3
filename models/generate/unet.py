"""MIMO's two UNets with the official (diffusers) state-dict names.

One module tree serves both: the denoiser (``UNetConfig.denoiser``: 8 input channels, motion
modules, ``conv_norm_out``/``conv_out``) and the ReferenceNet (``UNetConfig.reference``: 4 input
channels, no motion modules, no output head). Frames are folded into the batch, so every
convolution and GroupNorm is per frame, as the official "inflated" layers are; motion modules
unfold them to attend over time.
"""

from dataclasses import dataclass, field, replace
from functools import partial

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from .attention import GEGLUFeedForward, ReferenceContext, SpatialTransformer
from .compiled import CompiledCore
from .motion_module import MotionModule

SD15_BLOCK_OUT = (320, 640, 1280, 1280)


@dataclass(frozen=True)
class UNetConfig:
    block_out_channels: tuple[int, ...] = SD15_BLOCK_OUT
    layers_per_block: int = 2
    cross_attention_dim: int = 768
    attention_heads: int = 8
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    # One flag per down block (SD1.5: CrossAttn x3 then a plain DownBlock); up blocks mirror it.
    down_attention: tuple[bool, ...] = (True, True, True, False)
    in_channels: int = 8
    out_channels: int = 4
    with_output_head: bool = True
    motion_modules: bool = True
    motion_heads: int = 8
    motion_max_len: int = 32
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_diffusers(cls, config: dict, **overrides) -> "UNetConfig":
        """Build from a diffusers ``unet/config.json`` (the SD1.5 base of the official release)."""
        heads = config.get("num_attention_heads") or config.get("attention_head_dim", 8)
        if isinstance(heads, (list, tuple)):
            if len(set(heads)) != 1:
                raise ValueError(f"Per-block attention head counts {heads} are not supported (SD1.5 uses 8).")
            heads = heads[0]
        down = tuple(t.startswith("CrossAttn") for t in config.get("down_block_types", ()))
        base = cls(
            block_out_channels=tuple(config.get("block_out_channels", SD15_BLOCK_OUT)),
            layers_per_block=int(config.get("layers_per_block", 2)),
            cross_attention_dim=int(config.get("cross_attention_dim", 768)),
            attention_heads=int(heads),
            norm_num_groups=int(config.get("norm_num_groups", 32)),
            norm_eps=float(config.get("norm_eps", 1e-5)),
            down_attention=down or cls.down_attention,
        )
        return replace(base, **overrides)

    def denoiser(self) -> "UNetConfig":
        return replace(self, in_channels=8, with_output_head=True, motion_modules=True)

    def reference(self) -> "UNetConfig":
        return replace(self, in_channels=4, with_output_head=False, motion_modules=False)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb_dim: int, groups: int, eps: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_dim, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    row_chunk = 0  # >0: at most this many frames at a time (low-VRAM mode; each frame is independent)
    compiled = False  # True: the memory-bound steps run fused through torch.compile (MIMOUNet.set_compiled)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        # temb: [B*F, C] already passed through SiLU, or [1, C] when every row has the same timestep.
        t = self.time_emb_proj(temb)  # once for every piece below
        run = self._forward
        if self.compiled:  # each norm fused with its SiLU, the convolutions' biases (summed once) in those passes
            bias2 = self.conv2.bias if self.conv_shortcut is None else self.conv2.bias + self.conv_shortcut.bias
            t, run = self.conv1.bias + t, partial(self._forward_compiled, bias2=bias2)
        if 0 < self.row_chunk < x.shape[0]:  # each piece writes into its rows of the result: no cat
            rows, out = self.row_chunk, x.new_empty((x.shape[0], self.conv2.out_channels, *x.shape[2:]))
            for i in range(0, x.shape[0], rows):
                run(x[i:i + rows], t if t.shape[0] == 1 else t[i:i + rows], out=out[i:i + rows])
            return out
        return run(x, t)

    def _forward(self, x: torch.Tensor, t: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """t: the projected time embedding of these rows ([1, C]: one for all)."""
        if t.shape[0] == 1:  # one timestep: added through conv1's bias, not in a pass of its own over h
            conv1, add = partial(F.conv2d, weight=self.conv1.weight, bias=self.conv1.bias + t[0], padding=1), None
        else:
            conv1, add = self.conv1, t[:, :, None, None]
        h = conv1(F.silu(self.norm1(x)))
        if add is not None:
            h = h + add  # replaces h: one map less alive in the norm
        h = self.conv2(F.silu(self.norm2(h)))
        return torch.add(self.conv_shortcut(x) if self.conv_shortcut is not None else x, h, out=out)

    def _forward_compiled(self, x: torch.Tensor, bias1: torch.Tensor, out: torch.Tensor | None = None, *,
                          bias2: torch.Tensor) -> torch.Tensor:
        """``_forward`` with the memory-bound steps fused (``COMPILED_*``): the convolutions run without
        bias; bias1 (conv1's bias plus these rows' time embedding, [1 or rows, C]) is added in norm2's
        pass, bias2 (conv2's, plus the shortcut's) in the residual sum's."""
        n1, n2 = self.norm1, self.norm2
        h = F.conv2d(COMPILED_GROUP_NORM_SILU(x, n1.num_groups, n1.weight, n1.bias, n1.eps), self.conv1.weight,
                     padding=1)
        h = F.conv2d(COMPILED_GROUP_NORM_SILU(h, n2.num_groups, n2.weight, n2.bias, n2.eps, bias1[:, :, None, None]),
                     self.conv2.weight, padding=1)
        shortcut = x if self.conv_shortcut is None else F.conv2d(x, self.conv_shortcut.weight)
        result = COMPILED_BIAS_RESIDUAL(shortcut, h, bias2)
        return result if out is None else out.copy_(result)  # low mode's pieces: one copy into their rows


def group_norm_silu(x, groups: int, weight, bias, eps: float, add=None):
    """SiLU(GroupNorm(x + add)) on plain tensors (no module call, so no cancel hook is traced), for
    ``COMPILED_GROUP_NORM_SILU``: one pass over x, no intermediate map written."""
    if add is not None:
        x = x + add
    return F.silu(F.group_norm(x, groups, weight, bias, eps))


COMPILED_GROUP_NORM_SILU = CompiledCore(group_norm_silu)


def bias_residual(shortcut, h, bias):
    """shortcut + h + bias (per channel): a resnet's output, for ``COMPILED_BIAS_RESIDUAL``."""
    return shortcut + h + bias[:, None, None]


COMPILED_BIAS_RESIDUAL = CompiledCore(bias_residual)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    row_chunk = 0  # >0: at most this many frames at a time (each frame is independent)

    def forward(self, x, size):
        # Explicit sizes: 98 -> 49 -> 25 -> 13 on the way down must come back to 25 -> 49 -> 98.
        rows = self.row_chunk
        if 0 < rows < x.shape[0]:
            return torch.cat([self.conv(F.interpolate(x[i:i + rows], size=size, mode="nearest"))
                              for i in range(0, x.shape[0], rows)])
        return self.conv(F.interpolate(x, size=size, mode="nearest"))


class UNetBlock(nn.Module):
    """A down or up block: per layer resnet -> (spatial attention) -> (motion module)."""

    def __init__(self, cfg: UNetConfig, in_channels: list[int], out_ch: int, temb_dim: int, attention: bool,
                 resample: str | None):
        super().__init__()
        g, eps = cfg.norm_num_groups, cfg.norm_eps
        self.resnets = nn.ModuleList([ResnetBlock(c, out_ch, temb_dim, g, eps) for c in in_channels])
        if attention:
            self.attentions = nn.ModuleList(
                [SpatialTransformer(out_ch, cfg.attention_heads, cfg.cross_attention_dim, g) for _ in in_channels]
            )
        else:
            self.attentions = None
        if cfg.motion_modules:
            self.motion_modules = nn.ModuleList(
                [MotionModule(out_ch, cfg.motion_heads, cfg.motion_max_len, g) for _ in in_channels]
            )
        else:
            self.motion_modules = None
        if resample == "down":
            self.downsamplers = nn.ModuleList([Downsample(out_ch)])
        elif resample == "up":
            self.upsamplers = nn.ModuleList([Upsample(out_ch)])

    def layer(self, i, x, temb, context, frames, reference, record):
        x = self.resnets[i](x, temb)
        if self.attentions is not None:
            x = self.attentions[i](x, context, reference, record)
        if self.motion_modules is not None:
            x = self.motion_modules[i](x, frames)
        return x


class MidBlock(nn.Module):
    def __init__(self, cfg: UNetConfig, channels: int, temb_dim: int):
        super().__init__()
        g, eps = cfg.norm_num_groups, cfg.norm_eps
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, temb_dim, g, eps) for _ in range(2)])
        self.attentions = nn.ModuleList([SpatialTransformer(channels, cfg.attention_heads, cfg.cross_attention_dim, g)])
        self.motion_modules = (
            nn.ModuleList([MotionModule(channels, cfg.motion_heads, cfg.motion_max_len, g)]) if cfg.motion_modules else None
        )

    def forward(self, x, temb, context, frames, reference, record):
        x = self.resnets[0](x, temb)
        x = self.attentions[0](x, context, reference, record)
        if self.motion_modules is not None:
            x = self.motion_modules[0](x, frames)
        return self.resnets[1](x, temb)


class MIMOUNet(nn.Module):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.config = cfg
        ch = cfg.block_out_channels
        temb_dim = ch[0] * 4
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        self.time_proj = Timesteps(ch[0], flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(ch[0], temb_dim)

        n = cfg.layers_per_block
        self.down_blocks = nn.ModuleList()
        prev = ch[0]
        for i, out_ch in enumerate(ch):
            last = i == len(ch) - 1
            ins = [prev] + [out_ch] * (n - 1)
            self.down_blocks.append(UNetBlock(cfg, ins, out_ch, temb_dim, cfg.down_attention[i], None if last else "down"))
            prev = out_ch
        self.mid_block = MidBlock(cfg, ch[-1], temb_dim)

        # Skip channels, in the order the up path pops them.
        skips = [ch[0]]
        for i, out_ch in enumerate(ch):
            skips += [out_ch] * n
            if i < len(ch) - 1:
                skips.append(out_ch)
        self.up_blocks = nn.ModuleList()
        rev = list(reversed(ch))
        prev = ch[-1]
        for i, out_ch in enumerate(rev):
            last = i == len(rev) - 1
            ins = []
            for _ in range(n + 1):
                ins.append(prev + skips.pop())
                prev = out_ch
            attention = list(reversed(cfg.down_attention))[i]
            self.up_blocks.append(UNetBlock(cfg, ins, out_ch, temb_dim, attention, None if last else "up"))

        if cfg.with_output_head:
            self.conv_norm_out = nn.GroupNorm(cfg.norm_num_groups, ch[0], eps=cfg.norm_eps)
            self.conv_out = nn.Conv2d(ch[0], cfg.out_channels, 3, padding=1)

        for name, module in self.named_modules():
            if hasattr(module, "path"):
                module.path = name

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    def set_row_chunk(self, rows: int, ff_tokens: int = 0) -> None:
        """Run resnets, upsamplers and spatial transformers on at most ``rows`` frames at a time, and
        every feed-forward (spatial and temporal) on at most ``ff_tokens`` tokens at 320 channels
        (``GEGLUFeedForward.token_chunk``); 0: all at once. Frames and tokens are independent there,
        so the result is the same; peak activations shrink, and each piece is short enough for a
        cancel point between."""
        for m in self.modules():
            if isinstance(m, (ResnetBlock, Upsample, SpatialTransformer)):
                m.row_chunk = int(rows)
            elif isinstance(m, GEGLUFeedForward):
                m.token_chunk = int(ff_tokens)

    def set_compiled(self, on: bool) -> None:
        """Run the memory-bound steps of every resnet, transformer and feed-forward through torch.compile
        (``compiled.py``; compiled on the first forward, then reused) or not. The output is the same up
        to float rounding."""
        for m in self.modules():
            if hasattr(m, "compiled"):
                m.compiled = bool(on)

    def transformer_blocks(self) -> dict[str, nn.Module]:
        return {name: m for name, m in self.named_modules() if hasattr(m, "project_reference")}

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        context: torch.Tensor,
        frames: int = 1,
        pose_features: torch.Tensor | None = None,
        reference: ReferenceContext | None = None,
        record: dict | None = None,
    ) -> torch.Tensor | None:
        """sample: [B*F, C_in, h, w] (batch-major, frames inner); context: [B, S, D] CLIP tokens.

        ``pose_features`` ([B*F, C0, h, w], or the rows of a divisor of B, e.g. one guidance half,
        added to every group of that many rows) is added after conv_in. ``record`` (ReferenceNet mode)
        collects post-norm1 tokens of every transformer block and skips the output head.
        """
        bf = sample.shape[0]
        batch = bf // frames
        t = torch.as_tensor(timestep, device=sample.device).reshape(-1)
        temb = F.silu(self.time_embedding(self.time_proj(t).to(self.dtype)))
        if t.numel() != 1:  # one timestep stays one row (the resnets add it through a conv bias)
            temb = temb.expand(batch, -1).repeat_interleave(frames, dim=0)
        context = context.repeat_interleave(frames, dim=0) if context.shape[0] != bf else context

        x = self.conv_in(sample)
        if pose_features is not None:
            if x.shape[0] % pose_features.shape[0] or x.shape[1:] != pose_features.shape[1:]:
                raise ValueError(f"pose features {tuple(pose_features.shape)} do not fit the denoiser's "
                                 f"{tuple(x.shape)} after conv_in (the pose guider and the denoiser differ).")
            x = (x.view(-1, *pose_features.shape) + pose_features).view(x.shape)
        skips = [x]
        for block in self.down_blocks:
            for i in range(len(block.resnets)):
                x = block.layer(i, x, temb, context, frames, reference, record)
                skips.append(x)
            if hasattr(block, "downsamplers"):
                x = block.downsamplers[0](x)
                skips.append(x)
        x = self.mid_block(x, temb, context, frames, reference, record)
        for block in self.up_blocks:
            for i in range(len(block.resnets)):
                x = torch.cat([x, skips.pop()], dim=1)
                x = block.layer(i, x, temb, context, frames, reference, record)
            if hasattr(block, "upsamplers"):
                x = block.upsamplers[0](x, skips[-1].shape[-2:])
        if not self.config.with_output_head:
            return None
        return self.conv_out(F.silu(self.conv_norm_out(x)))
