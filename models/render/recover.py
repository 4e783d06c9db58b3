"""Per-vertex colours recovered from renders of a known body: an official template's ``sdc.mp4`` (the
official render of that person's SMPL fit) seen through an estimated motion and camera.

For every frame the body is rasterized with the camera (visible face and barycentrics per pixel); each
vertex is projected, and counts as seen when the surface drawn at its pixel is the vertex's own
surface (the interpolated depth there is within ``depth_tolerance`` of the vertex's depth). Its sample
is the render's colour at the vertex's exact projection (bilinear), weighted by the distance of the pixel from the silhouette edges
(of our rasterization and of the render's own non-black area: ``edge_pixels`` pixels or nearer the
edge count less, the edge itself not at all), where pose errors and edge blending are worst. The
estimate per vertex and channel is the weighted median of its samples over all frames. Vertices never
seen take the mean of their already known mesh neighbours, growing inwards ring by ring."""

import torch
import torch.nn.functional as F

from .camera import Camera
from .rasterize import rasterize_fragments

BLACK = 10.0 / 255.0  # the render's background is black: darker pixels are not the body


def _edge_weight(mask: torch.Tensor, steps: int) -> torch.Tensor:
    """[F,H,W] 0..1: (erosions survived) / steps; 0 on and outside the edge."""
    m = mask.float()[:, None]
    total = torch.zeros_like(m)
    for _ in range(steps):
        m = -F.max_pool2d(-m, 3, stride=1, padding=1)
        total += m
    return (total / steps)[:, 0]


def weighted_median(index: torch.Tensor, values: torch.Tensor, weights: torch.Tensor, groups: int) -> torch.Tensor:
    """Per group g (index [N] in 0..groups-1) the weighted median of values [N] (weights > 0);
    NaN for empty groups."""
    order = torch.argsort(values.double() + index.double() * 4.0)  # values in 0..1: sort by group, then value
    idx, val, w = index[order], values[order], weights[order].double()
    cum = torch.cumsum(w, 0)
    total = torch.zeros(groups, dtype=torch.float64, device=values.device).index_add_(0, idx, w)
    first = torch.full((groups,), idx.numel(), dtype=torch.long, device=values.device)
    first.scatter_reduce_(0, idx, torch.arange(idx.numel(), device=values.device), "amin")
    has = total > 0
    out = torch.full((groups,), float("nan"), dtype=values.dtype, device=values.device)
    if not bool(has.any()):
        return out
    before = (cum - w)[first[has]]  # cumulative weight before each group's first sample
    pos = torch.searchsorted(cum, before + total[has] / 2.0).clamp(max=idx.numel() - 1)
    out[has] = val[pos]
    return out


def fill_unseen(colours: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, int]:
    """NaN rows of colours [V,C] from the mean of known neighbours, ring by ring; rows no known vertex
    reaches take the mean of all known colours. Returns (colours, vertices left unreachable)."""
    colours = colours.clone()
    v = colours.shape[0]
    f = faces.long()
    edges = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    edges = torch.cat([edges, edges.flip(1)])
    known = ~torch.isnan(colours).any(1)
    while not bool(known.all()):
        src, dst = edges[:, 0], edges[:, 1]
        use = known[src] & ~known[dst]
        if not bool(use.any()):
            break
        acc = torch.zeros_like(colours).index_add_(0, dst[use], torch.nan_to_num(colours[src[use]]))
        cnt = torch.zeros(v, dtype=colours.dtype, device=colours.device).index_add_(
            0, dst[use], torch.ones_like(dst[use], dtype=colours.dtype))
        new = cnt > 0
        colours[new] = acc[new] / cnt[new, None]
        known = known | new
    left = int((~known).sum())
    if left:
        colours[~known] = colours[known].mean(0) if bool(known.any()) else 0.5
    return colours, left


def recover_palette(renders: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor, camera: Camera,
                    depth_tolerance: float = 0.02, edge_pixels: int = 3, chunk: int = 8) -> tuple[torch.Tensor, dict]:
    """Per-vertex colours [V,3] (0..1) from ``renders`` [F,H,W,3] (0..1) of the posed body ``vertices``
    [F,V,3] (world) through ``camera`` (its size must be the renders'). Also returns a report: vertices
    seen, filled from neighbours, unreachable, and the samples used."""
    frames, height, width = renders.shape[:3]
    if (camera.width, camera.height) != (width, height):
        raise ValueError(f"the camera is {camera.width}x{camera.height} but the renders are {width}x{height}")
    if vertices.shape[0] != frames:
        raise ValueError(f"{vertices.shape[0]} posed frames for {frames} render frames: give one pose per frame")
    nv = vertices.shape[1]
    faces = torch.as_tensor(faces).long()
    idx_all, col_all, w_all = [], [], []
    for a in range(0, frames, chunk):
        b = min(frames, a + chunk)
        verts = vertices[a:b].float()
        cam = _frames(camera, a, b, frames)
        frags = rasterize_fragments(verts, faces, cam)
        xy, depth = cam.project(verts)
        n = b - a
        px = torch.floor(xy[..., 0]).long()
        py = torch.floor(xy[..., 1]).long()
        inside = (px >= 0) & (px < width) & (py >= 0) & (py < height) & (depth > cam.near)
        pxc, pyc = px.clamp(0, width - 1), py.clamp(0, height - 1)
        fr = torch.arange(n)[:, None].expand(n, nv)
        face = frags.face_ids[fr, pyc, pxc]
        bary = frags.bary[fr, pyc, pxc]
        cam_z = cam.to_camera(verts)[..., 2]
        tri = faces[face.clamp(min=0)]
        surf_z = (bary * torch.gather(cam_z, 1, tri.reshape(n, -1)).reshape(n, nv, 3)).sum(-1)
        seen = inside & (face >= 0) & ((surf_z - depth).abs() < depth_tolerance)
        image = renders[a:b].float()
        drawn = image.amax(-1) > BLACK
        weight = torch.minimum(_edge_weight(frags.mask, edge_pixels), _edge_weight(drawn, edge_pixels))
        w = weight[fr, pyc, pxc] * seen
        keep = w > 0
        idx_all.append(torch.arange(nv)[None].expand(n, nv)[keep])
        grid = torch.stack([xy[..., 0] / width * 2 - 1, xy[..., 1] / height * 2 - 1], -1)[:, :, None]
        sampled = F.grid_sample(image.permute(0, 3, 1, 2), grid.float(), mode="bilinear", padding_mode="border",
                                align_corners=False)[..., 0].permute(0, 2, 1)  # the render at the exact point
        col_all.append(sampled[keep])
        w_all.append(w[keep])
    idx, col, w = torch.cat(idx_all), torch.cat(col_all), torch.cat(w_all)
    palette = torch.stack([weighted_median(idx, col[:, c], w, nv) for c in range(3)], -1)
    seen_mask = ~torch.isnan(palette).any(1)
    seen = int(seen_mask.sum())
    palette, unreachable = fill_unseen(palette, faces)
    return palette.clamp(0, 1).float(), {"vertices": nv, "seen": seen, "filled": nv - seen - unreachable,
                                         "unreachable": unreachable, "samples": int(idx.numel()),
                                         "seen_mask": seen_mask}


def _frames(camera: Camera, a: int, b: int, total: int) -> Camera:
    from .rasterize import _frames as cut

    return cut(camera, a, b, total)
