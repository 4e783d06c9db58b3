"""Motion-code rasterizer speed on a body-sized closed mesh (a smooth bumpy ellipsoid, 1.8 m tall,
with about as many vertices/faces as SMPL) turning over the clip, framed by ``auto_camera``.

    python -m benchmarks.bench_rasterizer --width 784 --height 784 --frames 8 --device cpu --backend torch

Run from the repository root. Prints one JSON line: frames_per_second, ms_per_frame (median of
--repeats timed runs after one warm-up; ms_per_frame_best: the fastest), backend, device, mesh size
and the covered image fraction.
"""

import argparse
import json
import math
import statistics
import time

import torch

from . import load_pack


def cube_sphere(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit sphere from a cube with n x n quads per side: 6n^2 + 2 vertices, 12n^2 faces (outward CCW)."""
    g = torch.linspace(-1, 1, n + 1)
    u, v = torch.meshgrid(g, g, indexing="ij")
    points, faces = [], []
    for axis in range(3):
        for sign in (1.0, -1.0):
            p = torch.empty(n + 1, n + 1, 3)
            p[..., axis] = sign
            p[..., (axis + 1) % 3], p[..., (axis + 2) % 3] = u * sign, v
            base = sum(x.shape[0] for x in points)
            i = torch.arange((n + 1) ** 2).view(n + 1, n + 1) + base
            a, b, c, d = i[:-1, :-1], i[1:, :-1], i[:-1, 1:], i[1:, 1:]
            faces.append(torch.stack([torch.stack([a, b, d], -1), torch.stack([a, d, c], -1)], 2).reshape(-1, 3))
            points.append(p.reshape(-1, 3))
    points, faces = torch.cat(points), torch.cat(faces)
    key = torch.round(points * 4 * n).long()  # merge the vertices shared by neighbouring sides
    _, first, inverse = _unique_rows(key)
    points = points[first]
    return points / points.norm(dim=1, keepdim=True), inverse[faces]


def _unique_rows(key):
    uniq, inverse = torch.unique(key, dim=0, return_inverse=True)
    first = torch.full((uniq.shape[0],), key.shape[0], dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(key.shape[0]), "amin")
    return uniq, first, inverse


def body_like_mesh(vertices: int, frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A closed mesh with ~``vertices`` vertices (SMPL: 6890 / 13776 faces): a 1.8 m tall ellipsoid
    (frontal area ~0.57 m^2, like a person) with smooth bumps that move, turning over the clip."""
    n = max(1, round(math.sqrt(max(vertices - 2, 6) / 6)))
    unit, faces = cube_sphere(n)
    if (torch.linalg.cross(unit[faces[:, 1]] - unit[faces[:, 0]], unit[faces[:, 2]] - unit[faces[:, 0]])
            * unit[faces[:, 0]]).sum(1).mean() < 0:
        faces = faces[:, [0, 2, 1]]  # outward counter-clockwise
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(frames, 3, generator=g)[:, None, :] * 2 * math.pi
    ang = torch.atan2(unit[:, 0], unit[:, 2])[None, :, None]
    wave = torch.sin(3 * math.pi * unit[None, :, 1:2] + phase[..., :1]) * torch.cos(2 * ang + phase[..., 1:2])
    bump = 1 + 0.06 * wave
    shape = unit * torch.tensor([0.2, 0.9, 0.14]) * bump + torch.tensor([0.0, 0.9, 0.0])
    yaw = torch.linspace(0, math.pi / 2, frames)
    c, s = torch.cos(yaw), torch.sin(yaw)
    rot = torch.zeros(frames, 3, 3)
    rot[:, 0, 0], rot[:, 0, 2], rot[:, 1, 1], rot[:, 2, 0], rot[:, 2, 2] = c, s, 1, -s, c
    return shape @ rot.transpose(1, 2), faces


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=784)
    p.add_argument("--height", type=int, default=784)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--vertices", type=int, default=6890)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backend", choices=["auto", "torch", "nvdiffrast"], default="auto")
    p.add_argument("--no-cull", action="store_true", help="draw back faces too (rasterize's default)")
    args = p.parse_args(argv)
    load_pack()
    from mimo_pack.models.render import auto_camera, rasterize, resolve_backend

    device = torch.device(args.device)
    verts, faces = body_like_mesh(args.vertices, args.frames)
    camera = auto_camera(verts, args.width, args.height)
    verts, faces = verts.to(device), faces.to(device)
    features = torch.rand(verts.shape[1], args.channels, generator=torch.Generator().manual_seed(1)).to(device)
    backend = resolve_backend(args.backend, device)

    def run():
        out = rasterize(verts, faces, features, camera, backend=backend, cull_backfaces=not args.no_cull)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out

    _, mask = run()  # warm-up (nvdiffrast compiles its plugin on first use)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    result = {
        "width": args.width, "height": args.height, "frames": args.frames, "vertices": verts.shape[1],
        "faces": faces.shape[0], "channels": args.channels, "backend": backend, "device": str(device),
        "threads": torch.get_num_threads(), "culled": not args.no_cull,
        "coverage": round(float(mask.float().mean()), 4),
        "ms_per_frame": round(1000 * sec / args.frames, 2),
        "ms_per_frame_best": round(1000 * min(times) / args.frames, 2),
        "frames_per_second": round(args.frames / sec, 2),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
