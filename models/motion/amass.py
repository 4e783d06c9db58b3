"""AMASS .npz → Motion (SMPL+H G `*_poses.npz` and SMPL-X N/G `*_stageii.npz` releases).

AMASS is Z up; the pack is Y up. With R = Rx(-90°) (Z → Y, Y → -Z) the whole body is rotated:
    root' = R · R_root,     trans' = R (trans + J0) - J0
because SMPL rotates about the rest pelvis J0(betas) before adding trans. J0 comes from the body that
will be driven (`body.rest_joints(betas)[0]`); without it a typical SMPL-H pelvis is used. A wrong J0
only moves the whole clip by the constant (R - I)(J0_true - J0), about a centimetre for real bodies,
so the default is fine for rendering with a camera that frames the body."""

import logging
import zipfile
from pathlib import Path
from collections.abc import Callable

import numpy as np

from ..errors import MIMOInputError
from . import rotations as rot
from .checks import check_betas
from .motion import Motion

log = logging.getLogger("MIMO")

DEFAULT_REST_PELVIS = np.array([-0.002, -0.223, 0.028])  # typical SMPL/SMPL-H pelvis at betas = 0 (m)
Z_UP_TO_Y_UP = rot.axis_rotation("x", -np.pi / 2)


class AMASSError(MIMOInputError):
    pass


def _text(value, default: str) -> str:
    """A 0-d (or 1-element) str/bytes array as a lower-case str."""
    g = np.asarray(value)
    try:
        g = g.item() if g.size == 1 else (g.reshape(-1).tolist() or [default])[0]
        g = g.decode("utf-8", "replace") if isinstance(g, bytes) else str(g)
        return g.strip().lower() or default
    except (SystemError, ValueError):  # str arrays holding invalid code points (a damaged file)
        return default


def _floats(value, key: str, name: str, shape: tuple | None = None) -> np.ndarray:
    """``value`` as float64, reshaped to ``shape`` (-1 allowed); AMASSError naming the key otherwise."""
    try:
        a = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise AMASSError(f"{name}: '{key}' should hold numbers, found dtype {np.asarray(value).dtype}.") from None
    if shape is None:
        return a
    try:
        return a.reshape(shape)
    except ValueError:
        want = "x".join("frames" if d == -1 else str(d) for d in shape)
        raise AMASSError(f"{name}: '{key}' has shape {a.shape} ({a.size} values); expected [{want}]"
                         f"{' for ' + str(shape[0]) + ' frames' if shape and shape[0] != -1 else ''}.") from None


def _poses_split(poses: np.ndarray, name: str) -> tuple:
    """(root, body, left hand, right hand, model) from a `poses` array of a known width."""
    width = poses.shape[1]
    if width == 156:  # SMPL+H: root | 21 body | 15 left | 15 right
        return poses[:, :3], poses[:, 3:66], poses[:, 66:111], poses[:, 111:156], "smplh"
    if width == 165:  # SMPL-X: root | body | jaw | eyes (2) | left hand | right hand
        return poses[:, :3], poses[:, 3:66], poses[:, 75:120], poses[:, 120:165], "smplx"
    if width == 72:  # SMPL: root | 21 body | 2 SMPL hand joints (no fingers)
        return poses[:, :3], poses[:, 3:66], None, None, "smpl"
    raise AMASSError(f"{name}: 'poses' has {width} values per frame; expected 156 (SMPL+H), 165 (SMPL-X) or 72 (SMPL).")


def load_amass(path, rest_pelvis: np.ndarray | Callable | None = None) -> Motion:
    """Load one AMASS motion file. `rest_pelvis`: the driven body's rest pelvis joint [3] for this motion's
    betas, or a function betas -> rest joints [J,3] / pelvis [3] (called with the file's betas)."""
    path = Path(path)
    name = path.name
    if path.is_file() and not zipfile.is_zipfile(path):
        raise AMASSError(f"{name} is not a .npz archive (damaged, truncated or another format); AMASS motions are "
                         "zip archives of arrays. Re-download or re-export it.")
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise AMASSError(f"AMASS file not found: {path}") from None
    except ValueError as e:
        raise AMASSError(f"{name}: not a plain .npz of arrays ({e}). AMASS files need no pickled objects.") from None
    except Exception as e:
        raise AMASSError(f"{name}: cannot be read as a .npz file ({e}); it is damaged or not an AMASS motion. "
                         "Re-download or re-export it.") from None
    with data:
        try:
            keys = set(data.files)
            arrays = {k: data[k] for k in keys}
        except ValueError as e:
            if "pickle" in str(e):
                raise AMASSError(f"{name}: an array needs pickle, which is refused for safety ({e}).") from None
            raise AMASSError(f"{name}: an array in the .npz is damaged ({e}); re-download or re-export the file.") from None
        except Exception as e:  # truncated or corrupt zip members
            raise AMASSError(f"{name}: the .npz is damaged ({type(e).__name__}: {e}); re-download or re-export "
                             "the file.") from None

    if "root_orient" in arrays and "pose_body" in arrays:  # SMPL-X N/G with separate keys
        root = _floats(arrays["root_orient"], "root_orient", name, (-1, 3))
        body = arrays["pose_body"]
        t = root.shape[0]
        hand = arrays.get("pose_hand")
        left = right = None
        if hand is not None:
            hand = _floats(hand, "pose_hand", name, (t, -1) if t else (0, 90))
            if hand.shape[1] != 90:
                raise AMASSError(f"{name}: 'pose_hand' has {hand.shape[1]} values per frame, expected 90.")
            left, right = hand[:, :45], hand[:, 45:]
        model = _text(arrays.get("surface_model_type", "smplx"), "smplx")
    elif "poses" in arrays:
        poses = _floats(arrays["poses"], "poses", name)
        if poses.ndim != 2:
            raise AMASSError(f"{name}: 'poses' should be [frames, values], got shape {poses.shape}.")
        root, body, left, right, model = _poses_split(poses, name)
    else:
        shape_only = "betas" in arrays or name == "shape.npz" or name.endswith("_stagei.npz")
        what = "only a body shape (betas), not a motion" if shape_only else "no AMASS pose arrays"
        raise AMASSError(f"{name} holds {what} (keys: {', '.join(sorted(keys))}). Pick a motion file from the same "
                         "folder: '*_poses.npz' (SMPL+H G) or '*_stageii.npz' (SMPL-X).")

    root = _floats(root, "root_orient", name, (-1, 3))
    t = root.shape[0]
    if t < 1:
        raise AMASSError(f"{name} has no frames.")
    body = _floats(body, "pose_body", name, (t, 21, 3))
    left = None if left is None else _floats(left, "left hand pose", name, (t, 15, 3))
    right = None if right is None else _floats(right, "right hand pose", name, (t, 15, 3))
    trans = arrays.get("trans")
    if trans is None:
        log.warning("%s has no 'trans': the root stays in place.", name)
        trans = np.zeros((t, 3))
    trans = _floats(trans, "trans", name, (t, 3))
    betas = arrays.get("betas")
    betas = None if betas is None else check_betas(_floats(betas, "betas", name), name, t)
    fps = arrays.get("mocap_framerate", arrays.get("mocap_frame_rate"))
    fps = None if fps is None else _floats(fps, "mocap_framerate", name).reshape(-1)
    if fps is None or fps.size == 0 or not fps[0] > 0:
        log.warning("%s has no frame rate (mocap_framerate / mocap_frame_rate): assuming 120 fps.", name)
        fps = [120.0]
    fps = float(fps[0])
    gender = _text(arrays["gender"], "neutral") if "gender" in arrays else "neutral"

    j0 = rest_pelvis_joint(rest_pelvis, betas)
    r = Z_UP_TO_Y_UP
    root_y = rot.matrix_to_aa(r @ rot.aa_to_matrix(root))
    trans_y = (trans + j0) @ r.T - j0
    return Motion(root_orient=root_y, body_pose=body, trans=trans_y, fps=fps, left_hand=left, right_hand=right,
                  betas=betas, gender=gender, source=name, model_type=model,
                  meta={"rest_pelvis": j0.tolist(), "up_axis_converted": "Z->Y"})


def rest_pelvis_joint(rest_pelvis, betas) -> np.ndarray:
    """J0 [3] from ``rest_pelvis``: None (a typical SMPL-H pelvis), the pelvis [3], rest joints [J,3],
    a torch tensor, or a function betas -> one of those (called with the motion's betas)."""
    if rest_pelvis is None:
        return DEFAULT_REST_PELVIS.copy()
    if callable(rest_pelvis):
        rest_pelvis = rest_pelvis(betas)
    if hasattr(rest_pelvis, "detach"):  # a torch tensor
        rest_pelvis = rest_pelvis.detach().cpu().double().numpy()
    return np.asarray(rest_pelvis, dtype=np.float64).reshape(-1, 3)[0].copy()  # rest joints [J,3] -> pelvis
