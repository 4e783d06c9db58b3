"""A synthetic video clip for tests (not part of the product): a person-like shape walking over a
fixed texture, with its exact masks."""

import torch


def person_clip(frames: int = 6, height: int = 64, width: int = 96, step: int = 9, seed: int = 1):
    """A synthetic static-camera clip for tests: a red person-like shape (head, body, two legs)
    walking right over a fixed greenish texture. Returns (frames [F,H,W,3] 0..1, masks [F,H,W] 0/1);
    the person's colour differs from the background by > 0.6 in red everywhere."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    tex = 0.4 + 0.15 * torch.sin(xx / 3.0) * torch.cos(yy / 4.0) + 0.05 * torch.rand(height, width, generator=g)
    background = torch.stack([tex * 0.5, tex, tex * 0.9], dim=-1)
    s = height / 64
    out, masks = [], []
    for t in range(frames):
        x0 = round(8 * s) + step * t
        m = torch.zeros(height, width, dtype=torch.bool)
        m |= (xx - (x0 + 6 * s)) ** 2 + (yy - 14 * s) ** 2 <= 16 * s * s  # head
        m[round(19 * s):round(42 * s), x0:x0 + round(13 * s)] = True  # body
        m[round(42 * s):round(58 * s), x0 + round(1 * s):x0 + round(5 * s)] = True  # legs
        m[round(42 * s):round(58 * s), x0 + round(8 * s):x0 + round(12 * s)] = True
        frame = background.clone()
        frame[m] = torch.tensor([0.95, 0.15, 0.1])
        out.append(frame)
        masks.append(m.float())
    return (torch.stack(out) * 255).round() / 255, torch.stack(masks)


__all__ = ["person_clip"]
