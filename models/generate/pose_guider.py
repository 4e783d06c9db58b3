"""PoseGuider: encodes the rendered motion frames (0..1, per frame) to the UNet's first width at 1/8 size."""

import torch
import torch.nn.functional as F
from torch import nn


class PoseGuider(nn.Module):
    def __init__(self, embedding_channels: int = 320, conditioning_channels: int = 3,
                 block_out_channels: tuple[int, ...] = (16, 32, 96, 256)):
        super().__init__()
        self.conv_in = nn.Conv2d(conditioning_channels, block_out_channels[0], 3, padding=1)
        blocks = []
        for cin, cout in zip(block_out_channels[:-1], block_out_channels[1:]):
            blocks.append(nn.Conv2d(cin, cin, 3, padding=1))
            blocks.append(nn.Conv2d(cin, cout, 3, padding=1, stride=2))
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(block_out_channels[-1], embedding_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @classmethod
    def from_state_dict_shapes(cls, sd: dict[str, torch.Tensor]) -> "PoseGuider":
        """Build the architecture a ``pose_guider.pth`` state dict describes."""
        widths = [sd["conv_in.weight"].shape[0]]
        i = 1
        while f"blocks.{i}.weight" in sd:
            widths.append(sd[f"blocks.{i}.weight"].shape[0])
            i += 2
        return cls(sd["conv_out.weight"].shape[0], sd["conv_in.weight"].shape[1], tuple(widths))

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: [F, C, H, W] in 0..1 -> [F, embedding_channels, H/8, W/8]."""
        x = F.silu(self.conv_in(frames))
        for block in self.blocks:
            x = F.silu(block(x))
        return self.conv_out(x)
