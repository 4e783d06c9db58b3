"""BVH (Biovision Hierarchy) reader → SkeletonAnimation.

Conventions (the common reading of the format, as Blender and most tools apply it):
- Rotation channels are Euler angles in degrees, applied intrinsically in the order the channels are
  listed: "Zrotation Xrotation Yrotation" gives R = Rz · Rx · Ry. Any order and any subset work.
- Position channels give the joint's position in its parent's frame: they replace the matching OFFSET
  components (the root's are its world position). Joints without them use OFFSET.
- The rest pose is every channel at zero: joints at their OFFSETs with identity rotations.
- "End Site" blocks become leaf joints named "<parent>_End" (no channels).
- Y is up (the format's convention). BVH has no unit: `scale` multiplies all lengths; by default a rig
  taller than 3 units is taken to be in centimetres (x 0.01). Retargeting does not depend on the unit."""

from pathlib import Path

import numpy as np

from ..errors import MIMOInputError
from . import rotations as rot
from .skeletal import SkeletonAnimation

_KINDS = {"xposition": ("p", 0), "yposition": ("p", 1), "zposition": ("p", 2),
          "xrotation": ("r", "x"), "yrotation": ("r", "y"), "zrotation": ("r", "z")}


class BVHError(MIMOInputError):
    pass


class _Tokens:
    def __init__(self, text: str, where: str):
        self.items = text.split()
        self.pos = 0
        self.where = where

    def peek(self) -> str | None:
        return self.items[self.pos] if self.pos < len(self.items) else None

    def next(self) -> str:
        if self.pos >= len(self.items):
            raise BVHError(f"{self.where}: the file ends too early (truncated BVH?).")
        self.pos += 1
        return self.items[self.pos - 1]

    def expect(self, word: str) -> None:
        got = self.next()
        if got.upper() != word.upper():
            raise BVHError(f"{self.where}: expected '{word}' but found '{got}' (token {self.pos}).")

    def integer(self, what: str) -> int:
        value = self.number()
        if not (value == int(value) if abs(value) < 1e15 else False) or value < 0:
            raise BVHError(f"{self.where}: {what} must be a whole number >= 0, found '{self.items[self.pos - 1]}' "
                           f"(token {self.pos}).")
        return int(value)

    def number(self) -> float:
        tok = self.next()
        try:
            return float(tok)
        except ValueError:
            raise BVHError(f"{self.where}: expected a number but found '{tok}' (token {self.pos}).") from None


def _parse_joint(tok: _Tokens, parent: int, joints: list) -> None:
    words = []
    while tok.peek() not in ("{", None):
        words.append(tok.next())
    name = " ".join(words) or f"joint{len(joints)}"
    tok.expect("{")
    index = len(joints)
    joint = {"name": name, "parent": parent, "offset": np.zeros(3), "channels": []}
    joints.append(joint)
    ends = 0
    while True:
        word = tok.next()
        key = word.upper()
        if key == "OFFSET":
            joint["offset"] = np.array([tok.number() for _ in range(3)])
        elif key == "CHANNELS":
            count = tok.integer(f"the CHANNELS count of joint '{name}'")
            for _ in range(count):
                ch = tok.next()
                if ch.lower() not in _KINDS:
                    raise BVHError(f"{tok.where}: unknown channel '{ch}' in joint '{name}'.")
                joint["channels"].append(_KINDS[ch.lower()])
        elif key == "JOINT":
            _parse_joint(tok, index, joints)
        elif key == "END":
            tok.expect("Site")
            tok.expect("{")
            tok.expect("OFFSET")
            offset = np.array([tok.number() for _ in range(3)])
            tok.expect("}")
            ends += 1
            joints.append({"name": f"{name}_End" + ("" if ends == 1 else str(ends)), "parent": index,
                           "offset": offset, "channels": []})
        elif key == "}":
            return
        else:
            raise BVHError(f"{tok.where}: unexpected '{word}' inside joint '{name}'.")


def parse_bvh(text: str, source: str = "BVH", scale: float | None = None) -> SkeletonAnimation:
    tok = _Tokens(text, source)
    tok.expect("HIERARCHY")
    joints: list = []
    while (tok.peek() or "").upper() == "ROOT":
        tok.next()
        _parse_joint(tok, -1, joints)
    if not joints:
        raise BVHError(f"{source}: no ROOT joint in the HIERARCHY section.")
    tok.expect("MOTION")
    tok.expect("Frames:")
    frames = tok.integer("'Frames:'")
    tok.expect("Frame")
    tok.expect("Time:")
    dt = tok.number()
    if frames < 1 or not dt > 0:
        raise BVHError(f"{source}: needs at least one frame and a positive Frame Time (got {frames}, {dt}).")
    width = sum(len(j["channels"]) for j in joints)
    if width == 0:
        raise BVHError(f"{source}: no joint has CHANNELS, so the MOTION section cannot animate anything.")
    values = tok.items[tok.pos:tok.pos + frames * width]
    if len(values) < frames * width:
        raise BVHError(f"{source}: 'Frames: {frames}' needs {frames * width} values, the file has {len(values)}.")
    try:
        data = np.asarray(values, dtype=np.float64).reshape(frames, width)
    except ValueError as e:
        raise BVHError(f"{source}: bad number in the MOTION data ({e}).") from None

    n = len(joints)
    offsets = np.stack([j["offset"] for j in joints])
    rotations = np.broadcast_to(np.eye(3), (frames, n, 3, 3)).copy()
    translations = np.broadcast_to(offsets, (frames, n, 3)).copy()
    col = 0
    for i, joint in enumerate(joints):
        order, rcols = "", []
        for kind, axis in joint["channels"]:
            if kind == "p":
                translations[:, i, axis] = data[:, col]
            else:
                order += axis
                rcols.append(col)
            col += 1
        if order:
            rotations[:, i] = rot.euler_to_matrix(np.radians(data[:, rcols]), order)

    anim = SkeletonAnimation(
        names=[j["name"] for j in joints], parents=[j["parent"] for j in joints],
        rest_rotations=np.broadcast_to(np.eye(3), (n, 3, 3)).copy(), rest_translations=offsets,
        rotations=rotations, translations=translations, fps=1.0 / dt, source=source)
    if scale is None:
        height = np.ptp(anim.rest_world()[1][:, 1])
        scale = 0.01 if height > 3.0 else 1.0
    anim.rest_translations = anim.rest_translations * scale
    anim.translations = anim.translations * scale
    return anim


def load_bvh(path, scale: float | None = None) -> SkeletonAnimation:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise BVHError(f"Cannot read BVH file {path}: {e}") from None
    return parse_bvh(text, source=path.name, scale=scale)
