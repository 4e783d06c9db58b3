"""Triangle rasterization of per-vertex features (motion codes / colours), like the official
renderer (pyrender, FLAT): no lighting, features interpolated perspective-correctly across each
face, nearest face wins, zero (black) background, no antialiasing.

Conventions shared by both back ends: pixel (i, j) is sampled at its centre (i + 0.5, j + 0.5) in
the camera's continuous pixel coordinates, row 0 is the top of the image, faces with a vertex
nearer than ``camera.near`` are not drawn (no near-plane clipping), and a pixel centre exactly on
an edge belongs to the face for which that edge is a top or left edge (the GL/D3D fill rule).

Back ends: "torch" (pure PyTorch, CPU or GPU) and "nvdiffrast" (CUDA, optional: only used when
the user installed it; its licence is non-commercial).
"""

import logging
from dataclasses import dataclass

import torch

from .camera import Camera

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "nvdiffrast")
FRAME_CHUNK = {"cpu": 2, "cuda": 16}  # frames rasterized together (CPU: a small z-buffer stays in cache)
_OUTSIDE_BIAS = 1e-30  # "strictly positive" for non top-left edges; far below any nonzero edge value


@dataclass
class Fragments:
    """What is visible at each pixel. face_ids: [F,H,W] long, index into the ``faces`` given to
    the rasterizer, -1 where nothing is drawn. bary: [F,H,W,3] perspective-correct barycentric
    weights of the face's three vertices (zero on the background)."""

    face_ids: torch.Tensor
    bary: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        return self.face_ids >= 0


# ----------------------------------------------------------------------------- shared set-up
def faces_without(faces: torch.Tensor, drop_vertices) -> torch.Tensor:
    """Indices of the faces that touch none of ``drop_vertices`` ([T'] long)."""
    faces = torch.as_tensor(faces)
    keep = torch.ones(faces.shape[0], dtype=torch.bool, device=faces.device)
    if drop_vertices is not None:
        drop = torch.as_tensor(drop_vertices, dtype=torch.long, device=faces.device).reshape(-1)
        if drop.numel():
            if drop.min() < 0:
                raise ValueError("drop_vertices must be vertex indices >= 0")
            hit = torch.zeros(int(max(faces.max().item(), drop.max().item())) + 1, dtype=torch.bool,
                              device=faces.device)
            hit[drop] = True
            keep = ~hit[faces.long()].any(1)
    return keep.nonzero().squeeze(1)


def _screen_triangles(vertices: torch.Tensor, faces: torch.Tensor, camera: Camera, cull_backfaces: bool):
    """Per frame and face: pixel xy [F,T,3,2], depth [F,T,3], drawable [F,T]."""
    xy, z = camera.project(vertices.float())
    tri_xy, tri_z = xy[:, faces], z[:, faces]
    e1, e2 = tri_xy[:, :, 1] - tri_xy[:, :, 0], tri_xy[:, :, 2] - tri_xy[:, :, 0]
    area2 = e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]  # pixel axes (y down)
    ok = (tri_z > camera.near).all(-1) & (area2 != 0) & torch.isfinite(tri_xy).all(-1).all(-1)
    if cull_backfaces:  # front = counter-clockwise as the camera sees it, i.e. clockwise with y down
        ok &= area2 < 0
    return tri_xy, tri_z, ok


def _check_inputs(vertices, faces, camera):
    if vertices.dim() == 2:
        vertices = vertices.unsqueeze(0)
    if vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be [F,V,3], got {tuple(vertices.shape)}")
    faces = torch.as_tensor(faces, device=vertices.device).long()
    if faces.dim() != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be [T,3], got {tuple(faces.shape)}")
    if faces.numel() and (faces.min() < 0 or faces.max() >= vertices.shape[1]):
        raise ValueError(f"faces index vertices outside 0..{vertices.shape[1] - 1}")
    if camera.width <= 0 or camera.height <= 0:
        raise ValueError(f"image size must be positive, got {camera.width}x{camera.height}")
    return vertices, faces


# ----------------------------------------------------------------------------- torch back end
# Back ends return the visible surface sparsely: (pixel index into F*H*W [n], face index into the
# triangles they were given [n], perspective-correct barycentrics [n,3]), covered pixels only.

def _visible_torch(tri_xy, tri_z, ok, height: int, width: int, chunk: int):
    """Enumerate the pixel centres in every face's bounding box (in chunks of ``chunk``
    candidates), z-buffer one packed (depth, face) key per pixel, then compute barycentrics only
    for the winning face of each covered pixel."""
    frames = ok.shape[0]
    device = tri_xy.device
    lo, hi = tri_xy.amin(2), tri_xy.amax(2)  # [F,T,2]
    x0 = torch.ceil(lo[..., 0] - 0.5).clamp(min=0)
    x1 = torch.floor(hi[..., 0] - 0.5).clamp(max=width - 1)
    y0 = torch.ceil(lo[..., 1] - 0.5).clamp(min=0)
    y1 = torch.floor(hi[..., 1] - 0.5).clamp(max=height - 1)
    sel = (ok & (x1 >= x0) & (y1 >= y0)).nonzero()  # [N,2] (frame, face)
    if sel.shape[0] == 0:
        return _empty(device)
    fr, fa = sel[:, 0], sel[:, 1]
    x0, y0 = x0[fr, fa], y0[fr, fa]
    bw, bh = x1[fr, fa] - x0 + 1, y1[fr, fa] - y0 + 1
    p = tri_xy[fr, fa] - torch.stack([x0 + 0.5, y0 + 0.5], -1)[:, None, :]  # local: first pixel centre at 0
    # edge function of vertex i (opposite edge j->k): e_i(q) = A_i qx + B_i qy + C_i (small local numbers)
    j, k = p[:, [1, 2, 0]], p[:, [2, 0, 1]]
    A = j[..., 1] - k[..., 1]
    B = k[..., 0] - j[..., 0]
    C = j[..., 0] * k[..., 1] - k[..., 0] * j[..., 1]
    area2 = C.sum(1, keepdim=True)  # e_0 + e_1 + e_2 is constant: twice the signed area
    sign = torch.sign(area2)
    A, B, C = A * sign, B * sign, C * sign  # inside: every e_i >= 0, whatever the winding
    top_left = (A > 0) | ((A == 0) & (B > 0))  # inward normal points right, or down on a horizontal edge
    bias = torch.where(top_left, 0.0, _OUTSIDE_BIAS)  # e >= bias: ">= 0" on top/left edges, "> 0" else
    w = 1.0 / (area2.abs() * tri_z[fr, fa])  # inverse depth = sum_i e_i / (|area2| z_i), affine in q
    depth = torch.stack([(A * w).sum(1), (B * w).sum(1), (C * w).sum(1)])  # [3,N]
    counts = (bw * bh).long()
    base = fr * (height * width) + y0.long() * width + x0.long()
    table = torch.cat([A.T, B.T, C.T, bias.T, bw[None], torch.zeros_like(bw)[None]]).contiguous()  # [14,N]
    zbuf = torch.full((frames * height * width,), -1, dtype=torch.long, device=device)
    _scatter_depth(zbuf, table, depth.contiguous(), base, counts, width, chunk)
    pix = (zbuf >= 0).nonzero().squeeze(1)
    g = zbuf[pix] & 0xFFFFFFFF
    fr, fa = sel[g, 0], sel[g, 1]
    q = torch.stack([(pix % width).float() + 0.5, ((pix // width) % height).float() + 0.5], -1)
    return pix, fa, _perspective_bary(tri_xy[fr, fa], tri_z[fr, fa], q)


def _scatter_depth(zbuf, table, depth, base, counts, width: int, chunk: int):
    """zbuf[pixel] = max over covering faces of (inverse depth bits << 32 | face's row in table).
    Positive float32 bit patterns order like the floats: the nearest face wins, ties go to the
    larger row. table rows: A(3) B(3) C(3) bias(3) box width, box start within the chunk."""
    ends = torch.cumsum(counts, 0)
    ends_cpu = ends.cpu()
    device = table.device
    big_boxes = bool(counts.max() >= (1 << 22))
    a, n_faces = 0, counts.shape[0]
    while a < n_faces:
        first = int(ends_cpu[a - 1]) if a else 0
        b = max(int(torch.searchsorted(ends_cpu, first + chunk, right=True)), a + 1)
        n = int(ends_cpu[b - 1]) - first
        table[13, a:b] = (ends[a:b] - counts[a:b] - first).float()  # exact: below 2^24
        face = torch.repeat_interleave(torch.arange(a, b, device=device), counts[a:b], output_size=n)
        t = table.index_select(1, face)
        local = torch.arange(n, device=device, dtype=torch.float32).sub_(t[13])  # index in the face's box
        ly = (local + 0.5).div_(t[12]).floor_()
        lx = torch.addcmul(local, ly, t[12], value=-1.0)
        if big_boxes:  # float division may be one off for boxes over 2^22 pixels
            ly += (lx >= t[12]).float() - (lx < 0).float()
            lx = torch.addcmul(local, ly, t[12], value=-1.0)
        inside = None
        for i in range(3):
            e = torch.addcmul(t[6 + i], t[i], lx).addcmul_(t[3 + i], ly)
            inside = e >= t[9 + i] if inside is None else inside.logical_and_(e >= t[9 + i])
        idx = inside.nonzero().squeeze(1)
        lx, ly, face = lx[idx], ly[idx], face[idx]
        d = depth.index_select(1, face)
        inv_z = torch.addcmul(d[2], d[0], lx).addcmul_(d[1], ly).clamp_min_(0)
        pix = base[face] + torch.addcmul(lx, ly, torch.tensor(float(width), device=device)).long()
        key = (inv_z.view(torch.int32).long() << 32) | face
        zbuf.scatter_reduce_(0, pix, key, "amax")
        a = b


def _perspective_bary(p: torch.Tensor, z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Perspective-correct barycentrics of points q [n,2] in screen triangles p [n,3,2], depths z [n,3]."""
    d1, d2, dq = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], q - p[:, 0]
    area2 = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    b1 = (dq[:, 0] * d2[:, 1] - dq[:, 1] * d2[:, 0]) / area2
    b2 = (d1[:, 0] * dq[:, 1] - d1[:, 1] * dq[:, 0]) / area2
    b = torch.stack([1 - b1 - b2, b1, b2], 1).clamp_min(0) / z  # screen-space weights over depth
    return b / b.sum(1, keepdim=True)


def _empty(device):
    return (torch.zeros(0, dtype=torch.long, device=device), torch.zeros(0, dtype=torch.long, device=device),
            torch.zeros(0, 3, device=device))


# ----------------------------------------------------------------------------- nvdiffrast back end
_NVDR = {}


def nvdiffrast_module():
    """``nvdiffrast.torch`` if it can be imported, else None (cached)."""
    if "module" not in _NVDR:
        try:
            import nvdiffrast.torch as dr
        except Exception as e:  # not installed, or broken
            dr, _NVDR["error"] = None, e
        _NVDR["module"] = dr
    return _NVDR["module"]


def _nvdiffrast_context(device: torch.device):
    dr = nvdiffrast_module()
    key = ("ctx", device.index if device.index is not None else torch.cuda.current_device())
    if key not in _NVDR:
        try:
            _NVDR[key] = dr.RasterizeCudaContext(device=device)
        except Exception as cuda_error:
            try:
                _NVDR[key] = dr.RasterizeGLContext(device=device)
            except Exception:
                raise cuda_error
    return dr, _NVDR[key]


def _visible_nvdiffrast(tri_xy, tri_z, ok, height: int, width: int):
    """Same contract as ``_visible_torch``. Vertices are unshared (three per face) so that faces
    dropped in some frames only (near plane, culling) can be disabled per frame."""
    dr, ctx = _nvdiffrast_context(tri_xy.device)
    frames, tris = ok.shape
    zs = tri_z[ok]
    if zs.numel() == 0:
        return _empty(tri_xy.device)
    near, far = float(zs.min()) * 0.5, float(zs.max()) * 2.0  # every drawn vertex well inside: no clipping
    z = tri_z
    ndc_x = 2.0 * tri_xy[..., 0] / width - 1.0
    ndc_y = 2.0 * tri_xy[..., 1] / height - 1.0  # output row 0 is ndc y = -1: our top row, no flip
    clip_z = (far + near) / (far - near) * z - 2.0 * far * near / (far - near)
    pos = torch.stack([ndc_x * z, ndc_y * z, clip_z, z], -1)  # [F,T,3,4]
    off = torch.tensor([2.0, 2.0, 0.0, 1.0], device=pos.device)  # outside and zero-area: never drawn
    pos = torch.where(ok[..., None, None], pos, off).reshape(frames, tris * 3, 4).float().contiguous()
    tri = torch.arange(tris * 3, dtype=torch.int32, device=pos.device).view(tris, 3)
    rast, _ = dr.rasterize(ctx, pos, tri, resolution=[height, width])
    corner = torch.eye(3, device=pos.device).repeat(tris, 1)[None].contiguous()  # one-hot per face corner
    bary, _ = dr.interpolate(corner, rast, tri)  # = perspective-correct barycentrics, in our vertex order
    tid = rast[..., 3].reshape(-1)
    pix = (tid > 0).nonzero().squeeze(1)
    return pix, tid[pix].round().long() - 1, bary.reshape(-1, 3)[pix]


# ----------------------------------------------------------------------------- public API
def resolve_backend(backend: str, device) -> str:
    """"torch" or "nvdiffrast" for ``backend`` on ``device`` (raises when nvdiffrast is asked for
    but cannot run). "auto" picks nvdiffrast on CUDA when it imports and has not failed before."""
    device = torch.device(device)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return "torch"
    usable = device.type == "cuda" and nvdiffrast_module() is not None and not _NVDR.get("failed")
    if backend == "nvdiffrast" and not usable:
        why = ("it needs a CUDA device" if device.type != "cuda"
               else f"it could not be used ({_NVDR.get('failed') or _NVDR.get('error')})")
        raise RuntimeError(f"nvdiffrast back end requested but {why}; use backend='torch'")
    return "nvdiffrast" if usable else "torch"


def _visible(vertices, faces, camera, backend, drop_vertices, cull_backfaces, chunk_candidates):
    """(pixel [n], face index into ``faces`` [n], barycentrics [n,3]) for frames of ``vertices``."""
    kept = faces_without(faces, drop_vertices)
    tri_xy, tri_z, ok = _screen_triangles(vertices, faces[kept], camera, cull_backfaces)
    H, W = camera.height, camera.width
    name = resolve_backend(backend, vertices.device)
    if name == "nvdiffrast":
        try:
            pix, face, bary = _visible_nvdiffrast(tri_xy, tri_z, ok, H, W)
            return pix, kept[face], bary
        except Exception as e:
            if backend == "nvdiffrast":
                raise
            _NVDR["failed"] = e
            log.warning("nvdiffrast failed (%s); using the PyTorch rasterizer", e)
    chunk = chunk_candidates or (1 << 23 if vertices.is_cuda else 1 << 21)
    pix, face, bary = _visible_torch(tri_xy, tri_z, ok, H, W, chunk)
    return pix, kept[face], bary


def rasterize_fragments(vertices: torch.Tensor, faces: torch.Tensor, camera: Camera, backend: str = "auto",
                        drop_vertices=None, cull_backfaces: bool = False,
                        chunk_candidates: int | None = None) -> Fragments:
    """Visible face and perspective-correct barycentrics per pixel for world-space ``vertices``
    [F,V,3] and ``faces`` [T,3] (face_ids index ``faces``; dropped faces never appear)."""
    vertices, faces = _check_inputs(vertices, faces, camera)
    pix, face, bary = _visible(vertices, faces, camera, backend, drop_vertices, cull_backfaces, chunk_candidates)
    n = vertices.shape[0] * camera.height * camera.width
    face_ids = torch.full((n,), -1, dtype=torch.long, device=vertices.device)
    dense = torch.zeros(n, 3, device=vertices.device)
    face_ids[pix], dense[pix] = face, bary
    shape = (vertices.shape[0], camera.height, camera.width)
    return Fragments(face_ids.view(shape), dense.view(*shape, 3))


def _interpolate_sparse(features, faces, pix, face, bary, frame_pixels: int) -> torch.Tensor:
    verts = faces[face]  # [n,3]
    if features.dim() == 3 and features.shape[0] > 1:
        feat = features[(pix // frame_pixels)[:, None], verts]
    else:
        feat = features.reshape(features.shape[-2], features.shape[-1])[verts]
    return (bary.to(feat.dtype)[..., None] * feat).sum(1)


def interpolate(features: torch.Tensor, faces: torch.Tensor, fragments: Fragments) -> torch.Tensor:
    """Per-pixel features [F,H,W,C] from per-vertex ``features`` [V,C] or [F,V,C]; zero where
    nothing is drawn."""
    F, H, W = fragments.face_ids.shape
    features = _as_features(features, fragments.bary.device)
    faces = torch.as_tensor(faces, device=features.device).long()
    fid = fragments.face_ids.reshape(-1)
    pix = (fid >= 0).nonzero().squeeze(1)
    out = torch.zeros(F * H * W, features.shape[-1], dtype=features.dtype, device=features.device)
    out[pix] = _interpolate_sparse(features, faces, pix, fid[pix], fragments.bary.reshape(-1, 3)[pix], H * W)
    return out.view(F, H, W, -1)


def _as_features(features, device):
    features = torch.as_tensor(features, device=device)
    return features if features.is_floating_point() else features.float()


def rasterize(vertices: torch.Tensor, faces: torch.Tensor, features: torch.Tensor, camera: Camera,
              backend: str = "auto", drop_vertices=None, cull_backfaces: bool = False,
              frame_chunk: int | None = None, chunk_candidates: int | None = None,
              progress=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Render per-vertex ``features`` ([V,C] or [F,V,C]: colours in 0..1 or raw motion codes) of
    the mesh ``vertices`` [F,V,3] (world) / ``faces`` [T,3] seen by ``camera``.

    Returns (image [F,H,W,C] float, mask [F,H,W] bool); the background is zero. ``drop_vertices``
    removes every face touching those vertices (the official renderer drops untracked hands).
    ``cull_backfaces`` skips faces whose vertices run clockwise as the camera sees them (pyrender
    culls those). ``frame_chunk`` frames are rasterized at a time (default: 2 on CPU, 16 on GPU);
    ``progress(done, total)`` after each chunk (a cancel point in ComfyUI).
    """
    vertices, faces = _check_inputs(vertices, faces, camera)
    features = _as_features(features, vertices.device)
    if features.dim() not in (2, 3) or features.shape[-2] != vertices.shape[1]:
        raise ValueError(f"features must be [V,C] or [F,V,C] with V={vertices.shape[1]}, got {tuple(features.shape)}")
    if features.dim() == 3 and features.shape[0] not in (1, vertices.shape[0]):
        raise ValueError(f"per-frame features have {features.shape[0]} frames, vertices {vertices.shape[0]}")
    F, H, W, C = vertices.shape[0], camera.height, camera.width, features.shape[-1]
    images = torch.zeros(F, H, W, C, dtype=features.dtype, device=vertices.device)
    masks = torch.zeros(F, H, W, dtype=torch.bool, device=vertices.device)
    frame_chunk = frame_chunk or FRAME_CHUNK.get(vertices.device.type, 2)
    for s in range(0, F, frame_chunk):
        e = min(F, s + frame_chunk)
        pix, face, bary = _visible(vertices[s:e], faces, _frames(camera, s, e, F), backend, drop_vertices,
                                   cull_backfaces, chunk_candidates)
        feat = features[s:e] if features.dim() == 3 and features.shape[0] > 1 else features
        images[s:e].view(-1, C)[pix] = _interpolate_sparse(feat, faces, pix, face, bary, H * W)
        masks[s:e].view(-1)[pix] = True
        if progress is not None:
            progress(e, F)
    return images, masks


def _frames(camera: Camera, a: int, b: int, total: int) -> Camera:
    """The camera restricted to frames a..b (per-frame parameters are sliced)."""
    def cut(v, static_dims):
        if isinstance(v, torch.Tensor) and v.dim() > static_dims and v.shape[0] == total:
            return v[a:b]
        return v
    return Camera(fx=cut(camera.fx, 0), fy=cut(camera.fy, 0), cx=cut(camera.cx, 0), cy=cut(camera.cy, 0),
                  R=cut(camera.R, 2), t=cut(camera.t, 1), width=camera.width, height=camera.height,
                  near=camera.near)
