"""Vectorised rotation helpers (numpy, float64). Quaternions are (w, x, y, z); matrices act on column
vectors (v' = R v); axis-angle vectors are axis * angle in radians. Leading dimensions broadcast."""

import numpy as np

_EPS = 1e-12


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def aa_to_quat(aa) -> np.ndarray:
    aa = _f64(aa)
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    half = 0.5 * angle
    # sin(a/2)/a, with its series near 0 so tiny rotations stay exact
    small = angle < 1e-6
    k = np.where(small, 0.5 - angle**2 / 48.0, np.sin(half) / np.where(small, 1.0, angle))
    return np.concatenate([np.cos(half), aa * k], axis=-1)


def quat_to_aa(q) -> np.ndarray:
    q = quat_normalize(q)
    q = np.where(q[..., :1] < 0, -q, q)  # the shorter of the two equivalent rotations
    w, v = q[..., :1], q[..., 1:]
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(n, w)
    small = n < 1e-8
    scale = np.where(small, 2.0 / np.maximum(w, _EPS), angle / np.where(small, 1.0, n))
    return v * scale


def quat_normalize(q) -> np.ndarray:
    q = _f64(q)
    return q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), _EPS)


def quat_mul(a, b) -> np.ndarray:
    a, b = _f64(a), _f64(b)
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], axis=-1)


def quat_to_matrix(q) -> np.ndarray:
    w, x, y, z = np.moveaxis(quat_normalize(q), -1, 0)
    m = np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], axis=-1)
    return m.reshape(m.shape[:-1] + (3, 3))


def matrix_to_quat(m) -> np.ndarray:
    """Rotation matrix → unit quaternion (w >= 0), using the numerically best of four formulas."""
    m = _f64(m)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    cand = np.stack([
        np.stack([1 + m00 + m11 + m22, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                  m[..., 1, 0] - m[..., 0, 1]], -1),
        np.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m00 - m11 - m22, m[..., 0, 1] + m[..., 1, 0],
                  m[..., 0, 2] + m[..., 2, 0]], -1),
        np.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 - m00 + m11 - m22,
                  m[..., 1, 2] + m[..., 2, 1]], -1),
        np.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                  1 - m00 - m11 + m22], -1),
    ], axis=-2)  # [..., 4 candidates, 4]; candidate i has 4 * q_i^2 in slot i
    diag = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    best = np.argmax(diag, axis=-1)
    q = np.take_along_axis(cand, best[..., None, None], axis=-2)[..., 0, :]
    q = quat_normalize(q)
    return np.where(q[..., :1] < 0, -q, q)


def aa_to_matrix(aa) -> np.ndarray:
    return quat_to_matrix(aa_to_quat(aa))


def matrix_to_aa(m) -> np.ndarray:
    return quat_to_aa(matrix_to_quat(m))


def quat_slerp(q0, q1, t) -> np.ndarray:
    """Spherical interpolation from q0 (t=0) to q1 (t=1) along the shorter arc: q1 is negated where
    q0·q1 < 0 (q and -q are the same rotation). t broadcasts against the leading dimensions."""
    q0, q1 = quat_normalize(q0), quat_normalize(q1)
    t = _f64(t)[..., None]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.clip(np.abs(dot), -1.0, 1.0)
    theta = np.arccos(dot)
    sin = np.sin(theta)
    near = sin < 1e-6  # almost identical: normalised lerp is exact to rounding
    safe = np.where(near, 1.0, sin)
    w0 = np.where(near, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    w1 = np.where(near, t, np.sin(t * theta) / safe)
    return quat_normalize(w0 * q0 + w1 * q1)


def axis_rotation(axis: str, angle) -> np.ndarray:
    """Matrices of rotations by `angle` (radians) about the x, y or z axis."""
    a = _f64(angle)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    rows = {
        "x": [o, z, z, z, c, -s, z, s, c],
        "y": [c, z, s, z, o, z, -s, z, c],
        "z": [c, -s, z, s, c, z, z, z, o],
    }[axis.lower()]
    return np.stack(rows, axis=-1).reshape(a.shape + (3, 3))


def euler_to_matrix(angles, order: str) -> np.ndarray:
    """Intrinsic Euler rotation: rotate about order[0] first, then about the rotated order[1], then order[2].
    That is the matrix product R[order[0]] @ R[order[1]] @ R[order[2]] (the BVH channel convention).
    angles [..., len(order)] in radians; order like "ZXY" (any length)."""
    angles = _f64(angles)
    out = np.broadcast_to(np.eye(3), angles.shape[:-1] + (3, 3)).copy()
    for i, ax in enumerate(order):
        out = out @ axis_rotation(ax, angles[..., i])
    return out


def orthonormalize(m) -> np.ndarray:
    """The nearest rotation to a 3x3 matrix (polar decomposition); removes scale and rounding drift."""
    u, _, vt = np.linalg.svd(_f64(m))
    r = u @ vt
    flip = np.linalg.det(r) < 0
    if np.any(flip):
        u = u.copy()
        u[flip, :, -1] *= -1
        r = u @ vt
    return r


def rotation_between(u, v) -> np.ndarray:
    """The smallest rotation taking direction u onto direction v (a swing about u × v)."""
    u = _f64(u) / np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), _EPS)
    v = _f64(v) / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), _EPS)
    axis = np.cross(u, v)
    s = np.linalg.norm(axis, axis=-1, keepdims=True)
    c = np.sum(u * v, axis=-1, keepdims=True)
    angle = np.arctan2(s, c)
    # opposite directions: any axis perpendicular to u
    perp = np.cross(u, np.where(np.abs(u[..., :1]) < 0.9, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]))
    perp /= np.maximum(np.linalg.norm(perp, axis=-1, keepdims=True), _EPS)
    axis = np.where(s > 1e-12, axis / np.maximum(s, _EPS), perp)
    return aa_to_matrix(axis * angle)


def geodesic_angle(a, b) -> np.ndarray:
    """Angle (radians) of the rotation a^T b between two rotation matrices."""
    rel = np.swapaxes(_f64(a), -1, -2) @ _f64(b)
    q = matrix_to_quat(rel)
    return 2.0 * np.arctan2(np.linalg.norm(q[..., 1:], axis=-1), np.abs(q[..., 0]))
