"""Motion-code rendering (models/render): rasterizer coverage, fill rule, depth order,
perspective-correct interpolation, cameras, palettes and motion codes, and (CUDA only) agreement
of the PyTorch and nvdiffrast back ends."""

import importlib
import math
import os

import numpy as np
import pytest
import torch

from mimo_pack.models.render import (Camera, MotionCodeError, PaletteError, auto_camera, default_palette,
                                     interpolate, load_motion_codes, load_sdc_info, nvdiffrast_module,
                                     official_camera, rasterize, rasterize_fragments, render_motion,
                                     resolve_backend, save_motion_codes)
from mimo_pack.models.render.camera import OFFICIAL_FOCAL_SCALE


# ----------------------------------------------------------------------------- helpers
def pixel_camera(width=32, height=32, f=1.0, cx=0.0, cy=0.0, near=1e-3) -> Camera:
    """Identity extrinsics; with f=1, c=0 and depth 1 a vertex's x, y are its pixel coordinates."""
    return Camera(fx=f, fy=f, cx=cx, cy=cy, R=torch.eye(3), t=torch.zeros(3), width=width, height=height, near=near)


def icosphere(subdivisions: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit icosphere with outward counter-clockwise faces."""
    p = (1 + math.sqrt(5)) / 2
    verts = [(-1, p, 0), (1, p, 0), (-1, -p, 0), (1, -p, 0), (0, -1, p), (0, 1, p), (0, -1, -p), (0, 1, -p),
             (p, 0, -1), (p, 0, 1), (-p, 0, -1), (-p, 0, 1)]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
             (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5), (2, 4, 11),
             (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    verts = [np.array(v, dtype=np.float64) / np.linalg.norm(v) for v in verts]
    for _ in range(subdivisions):
        cache, new = {}, []

        def mid(a, b, cache=cache):
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = verts[a] + verts[b]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    v = torch.tensor(np.stack(verts), dtype=torch.float32)
    f = torch.tensor(faces, dtype=torch.long)
    normal = torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    assert ((normal * v[f[:, 0]]).sum(1) > 0).all()  # outward
    return v, f


def rotation_y(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float32)


def centres(width, height):
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64) + 0.5,
                            torch.arange(width, dtype=torch.float64) + 0.5, indexing="ij")
    return xs, ys


def edge_values(tri: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """[3,H,W] float64 edge functions of a screen triangle [3,2], positive inside."""
    xs, ys = centres(width, height)
    t = tri.double()
    out = []
    for i in range(3):
        a, b = t[(i + 1) % 3], t[(i + 2) % 3]
        out.append((a[0] - xs) * (b[1] - ys) - (b[0] - xs) * (a[1] - ys))
    e = torch.stack(out)
    area = (t[1, 0] - t[0, 0]) * (t[2, 1] - t[0, 1]) - (t[2, 0] - t[0, 0]) * (t[1, 1] - t[0, 1])
    return e * torch.sign(area)


def brute_force(vertices, faces, colours, camera):
    """Reference renderer: every pixel against every face at once in float64 (no fill rule:
    pixels within 1e-3 px of an edge are reported as ambiguous). Returns (face id, colour, ambiguous)."""
    xy, z = camera.project(vertices[None])
    xy, z = xy[0].double(), z[0].double()
    H, W = camera.height, camera.width
    xs, ys = centres(W, H)
    tri, tz = xy[faces], z[faces]  # [T,3,2], [T,3]
    a, b = tri[:, [1, 2, 0]], tri[:, [2, 0, 1]]  # edge of vertex i: j -> k
    e = ((a[..., 0, None, None] - xs) * (b[..., 1, None, None] - ys)
         - (b[..., 0, None, None] - xs) * (a[..., 1, None, None] - ys))  # [T,3,H,W]
    e = e * torch.sign(e.sum(1, keepdim=True))
    length = (a - b).norm(dim=-1)[..., None, None]
    inside = (e > 0).all(1)
    ambiguous = ((e.abs() / length < 1e-3).any(1) & (e / length > -1e-3).all(1)).any(0)
    w = e / tz[..., None, None]  # perspective: screen weights over depth
    depth = torch.where(inside, e.sum(1) / w.sum(1), torch.tensor(math.inf, dtype=torch.float64))
    best, fid = depth.min(0)
    covered = torch.isfinite(best)
    lam = (w / w.sum(1, keepdim=True)).gather(0, fid[None, None].expand(1, 3, H, W))[0]  # [3,H,W]
    col = (lam.permute(1, 2, 0)[..., None] * colours.double()[faces[fid]]).sum(2)
    return torch.where(covered, fid, -1), torch.where(covered[..., None], col, 0.0), ambiguous


# ----------------------------------------------------------------------------- coverage and fill rule
def test_triangle_coverage_matches_point_in_triangle():
    g = torch.Generator().manual_seed(0)
    W, H, frames = 40, 30, 24
    xy = torch.rand(frames, 3, 2, generator=g) * torch.tensor([W + 10.0, H + 10.0]) - 5.0  # some cross the border
    z = 1.0 + 2.0 * torch.rand(frames, 3, 1, generator=g)
    cam = pixel_camera(W, H, f=10.0, cx=3.0, cy=-2.0)
    world = torch.cat([(xy - torch.tensor([3.0, -2.0])) * z / 10.0, z], -1)  # both windings occur
    _, mask = rasterize(world, torch.tensor([[0, 1, 2]]), torch.ones(3, 1), cam, backend="torch")
    proj, _ = cam.project(world)
    checked = 0
    for f in range(frames):
        e = edge_values(proj[f], W, H)
        lengths = (proj[f][[1, 2, 0]] - proj[f][[2, 0, 1]]).double().norm(dim=1)
        clear = ((e.abs() / lengths[:, None, None]) > 1e-3).all(0)  # pixel centres not on an edge
        expected = (e > 0).all(0)
        assert torch.equal(mask[f][clear], expected[clear]), f"frame {f}"
        checked += int(clear.sum())
    assert checked > 0.99 * frames * W * H


def test_fill_rule_covers_every_pixel_of_a_tiling_exactly_once():
    # 2-px squares with corners on pixel centres, split both ways and wound both ways: every edge
    # passes through pixel centres, so only the top-left rule decides
    tris = []
    for i in range(4):
        for j in range(4):
            x, y = 2.5 + 2 * i, 2.5 + 2 * j
            a, b, c, d = (x, y), (x + 2, y), (x, y + 2), (x + 2, y + 2)
            pair = [(a, b, d), (a, d, c)] if (i + j) % 2 else [(a, b, c), (b, d, c)]
            if i % 2:
                pair = [(p, r, q) for p, q, r in pair]
            tris += pair
    world = torch.tensor([[[px, py, 1.0] for px, py in t] for t in tris])  # one triangle per frame
    _, mask = rasterize(world, torch.tensor([[0, 1, 2]]), torch.ones(3, 1), pixel_camera(16, 16), backend="torch")
    count = mask.sum(0)
    expected = torch.zeros(16, 16, dtype=torch.long)
    expected[2:10, 2:10] = 1  # centres 2.5..9.5: left/top edges in, right/bottom edges out
    assert torch.equal(count, expected)


def test_matches_brute_force_reference_and_chunking_is_invisible():
    v, f = icosphere(2)
    g = torch.Generator().manual_seed(3)
    colours = torch.rand(v.shape[0], 3, generator=g)
    verts = v @ rotation_y(0.7).T * torch.tensor([0.9, 0.7, 0.5]) + torch.tensor([0.1, -0.05, 3.0])
    cam = pixel_camera(64, 48, f=60.0, cx=32.0, cy=24.0)
    frags = rasterize_fragments(verts[None], f, cam, backend="torch")
    image = interpolate(colours, f, frags)[0]
    ref_id, ref_col, ambiguous = brute_force(verts, f, colours, cam)
    ok = ~ambiguous
    assert ok.float().mean() > 0.97
    assert torch.equal(frags.face_ids[0][ok], ref_id[ok])
    assert torch.allclose(image[ok].double(), ref_col[ok], atol=1e-4)
    tiny = rasterize_fragments(verts[None], f, cam, backend="torch", chunk_candidates=37)
    assert torch.equal(tiny.face_ids, frags.face_ids) and torch.equal(tiny.bary, frags.bary)


# ----------------------------------------------------------------------------- depth and interpolation
@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_nearer_face_wins_whatever_the_order(order):
    near = [[4.0, 4.0, 2.0], [28.0, 6.0, 2.0], [10.0, 28.0, 2.0]]
    far = [[2.0, 10.0, 5.0], [30.0, 20.0, 5.0], [20.0, 30.0, 5.0]]
    verts = torch.tensor([[p[0] * p[2], p[1] * p[2], p[2]] for p in near + far])  # pixel coords * depth
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])[list(order)]
    colours = torch.tensor([[1.0, 0, 0]] * 3 + [[0, 1.0, 0]] * 3)
    image, mask = rasterize(verts[None], faces, colours, pixel_camera(), backend="torch")
    xy = torch.tensor(near + far)[:, :2]
    both = (edge_values(xy[:3], 32, 32) > 0).all(0) & (edge_values(xy[3:], 32, 32) > 0).all(0)
    assert both.sum() > 20
    assert (image[0][both] == torch.tensor([1.0, 0, 0])).all()  # the near (red) face
    assert mask[0].sum() > both.sum()


def test_perspective_correct_interpolation():
    # a slanted triangle: depth 1 to 4, so screen-linear interpolation would be far off
    world = torch.tensor([[-1.0, -1.0, 1.0], [4.0, -1.5, 4.0], [-0.5, 2.5, 2.5]])
    values = torch.tensor([[0.0], [1.0], [0.25]])
    cam = pixel_camera(48, 48, f=20.0, cx=24.0, cy=24.0)
    image, mask = rasterize(world[None], torch.tensor([[0, 1, 2]]), values, cam, backend="torch")
    xs, ys = centres(48, 48)
    # analytic: intersect each pixel's ray with the triangle's plane, take 3D barycentrics there
    a, b, c = world.double()
    n = torch.linalg.cross(b - a, c - a)
    rays = torch.stack([(xs - 24.0) / 20.0, (ys - 24.0) / 20.0, torch.ones_like(xs)], -1)
    hit = rays * ((n @ a) / (rays @ n))[..., None]
    d = hit - a
    wb = (torch.linalg.cross(d, (c - a).expand_as(d)) @ n) / (n @ n)  # 3D barycentric weight of b
    wc = (torch.linalg.cross((b - a).expand_as(d), d) @ n) / (n @ n)  # and of c
    expected = wb * 1.0 + wc * 0.25
    m = mask[0]
    assert m.sum() > 100
    assert torch.allclose(image[0, ..., 0][m].double(), expected[m], atol=2e-5)
    # screen-space (affine) interpolation would differ a lot: the check is discriminative
    proj, _ = cam.project(world[None])
    e = edge_values(proj[0], 48, 48)
    affine = (e / e.sum(0)).permute(1, 2, 0) @ values.double()
    assert (affine[..., 0][m] - expected[m]).abs().max() > 0.1


def test_black_background_and_many_channels():
    v, f = icosphere(1)
    feats = torch.randn(v.shape[0], 7, generator=torch.Generator().manual_seed(1)) * 5  # raw codes, any range
    cam = pixel_camera(40, 40, f=60.0, cx=20.0, cy=20.0)
    verts = (v * 0.6 + torch.tensor([0.0, 0.0, 2.5]))[None]
    image, mask = rasterize(verts, f, feats, cam, backend="torch")
    assert image.shape == (1, 40, 40, 7) and mask.dtype == torch.bool
    assert (image[~mask] == 0).all() and 0.2 < mask.float().mean() < 0.8
    frags = rasterize_fragments(verts, f, cam, backend="torch")
    b, ids = frags.bary[frags.mask], frags.face_ids[frags.mask]
    manual = (b[..., None] * feats[f[ids]]).sum(1)
    assert torch.allclose(image[mask], manual, atol=1e-5)
    assert torch.allclose(b.sum(1), torch.ones(len(b)), atol=1e-5) and (b >= 0).all()
    per_frame = torch.stack([feats, -feats])  # [F,V,C] features
    two, _ = rasterize(verts.expand(2, -1, -1), f, per_frame, cam, backend="torch")
    assert torch.allclose(two[1], -two[0])


def test_drop_vertices_removes_every_touching_face():
    v, f = icosphere(2)
    verts = (v @ rotation_y(0.3).T + torch.tensor([0.0, 0.0, 3.0]))[None]
    colours = torch.rand(v.shape[0], 3, generator=torch.Generator().manual_seed(2))
    cam = pixel_camera(48, 48, f=40.0, cx=24.0, cy=24.0)
    drop = (v[:, 1] < -0.4).nonzero().squeeze(1)  # the bottom cap, like a hand
    touched = torch.isin(f, drop).any(1)
    frags = rasterize_fragments(verts, f, cam, backend="torch", drop_vertices=drop)
    ids = frags.face_ids[frags.mask]
    assert not touched[ids].any()
    image, mask = rasterize(verts, f, colours, cam, backend="torch", drop_vertices=drop)
    image2, mask2 = rasterize(verts, f[~touched], colours, cam, backend="torch")
    assert torch.equal(mask, mask2) and torch.equal(image, image2)
    _, full = rasterize(verts, f, colours, cam, backend="torch")
    assert mask.sum() < full.sum()


def test_backface_culling():
    v, f = icosphere(2)
    verts = (v + torch.tensor([0.0, 0.0, 3.0]))[None]
    colours = torch.rand(v.shape[0], 3, generator=torch.Generator().manual_seed(4))
    cam = pixel_camera(40, 40, f=40.0, cx=20.0, cy=20.0)
    a, ma = rasterize(verts, f, colours, cam, backend="torch")
    b, mb = rasterize(verts, f, colours, cam, backend="torch", cull_backfaces=True)
    assert torch.equal(ma, mb) and torch.allclose(a, b, atol=1e-6)  # closed mesh: the same picture
    inward = f[:, [0, 2, 1]]  # now only the inside of the far half faces the camera
    frags = rasterize_fragments(verts, inward, cam, backend="torch", cull_backfaces=True)
    assert torch.equal(frags.mask, ma)
    drawn = verts[0][f[frags.face_ids[frags.mask]]]  # [n,3,3], outward winding
    outward = torch.linalg.cross(drawn[:, 1] - drawn[:, 0], drawn[:, 2] - drawn[:, 0])
    assert ((outward * drawn[:, 0]).sum(1) > 0).all()  # all turned away from the camera at the origin
    # one triangle: counter-clockwise as the camera sees it (y up) is the front
    tri = torch.tensor([[[4.0, 12.0, 1.0], [12.0, 12.0, 1.0], [8.0, 4.0, 1.0]]])  # pixel coords, y down
    _, front = rasterize(tri, torch.tensor([[0, 1, 2]]), torch.ones(3, 1), pixel_camera(16, 16), cull_backfaces=True)
    _, back = rasterize(tri, torch.tensor([[0, 2, 1]]), torch.ones(3, 1), pixel_camera(16, 16), cull_backfaces=True)
    assert front.any() and not back.any()


# ----------------------------------------------------------------------------- cameras
def motion_clip(frames=6, seed=0):
    """A body-sized point cloud walking along +X and turning: [F,V,3]."""
    g = torch.Generator().manual_seed(seed)
    body = (torch.rand(300, 3, generator=g) - 0.5) * torch.tensor([0.5, 1.7, 0.3]) + torch.tensor([0, 0.85, 0])
    return torch.stack([body @ rotation_y(0.3 * i).T + torch.tensor([0.2 * i, 0.0, 0.1 * i]) for i in range(frames)])


@pytest.mark.parametrize("size,yaw,elev,fov", [((64, 64), 0, 0, 45), ((96, 48), 40, 15, 30), ((48, 80), -120, -20, 60)])
def test_auto_camera_frames_the_whole_motion_with_the_margin(size, yaw, elev, fov):
    W, H = size
    clip = motion_clip()
    cam = auto_camera(clip, W, H, fov_deg=fov, yaw_deg=yaw, elevation_deg=elev, margin=0.1)
    xy, z = cam.project(clip)
    m = 0.1 * min(W, H)
    assert (z > 0).all()
    assert (xy[..., 0] >= m - 1e-3).all() and (xy[..., 0] <= W - m + 1e-3).all()
    assert (xy[..., 1] >= m - 1e-3).all() and (xy[..., 1] <= H - m + 1e-3).all()
    slack = torch.stack([xy[..., 0] - m, W - m - xy[..., 0], xy[..., 1] - m, H - m - xy[..., 1]]).min()
    assert slack < 0.05  # as close as the margin allows: some vertex touches it
    assert math.isclose(cam.fy, (H / 2) / math.tan(math.radians(fov) / 2), rel_tol=1e-6)
    assert (cam.cx, cam.cy) == (W / 2, H / 2)


def test_auto_camera_yaw_and_elevation_semantics():
    clip = motion_clip(frames=1)
    target = (clip.reshape(-1, 3).min(0).values + clip.reshape(-1, 3).max(0).values) / 2
    probe = lambda offset: target + torch.tensor(offset)
    points = torch.stack([target, probe([0, 0, 0.3]), probe([0.3, 0, 0]), probe([0, 0.3, 0])])[None]

    front = auto_camera(clip, 64, 64)
    xy, z = front.project(points)
    assert front.position()[2] > target[2] + 1 and abs(float(front.position()[0] - target[0])) < 1e-5
    assert torch.allclose(xy[0, 0], torch.tensor([32.0, 32.0]), atol=1e-3)  # target at the centre
    assert abs(float(xy[0, 1, 0]) - 32) < 1e-3 and z[0, 1] < z[0, 0]  # in front of the body: centre column, nearer
    assert xy[0, 2, 0] > 32  # +X (the body's left) appears on the image's right, as facing a person
    assert xy[0, 3, 1] < 32  # up is up

    side = auto_camera(clip, 64, 64, yaw_deg=90)
    xy, z = side.project(points)
    assert side.position()[0] > target[0] + 1
    assert abs(float(xy[0, 2, 0]) - 32) < 1e-3 and z[0, 2] < z[0, 0]  # the body's left side faces it
    assert xy[0, 1, 0] < 32  # the body's front is on the left

    high = auto_camera(clip, 64, 64, elevation_deg=30)
    xy, _ = high.project(points)
    assert high.position()[1] > target[1] + 0.5 and torch.allclose(xy[0, 0], torch.tensor([32.0, 32.0]), atol=1e-3)
    assert high.R[2, 1] < 0  # looks down

    fixed = auto_camera(clip, 64, 64, distance=7.5, focal=100.0)
    assert math.isclose(float((fixed.position() - target).norm()), 7.5, rel_tol=1e-5)
    assert fixed.fx == fixed.fy == 100.0


@pytest.mark.parametrize("W,H", [(784, 784), (1280, 720), (512, 768)])
def test_official_camera_intrinsics(W, H):
    clip = motion_clip()
    cam = official_camera(clip, W, H)
    f = 5000 / 256 * max(W, H)
    assert OFFICIAL_FOCAL_SCALE * max(W, H) == f
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (f, f, W / 2, H / 2)
    xy, z = cam.project(clip)
    assert (xy[..., 0] > 0).all() and (xy[..., 0] < W).all() and (xy[..., 1] > 0).all() and (xy[..., 1] < H).all()
    assert z.min() > 20  # the narrow official lens puts the camera tens of metres away


def test_per_frame_camera_matches_static_frames():
    v, f = icosphere(1)
    verts = (v * 0.5 + torch.tensor([0.0, 0.0, 3.0]))[None].expand(3, -1, -1)
    fx = torch.tensor([20.0, 30.0, 40.0])
    cams = Camera(fx=fx, fy=fx, cx=16.0, cy=16.0, R=torch.eye(3), t=torch.zeros(3), width=32, height=32)
    images, _ = rasterize(verts, f, torch.ones(v.shape[0], 1), cams, backend="torch", frame_chunk=2)
    for i in range(3):
        single = Camera(fx=float(fx[i]), fy=float(fx[i]), cx=16.0, cy=16.0, R=torch.eye(3), t=torch.zeros(3),
                        width=32, height=32)
        one, _ = rasterize(verts[:1], f, torch.ones(v.shape[0], 1), single, backend="torch")
        assert torch.equal(images[i], one[0])


# ----------------------------------------------------------------------------- render_motion and back ends
def test_render_motion_end_to_end():
    v, f = icosphere(2)
    clip = torch.stack([v @ rotation_y(0.2 * i).T * torch.tensor([0.25, 0.9, 0.15]) + torch.tensor([0, 0.9, 0])
                        for i in range(3)])
    colours = default_palette(v)
    images, masks = render_motion(clip, f, colours, 48, 64, camera_mode="auto", yaw_deg=20)
    assert images.shape == (3, 64, 48, 3) and masks.shape == (3, 64, 48) and masks.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1 and set(masks.unique().tolist()) <= {0.0, 1.0}
    _, om = render_motion(clip, f, colours, 48, 64, camera_mode="official")
    assert om.sum() > 0 and om.sum() < om.numel()
    aa, am = render_motion(clip, f, colours, 48, 64, supersample=2)
    assert ((am > 0) & (am < 1)).any()  # fractional coverage at the silhouette
    assert (aa[am == 0] == 0).all()
    with pytest.raises(ValueError, match="camera_mode"):
        render_motion(clip, f, colours, 48, 64, camera_mode="orbit")


def test_backend_selection():
    assert resolve_backend("auto", "cpu") == "torch"
    assert resolve_backend("torch", "cpu") == "torch"
    with pytest.raises(RuntimeError, match="CUDA"):
        resolve_backend("nvdiffrast", "cpu")
    with pytest.raises(ValueError):
        resolve_backend("opengl", "cpu")


NVDR_SKIP = (
    "needs CUDA and nvdiffrast (optional, non-commercial licence; e.g. pip install diffrp-nvdiffrast): "
    f"CUDA available: {torch.cuda.is_available()}, nvdiffrast importable: {nvdiffrast_module() is not None}"
)


@pytest.mark.skipif(not (torch.cuda.is_available() and nvdiffrast_module() is not None), reason=NVDR_SKIP)
def test_nvdiffrast_agrees_with_torch_backend():
    # nvdiffrast snaps vertices to 1/16 px and computes barycentrics in float32 clip space, so a
    # few silhouette pixels and a few colours at tiny triangles may differ: hence 1024^2 and the
    # per-pixel fractions below rather than exact equality
    v, f = icosphere(3)  # 642 vertices, 1280 faces
    g = torch.Generator().manual_seed(5)
    clip = torch.stack([v @ rotation_y(0.4 * i).T * torch.tensor([0.3, 0.9, 0.2]) + torch.tensor([0, 0.9, 0])
                        for i in range(4)])
    clip = clip + 0.005 * torch.randn(clip.shape, generator=g)  # not convex: small folds
    colours = torch.rand(v.shape[0], 3, generator=g)
    cam = auto_camera(clip, 1024, 1024, yaw_deg=30, elevation_deg=10)
    clip, f, colours = clip.cuda(), f.cuda(), colours.cuda()
    for cull in (False, True):
        img_t, mask_t = rasterize(clip, f, colours, cam, backend="torch", cull_backfaces=cull)
        img_n, mask_n = rasterize(clip, f, colours, cam, backend="nvdiffrast", cull_backfaces=cull)
        silhouette = (mask_t == mask_n).float().mean().item()
        assert silhouette >= 0.9999, silhouette
        both = mask_t & mask_n
        diff = (img_t - img_n).abs().amax(-1)[both]
        assert (diff <= 1e-3).float().mean().item() >= 0.9999, diff.max().item()
        assert (img_t[~mask_t] == 0).all() and (img_n[~mask_n] == 0).all()
        ft = rasterize_fragments(clip, f, cam, backend="torch", cull_backfaces=cull)
        fn = rasterize_fragments(clip, f, cam, backend="nvdiffrast", cull_backfaces=cull)
        assert torch.equal(ft.mask, mask_t) and torch.equal(fn.mask, mask_n)
        same = (ft.face_ids == fn.face_ids)[both].float().mean().item()
        assert same >= 0.99, same


class _ReferenceNvdiffrast:
    """Stand-in for ``nvdiffrast.torch`` following its documented contract (clip-space input,
    output row 0 at ndc y = -1, pixel centres, rast = (u, v, z/w, triangle id + 1) with u, v the
    perspective-correct weights of the first two vertices; interpolate = u a0 + v a1 + (1-u-v) a2),
    to check our glue (clip-space conversion, orientation, per-frame face disabling) without CUDA."""

    @staticmethod
    def rasterize(ctx, pos, tri, resolution):
        B, H, W = pos.shape[0], *resolution
        ys, xs = torch.meshgrid((torch.arange(H) + 0.5) * 2 / H - 1, (torch.arange(W) + 0.5) * 2 / W - 1,
                                indexing="ij")
        out = torch.zeros(B, H, W, 4)
        depth = torch.full((B, H, W), math.inf)
        for b in range(B):
            for t, (i0, i1, i2) in enumerate(tri.long().tolist()):
                p = pos[b, [i0, i1, i2]].double()
                if (p[:, 3] <= 0).any() or (p[:, :3].abs() > p[:, 3:]).any():
                    continue  # the glue never needs clipping: drawn faces lie inside the frustum
                ndc = p[:, :2] / p[:, 3:]
                d1, d2 = ndc[1] - ndc[0], ndc[2] - ndc[0]
                area = d1[0] * d2[1] - d1[1] * d2[0]
                if area == 0:
                    continue
                qx, qy = xs.double() - ndc[0, 0], ys.double() - ndc[0, 1]
                s1 = (qx * d2[1] - qy * d2[0]) / area
                s2 = (d1[0] * qy - d1[1] * qx) / area
                s0 = 1 - s1 - s2
                inside = (s0 >= 0) & (s1 >= 0) & (s2 >= 0)
                w = torch.stack([s0, s1, s2]) / p[:, 3, None, None]
                lam = w / w.sum(0)
                z = (torch.stack([s0, s1, s2]) * (p[:, 2] / p[:, 3])[:, None, None]).sum(0)
                win = inside & (z < depth[b])
                depth[b] = torch.where(win, z, depth[b])
                vals = torch.stack([lam[0], lam[1], z, torch.full_like(z, t + 1.0)], -1).float()
                out[b] = torch.where(win[..., None], vals, out[b])
        return out, None

    @staticmethod
    def interpolate(attr, rast, tri):
        tid = rast[..., 3].long() - 1
        v = tri.long()[tid.clamp_min(0)]  # [B,H,W,3]
        a = attr[0][v]  # [B,H,W,3,C]
        u, w = rast[..., 0:1], rast[..., 1:2]
        out = u * a[..., 0, :] + w * a[..., 1, :] + (1 - u - w) * a[..., 2, :]
        return torch.where((tid >= 0)[..., None], out, torch.zeros_like(out)), None


def test_nvdiffrast_glue_against_a_reference_stand_in(monkeypatch):
    rast_module = importlib.import_module("mimo_pack.models.render.rasterize")  # the module, not the function
    monkeypatch.setattr(rast_module, "_nvdiffrast_context", lambda device: (_ReferenceNvdiffrast, None))
    v, f = icosphere(1)
    clip = torch.stack([v @ rotation_y(0.5 * i).T * torch.tensor([0.5, 0.9, 0.4]) for i in range(2)])
    clip[1, :, 2] -= 0.3  # frame 1 a bit nearer
    cam = auto_camera(clip, 40, 32, yaw_deg=20, elevation_deg=10, margin=0.0)
    for cull in (False, True):
        tri_xy, tri_z, ok = rast_module._screen_triangles(clip, f, cam, cull)
        ok[0, :10] = False  # faces disabled in one frame only
        pix_t, face_t, bary_t = rast_module._visible_torch(tri_xy, tri_z, ok, 32, 40, 1 << 20)
        pix_n, face_n, bary_n = rast_module._visible_nvdiffrast(tri_xy, tri_z, ok, 32, 40)
        assert torch.equal(pix_t, pix_n) and torch.equal(face_t, face_n)
        assert torch.allclose(bary_t, bary_n, atol=1e-4)


# ----------------------------------------------------------------------------- palettes and codes
@pytest.mark.parametrize("kind", ["uint8_rgba", "uint8_rgb", "float01", "float255"])
def test_load_sdc_info(tmp_path, kind):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6890, 3), dtype=np.uint8)
    if kind == "uint8_rgba":
        data = np.concatenate([rgb, np.full((6890, 1), 255, np.uint8)], 1)
    elif kind == "uint8_rgb":
        data = rgb
    elif kind == "float01":
        data = rgb.astype(np.float32) / 255
    else:
        data = rgb.astype(np.float64)
    path = tmp_path / "sdc_info.npy"
    np.save(path, {"smpl": data, "other": np.zeros(3)})
    colours = load_sdc_info(path)
    assert colours.shape == (6890, 3) and colours.dtype == torch.float32
    assert torch.allclose(colours, torch.from_numpy(rgb.astype(np.float32) / 255), atol=1e-6)


def test_load_sdc_info_rejects_bad_content(tmp_path):
    np.save(tmp_path / "few.npy", {"smpl": np.zeros((100, 4), np.uint8)})
    with pytest.raises(PaletteError, match="6890"):
        load_sdc_info(tmp_path / "few.npy")
    np.save(tmp_path / "nokey.npy", {"smplx": np.zeros((6890, 4), np.uint8)})
    with pytest.raises(PaletteError, match="'smpl'"):
        load_sdc_info(tmp_path / "nokey.npy")
    np.save(tmp_path / "plain.npy", np.zeros((6890, 3), np.uint8))  # a bare array is fine
    assert load_sdc_info(tmp_path / "plain.npy").shape == (6890, 3)
    (tmp_path / "junk.npy").write_bytes(b"not an npy file")
    with pytest.raises(PaletteError):
        load_sdc_info(tmp_path / "junk.npy")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_load_sdc_info_refuses_malicious_pickle(tmp_path):
    marker = str(tmp_path / "pwned")
    path = tmp_path / "sdc_info.npy"
    np.save(path, np.array({"smpl": _Payload(marker)}, dtype=object), allow_pickle=True)
    with pytest.raises(PaletteError, match="refusing to load"):
        load_sdc_info(path)
    assert not os.path.exists(marker)
    np.load(path, allow_pickle=True)  # the file is really live: numpy's own loader runs it
    assert os.path.exists(marker)


def test_default_palette():
    v, _ = icosphere(2)
    rest = v * torch.tensor([0.3, 0.9, 0.2]) + torch.tensor([0.0, 0.9, 0.0])
    pal = default_palette(rest)
    assert pal.shape == rest.shape and torch.equal(pal, default_palette(rest.clone()))
    assert torch.allclose(pal.min(0).values, torch.zeros(3)) and torch.allclose(pal.max(0).values, torch.ones(3))
    i, j = rest[:, 0].argmin(), rest[:, 1].argmax()
    assert pal[i, 0] == 0 and pal[j, 1] == 1  # x -> R, y -> G


def test_motion_codes(tmp_path):
    from safetensors.torch import save_file

    codes = torch.randn(6890, 16)
    save_motion_codes(tmp_path / "codes.safetensors", codes)
    assert torch.equal(load_motion_codes(tmp_path / "codes.safetensors", num_vertices=6890), codes)
    save_file({"latent": codes[:, :3].contiguous()}, str(tmp_path / "one.safetensors"))
    assert load_motion_codes(tmp_path / "one.safetensors").shape == (6890, 3)
    with pytest.raises(MotionCodeError, match="6890 vertices but the body has 10475"):
        load_motion_codes(tmp_path / "codes.safetensors", num_vertices=10475)
    save_file({"a": codes, "b": codes.clone()}, str(tmp_path / "two.safetensors"))
    with pytest.raises(MotionCodeError, match="'codes'"):
        load_motion_codes(tmp_path / "two.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(MotionCodeError):
        load_motion_codes(tmp_path / "bad.safetensors")
    # codes rasterize into a C-channel map
    v, f = icosphere(1)
    feats = torch.randn(v.shape[0], 16)
    image, _ = rasterize((v + torch.tensor([0, 0, 3.0]))[None], f, feats, pixel_camera(16, 16, 16.0, 8.0, 8.0))
    assert image.shape == (1, 16, 16, 16)


def test_follow_camera_keeps_the_pelvis_centred_at_one_size():
    from mimo_pack.models.render import follow_camera, make_camera

    frames = 24
    rng = torch.Generator().manual_seed(0)
    body = torch.rand(200, 3, generator=rng) * torch.tensor([0.5, 1.7, 0.3]) - torch.tensor([0.25, 0.85, 0.15])
    path = torch.stack([torch.linspace(0, 1.8, frames), torch.zeros(frames), torch.linspace(0, 0.4, frames)], -1)
    verts = body[None] + path[:, None]
    pelvis = path.clone()
    static = make_camera(verts, 128, 128, "auto")
    follow = make_camera(verts, 128, 128, "follow", pelvis=pelvis, follow_smooth_frames=0.0)
    xy, depth = follow.project(pelvis[:, None])
    assert (xy[:, 0, 0] - 64).abs().max() < 1e-3 and (depth > 0).all()  # centred left-right every frame
    assert float(follow.fx) == float(static.fx)  # same focal length
    inside, _ = follow.project(verts)
    assert (inside >= 0).all() and (inside <= 128).all()  # every vertex of every frame in the picture
    height = lambda cam: (cam.project(verts)[0][..., 1].amax(1) - cam.project(verts)[0][..., 1].amin(1))  # noqa: E731
    assert float(height(follow).min()) > 1.25 * float(height(static).max())  # the figure is much larger
    smooth = follow_camera(verts, pelvis + torch.randn(frames, 3, generator=rng) * 0.02, 128, 128, smooth_frames=3)
    eye = smooth.position()
    assert float(eye.diff(dim=0).norm(dim=-1).max()) < 0.2  # a smoothed path, no jumps
    with pytest.raises(ValueError, match="pelvis"):
        make_camera(verts, 128, 128, "follow")
