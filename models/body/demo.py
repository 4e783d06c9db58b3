"""A licence-free built-in demo body on SMPL's 24-joint tree.

The surface is the smooth union of ellipsoids and tapered capsules, one set per joint, meshed with
surface nets and snapped onto the implicit surface: a closed body mesh, plus a separate closed
mesh per hand (palm, four fingers, thumb). Skinning weights are a softmax of the distances to the
primitives, summed per joint, so they blend smoothly near the joints. SMPL's canonical frame:
metres, Y up, facing +Z, left on +X, T-pose with palms down. The rest joints sit about where
SMPL's neutral body has them (pelvis ≈ 0.22 m below the origin), so motions made for SMPL place
it at about the same height. No shape space (betas are ignored) and no pose blendshapes.
Deterministic: the same arrays on every call.
"""

from functools import lru_cache

import numpy as np

from .model import BodyModel
from .skeleton import SMPL_JOINTS, SMPL_PARENTS

# left side and spine (x >= 0); right-side joints are mirrored
_LEFT = {
    "pelvis": (0.0, -0.225, 0.02), "left_hip": (0.07, -0.315, 0.02), "spine1": (0.0, -0.11, 0.0),
    "left_knee": (0.105, -0.70, 0.025), "spine2": (0.0, 0.03, 0.02), "left_ankle": (0.09, -1.11, -0.02),
    "spine3": (0.0, 0.085, 0.025), "left_foot": (0.115, -1.175, 0.115), "neck": (0.0, 0.30, -0.01),
    "left_collar": (0.045, 0.215, 0.0), "head": (0.0, 0.365, 0.045), "left_shoulder": (0.17, 0.23, -0.015),
    "left_elbow": (0.43, 0.215, -0.04), "left_wrist": (0.68, 0.22, -0.045), "left_hand": (0.765, 0.21, -0.055),
}


def rest_joints() -> np.ndarray:
    out = np.zeros((len(SMPL_JOINTS), 3))
    for i, name in enumerate(SMPL_JOINTS):
        mirrored = name.startswith("right_")
        x, y, z = _LEFT[name.replace("right_", "left_")]
        out[i] = (-x if mirrored else x, y, z)
    return out


# primitives: (joint, kind, params); 'E' ellipsoid (centre, radii), 'C' tapered capsule (a, b, ra, rb),
# 'B' rounded box (centre, half extents, rounding). Entries with a left_ joint are mirrored.
_BODY = [
    ("pelvis", "E", (0.0, -0.24, 0.005), (0.165, 0.12, 0.11)),
    ("pelvis", "E", (0.07, -0.27, -0.035), (0.085, 0.09, 0.075)),  # buttock (mirrored by hand below)
    ("spine1", "E", (0.0, -0.09, 0.02), (0.13, 0.11, 0.10)),
    ("spine2", "E", (0.0, 0.04, 0.02), (0.14, 0.11, 0.105)),
    ("spine3", "E", (0.0, 0.16, 0.01), (0.165, 0.11, 0.11)),
    ("neck", "C", (0.0, 0.27, -0.015), (0.0, 0.39, 0.0), 0.052, 0.05),
    ("head", "E", (0.0, 0.43, 0.035), (0.078, 0.102, 0.095)),
    ("head", "E", (0.0, 0.38, 0.065), (0.055, 0.05, 0.06)),  # jaw
    ("head", "E", (0.0, 0.425, 0.128), (0.014, 0.025, 0.02)),  # nose
    ("left_collar", "C", (0.03, 0.235, -0.01), (0.16, 0.235, -0.02), 0.055, 0.05),
    ("left_shoulder", "C", (0.17, 0.23, -0.015), (0.43, 0.215, -0.04), 0.05, 0.038),
    ("left_elbow", "C", (0.43, 0.215, -0.04), (0.665, 0.22, -0.045), 0.038, 0.028),
    ("left_hip", "C", (0.08, -0.33, 0.02), (0.105, -0.70, 0.025), 0.085, 0.052),
    ("left_knee", "C", (0.105, -0.70, 0.025), (0.09, -1.11, -0.02), 0.05, 0.035),
    ("left_knee", "E", (0.10, -0.82, -0.02), (0.048, 0.10, 0.05)),  # calf
    ("left_ankle", "C", (0.09, -1.165, -0.035), (0.11, -1.172, 0.105), 0.036, 0.034),
    ("left_foot", "C", (0.112, -1.178, 0.11), (0.12, -1.182, 0.175), 0.028, 0.022),
]
_HAND = [
    ("left_wrist", "B", (0.725, 0.215, -0.048), (0.036, 0.004, 0.032), 0.01),  # palm
    ("left_hand", "C", (0.762, 0.212, -0.021), (0.835, 0.211, -0.016), 0.0085, 0.0075),  # index
    ("left_hand", "C", (0.764, 0.212, -0.040), (0.845, 0.211, -0.040), 0.0088, 0.0078),  # middle
    ("left_hand", "C", (0.762, 0.212, -0.058), (0.836, 0.211, -0.062), 0.0083, 0.0073),  # ring
    ("left_hand", "C", (0.758, 0.212, -0.075), (0.815, 0.211, -0.084), 0.0072, 0.0064),  # pinky
    ("left_hand", "C", (0.695, 0.209, -0.015), (0.742, 0.203, 0.022), 0.011, 0.0095),  # thumb base
    ("left_hand", "C", (0.742, 0.203, 0.022), (0.772, 0.2, 0.036), 0.0095, 0.008),  # thumb tip
]


def _flip(p):
    return (-p[0], p[1], p[2])


def _mirror(prims):
    """Add the right-side copy of every left_ primitive and of off-centre spine/pelvis ones."""
    out = []
    for prim in prims:
        joint, kind, *a = prim
        out.append(prim)
        if joint.startswith("left_") or a[0][0] != 0.0:
            a = [_flip(a[0]), _flip(a[1]), *a[2:]] if kind == "C" else [_flip(a[0]), *a[1:]]
            out.append((joint.replace("left_", "right_"), kind, *a))
    return out


def _sdf(prim, p: np.ndarray) -> np.ndarray:
    _, kind, *a = prim
    if kind == "E":  # ellipsoid: a bound good near the surface (k0 (k0 − 1) / k1)
        q = (p - np.asarray(a[0])) / np.asarray(a[1])
        k0 = np.linalg.norm(q, axis=-1)
        k1 = np.linalg.norm(q / np.asarray(a[1]), axis=-1)
        return k0 * (k0 - 1) / np.maximum(k1, 1e-12)
    if kind == "C":  # tapered capsule: radius interpolated along the segment
        s, e = np.asarray(a[0]), np.asarray(a[1])
        d = e - s
        t = np.clip(((p - s) * d).sum(-1) / (d * d).sum(), 0, 1)  # no BLAS: same bits everywhere
        return np.linalg.norm(p - (s + t[..., None] * d), axis=-1) - (a[2] + (a[3] - a[2]) * t)
    q = np.abs(p - np.asarray(a[0])) - np.asarray(a[1])  # rounded box
    outside = np.linalg.norm(np.maximum(q, 0), axis=-1)
    return outside + np.minimum(q.max(-1), 0) - a[2]


def _smooth_min(d: np.ndarray, k: float) -> np.ndarray:
    m = d.min(-1, keepdims=True)  # −k log Σ exp(−d/k), stabilised
    return (m - k * np.log(np.exp(-(d - m) / k).sum(-1, keepdims=True)))[..., 0]


def _field(prims, k: float, merged: tuple = (), k_merged: float = 0.0):
    """Implicit surface (smooth union, blend k) and per-primitive distances. The primitives of the
    ``merged`` joints (the torso) are first blended among themselves with the wider ``k_merged``."""
    grouped = [i for i, q in enumerate(prims) if q[0] in merged]

    def f(p):
        d = np.stack([_sdf(q, p) for q in prims], -1)
        parts = [d[..., [i for i in range(d.shape[-1]) if i not in grouped]]]
        if grouped:
            parts.append(_smooth_min(d[..., grouped], k_merged)[..., None])
        return _smooth_min(np.concatenate(parts, -1), k), d
    return f


def _surface_nets(f, lo, hi, h):
    """Closed triangle mesh of {f < 0} on a grid of spacing h (the surface must stay inside lo..hi)."""
    axes = [np.arange(a, b + h, h) for a, b in zip(lo, hi, strict=True)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    val = f(grid.reshape(-1, 3))[0].reshape(grid.shape[:3])
    cells = tuple(n - 1 for n in val.shape)
    acc, cnt = np.zeros(cells + (3,)), np.zeros(cells)
    edges = []
    for ax in range(3):
        a = val.take(range(val.shape[ax] - 1), ax)
        b = val.take(range(1, val.shape[ax]), ax)
        cross = (a < 0) != (b < 0)
        t = np.where(cross, a / np.where(cross, a - b, 1), 0)
        pos = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in a.shape], indexing="ij"), -1)
        pos[..., ax] += t
        pos *= cross[..., None]
        others = [o for o in range(3) if o != ax]
        for d0 in (0, 1):
            for d1 in (0, 1):
                sl = [slice(None)] * 3
                sl[others[0]] = slice(d0, d0 + cells[others[0]])
                sl[others[1]] = slice(d1, d1 + cells[others[1]])
                acc += pos[tuple(sl)]
                cnt += cross[tuple(sl)]
        edges.append((ax, np.argwhere(cross), a[cross] < 0))
    active = cnt > 0
    for ax, ids, _ in edges:
        u, v = [o for o in range(3) if o != ax]
        if ids.size and (ids[:, [u, v]].min() < 1 or (ids[:, [u, v]] > np.asarray(cells)[[u, v]] - 1).any()):
            raise ValueError("the surface reaches the grid's border")
    index = -np.ones(cells, np.int64)
    index[active] = np.arange(active.sum())
    verts = np.asarray(lo) + h * (acc[active] / cnt[active][:, None])
    quads = []
    for ax, ids, inner_first in edges:
        u, v = [(1, 2), (2, 0), (0, 1)][ax]  # (u, v, ax) right-handed
        corners = []
        for du, dv in ((1, 1), (0, 1), (0, 0), (1, 0)):  # (−1,−1), (0,−1), (0,0), (−1,0) cells
            c = ids.copy()
            c[:, u] -= du
            c[:, v] -= dv
            corners.append(index[c[:, 0], c[:, 1], c[:, 2]])
        q = np.stack(corners, 1)
        quads.append(np.where(inner_first[:, None], q, q[:, ::-1]))  # outward normal along ±ax
    q = np.concatenate(quads)
    faces = np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])
    return verts, faces


def _snap(f, verts, h, steps=4):
    """Move vertices onto f = 0 (Newton steps along the numerical gradient, at most h/2 each)."""
    eps = 1e-5
    for _ in range(steps):
        val = f(verts)[0]
        grad = np.stack([(f(verts + eps * e)[0] - f(verts - eps * e)[0]) / (2 * eps) for e in np.eye(3)], -1)
        step = val[:, None] * grad / np.maximum((grad * grad).sum(-1, keepdims=True), 1e-12)
        norm = np.linalg.norm(step, axis=-1, keepdims=True)
        verts = verts - step * np.minimum(1, 0.5 * h / np.maximum(norm, 1e-12))
    return verts


def _weights(f, prims, verts, tau):
    d = f(verts)[1]
    w = np.exp(-(d - d.min(-1, keepdims=True)) / tau)
    joint_w = np.zeros((len(verts), len(SMPL_JOINTS)))
    for i, prim in enumerate(prims):
        joint_w[:, SMPL_JOINTS.index(prim[0])] += w[:, i]
    joint_w /= joint_w.sum(-1, keepdims=True)
    top = np.argsort(-joint_w, axis=1)[:, 4:]  # keep 4 influences, drop tiny ones
    np.put_along_axis(joint_w, top, 0, axis=1)
    joint_w[joint_w < 0.01] = 0
    return joint_w / joint_w.sum(-1, keepdims=True)


def _part(prims, k, tau, h, lo, hi, merged=(), k_merged=0.0):
    f = _field(prims, k, merged, k_merged)
    verts, faces = _surface_nets(f, lo, hi, h)
    verts = _snap(f, verts, h)
    return verts, faces, _weights(f, prims, verts, tau)


@lru_cache(maxsize=1)
def demo_arrays() -> dict:
    """v_template [V,3], faces [T,3], weights [V,24], joints [24,3], parents [24] (numpy)."""
    body = _mirror(_BODY)
    hands = _mirror(_HAND)
    torso = ("pelvis", "spine1", "spine2", "spine3")
    parts = [_part(body, k=0.012, tau=0.015, h=0.02, lo=(-0.72, -1.26, -0.16), hi=(0.72, 0.58, 0.24),
                   merged=torso, k_merged=0.035)]
    for side in (1, -1):
        prims = [p for p in hands if p[0].startswith("left_" if side > 0 else "right_")]
        lo, hi = (0.66, 0.18, -0.11), (0.87, 0.24, 0.06)
        if side < 0:
            lo, hi = (-hi[0], lo[1], lo[2]), (-lo[0], hi[1], hi[2])
        parts.append(_part(prims, k=0.003, tau=0.006, h=0.006, lo=lo, hi=hi))
    verts, faces, weights, offset = [], [], [], 0
    for v, fc, w in parts:
        verts.append(v)
        faces.append(fc + offset)
        weights.append(w)
        offset += len(v)
    out = {"v_template": np.concatenate(verts), "faces": np.concatenate(faces), "weights": np.concatenate(weights),
           "joints": rest_joints(), "parents": np.asarray(SMPL_PARENTS)}
    for value in out.values():
        value.setflags(write=False)
    return out


def demo_body(device="cpu"):
    """The demo body as a BodyModel (kind 'demo', SMPL's 24 joints, betas ignored)."""
    a = demo_arrays()
    return BodyModel("demo", a["v_template"], a["faces"], a["weights"], a["parents"], joints=a["joints"],
                     source="built-in demo body").to(device)
