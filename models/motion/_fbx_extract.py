"""Reads an FBX file with ufbx and returns plain numpy arrays. Standalone on purpose (imports only numpy and
ufbx) so fbx.py can run it in a child process: `python _fbx_extract.py IN.fbx OUT.npz`.

ufbx 0.0.5 caveat: the binding caches one Python wrapper per scene element and crashes when a wrapper is
garbage-collected and the element is fetched again. Every wrapper touched here is kept in `keep` until
the scene is freed, and nothing from ufbx leaves this module.

Output (Y up, metres, right-handed; ufbx converts axes and units): for the kept nodes (no meshes, lights,
cameras), in topological order, their names, parents, rest world matrices (bind pose where the file has
one, else the static node transforms) and per-frame world matrices sampled at the scene's frame rate."""

import sys

import numpy as np

_KEEP_TYPES = (0, 5, 6)  # ufbx.ElementType: UNKNOWN (no attribute), BONE, EMPTY


def _trs(t) -> np.ndarray:
    x, y, z, w = t.rotation
    r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    m = np.eye(4)
    m[:3, :3] = r * np.asarray(t.scale, dtype=np.float64)[None]
    m[:3, 3] = t.translation
    return m


def _mat(m) -> np.ndarray:
    out = np.eye(4)
    out[:3, :] = np.array([m.c0, m.c1, m.c2, m.c3], dtype=np.float64).T
    return out


def _world(local: np.ndarray, parents: list) -> np.ndarray:
    out = np.empty_like(local)
    for i, p in enumerate(parents):
        out[..., i, :, :] = local[..., i, :, :] if p < 0 else out[..., p, :, :] @ local[..., i, :, :]
    return out


def extract(path: str, stack: str | None = None) -> dict:
    import ufbx

    keep = []

    def hold(obj):  # every ufbx wrapper stays referenced until scene.free()
        keep.append(obj)
        return obj

    scene = hold(ufbx.load_file(str(path), target_axes=ufbx.axes_right_handed_y_up, target_unit_meters=1.0))
    try:
        settings = hold(scene.settings)
        fps = float(settings.frames_per_second) or 30.0
        node_list = hold(scene.nodes)
        nodes = [hold(node_list[i]) for i in range(len(node_list))]
        ids = {n.typed_id: i for i, n in enumerate(nodes)}
        parents = []
        for n in nodes:
            p = hold(n.parent)
            parents.append(-1 if p is None else ids[p.typed_id])
        order = _topological(parents)  # ufbx lists parents first already; be sure
        nodes = [nodes[i] for i in order]
        remap = {old: new for new, old in enumerate(order)}
        parents = [-1 if parents[i] < 0 else remap[parents[i]] for i in order]
        names = [n.name for n in nodes]
        kinds = [int(n.attrib_type) for n in nodes]

        static = np.stack([_trs(n.local_transform) for n in nodes])
        rest = _world(static, parents)
        has_bind = np.zeros(len(nodes), bool)
        bind = np.zeros((len(nodes), 4, 4))
        for i, n in enumerate(nodes):
            pose = hold(n.bind_pose)
            if pose is not None:
                bone = hold(ufbx.get_bone_pose(pose, n))
                if bone is not None:
                    bind[i], has_bind[i] = _mat(bone.bone_to_world), True
        for i, p in enumerate(parents):  # bind pose where present, static transforms below it otherwise
            if has_bind[i]:
                rest[i] = bind[i]
            elif p >= 0:
                rest[i] = rest[p] @ static[i]

        stack_list = hold(scene.anim_stacks)
        stacks = [hold(stack_list[i]) for i in range(len(stack_list))]
        stack_names = [st.name for st in stacks]
        if not stacks:
            raise ValueError("no animation (AnimationStack) in the file")
        if stack is not None and stack not in stack_names:
            raise ValueError(f"no animation named '{stack}'; the file has {stack_names}")
        pick = 0 if stack is None else stack_names.index(stack)
        anim_stack = stacks[pick]
        anim = hold(anim_stack.anim)
        t0, t1 = float(anim_stack.time_begin), float(anim_stack.time_end)
        if not t1 > t0:
            t0, t1 = float(anim.time_begin), float(anim.time_end)
        frames = max(1, int(np.floor((t1 - t0) * fps + 1e-6)) + 1)
        local = np.empty((frames, len(nodes), 4, 4))
        for k in range(frames):
            t = t0 + k / fps
            for i, n in enumerate(nodes):
                local[k, i] = _trs(n.evaluate_transform(anim, t))
        world = _world(local, parents)

        keep_nodes = [i for i, kind in enumerate(kinds) if kind in _KEEP_TYPES and parents[i] >= 0]
        position = {i: k for k, i in enumerate(keep_nodes)}
        sel_parent = []
        for i in keep_nodes:  # nearest kept ancestor
            p = parents[i]
            while p >= 0 and p not in position:
                p = parents[p]
            sel_parent.append(position[p] if p >= 0 else -1)
        return {
            "names": np.array([names[i] for i in keep_nodes], dtype=str),
            "parents": np.array(sel_parent, dtype=np.int64),
            "rest": rest[keep_nodes], "world": world[:, keep_nodes],
            "fps": np.float64(fps), "time_begin": np.float64(t0),
            "stack": np.array(stack_names[pick], dtype=str),
            "original_unit_meters": np.float64(settings.original_unit_meters),
        }
    finally:
        scene.free()


def _topological(parents: list) -> list:
    children = {}
    for i, p in enumerate(parents):
        children.setdefault(p, []).append(i)
    order, todo = [], list(reversed(children.get(-1, [])))
    while todo:
        i = todo.pop()
        order.append(i)
        todo.extend(reversed(children.get(i, [])))
    return order


if __name__ == "__main__":
    import os

    try:
        out = extract(sys.argv[1], sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None)
        np.savez(sys.argv[2], **out)
        code = 0
    except Exception as e:  # reported to the parent through stderr
        sys.stderr.write(f"{type(e).__name__}: {e}\n")
        code = 3
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown (ufbx objects)
