"""Motion from a video: a 3D human-pose estimator's per-frame SMPL parameters -> ``Motion`` in the pack's
world, plus the camera that reproduces the video's framing (``motion.meta["camera"]``).

Estimators (their weights are external and licensed for non-commercial research; nothing is shipped or
downloaded by the pack):

* **NLF** (Sárándi & Pons-Moll, "Neural Localizer Fields", https://github.com/isarandi/nlf): one
  TorchScript file (e.g. ``nlf_l_multi_0.3.2.torchscript`` from the project's releases). Used through its
  documented method ``model.detect_smpl_batched(images_uint8 [N,3,H,W], intrinsic_matrix=K [1,3,3],
  model_name='smpl')``, which returns per-image lists: ``boxes`` [P,5] (x, y, width, height, score),
  ``pose`` [P,72] (axis-angle: root, then SMPL joints 1..23), ``betas`` [P,10], ``trans`` [P,3] (metres)
  and ``joints3d`` [P,24,3] / ``vertices3d`` (NLF reports these in millimetres; the unit is detected
  against ``trans``), all in camera coordinates (OpenCV: x right, y down, z forward). ``torchvision`` is
  imported before loading (the file uses its ``nms`` op).
* **GVHMR** (``gvhmr.py``; the ``gvhmr`` package, when installed): ``gvhmr.pipeline("human-motion-recovery")`` run on
  the frames written to a temporary .mp4; its in-camera SMPL-X parameters (``smpl_params_camera``:
  global_orient, body_pose 63, betas, transl) and the intrinsics it used (``intrinsics`` [L,3,3]) are
  taken. API as in gvhmr 1.6.1 (``gvhmr/inference/pipelines.py``, ``result.py``); not run here (no
  weights).

Intrinsics. The adapter always decides the camera and hands it to the estimator, so the stored camera is
the one the estimate was made with. NLF: square pixels, f = max(W, H) / (2 tan(fov / 2)) with NLF's own
default fov of 55 degrees across the longer image side, principal point at the image centre (NLF's
(W-1)/2 with pixel centres on integers, which is W/2 in the pack's convention of pixel centres at +0.5).
GVHMR: the given fov the same way, else its own default f = sqrt(W^2 + H^2) (about 53 degrees across the
diagonal); the K it reports is stored.

Camera -> world. The pack's world is Y up; the estimators' camera frame is Y down, Z forward. The whole
scene is turned 180 degrees about X (y -> -y, z -> -z), ``R = Rx(180) = diag(1, -1, -1)``:
    root' = R . R_root,     trans' = R (trans + J0) - J0
because SMPL rotates about the rest pelvis J0(betas) before adding trans. ``trans + J0`` is the
estimator's pelvis in camera space: when the estimator reports joints (NLF's ``joints3d``), its pelvis
joint is used as is, so the driven body's pelvis lands exactly where the estimator's was whatever body it
is; otherwise (GVHMR) ``trans + J0`` with J0 the driven body's rest pelvis (``rest_pelvis``), or a typical
SMPL pelvis (``amass.DEFAULT_REST_PELVIS``) when no body is given (off by the pelvis difference, about a
centimetre). The second J0 is always the driven body's (or the default). The camera stored with the motion
is then world->camera ``R = Rx(180)``, ``t = 0`` with the estimator's intrinsics: rendering the motion
through it overlays the source video.

Person choice (several detections in a frame): the detection whose box overlaps the previously chosen
box most (IoU >= 0.2), else the largest box; the first frame with detections takes the largest.
Frames without a detection are filled: rotations slerped and translation interpolated between the
nearest detected frames, held before the first and after the last. Shape: the mean of the chosen
detections' betas.
"""

import gc
import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import image_ops
from ..errors import MIMOInputError
from . import rotations as rot
from .amass import rest_pelvis_joint
from .motion import Motion

log = logging.getLogger("MIMO")

NLF_DEFAULT_FOV = 55.0  # degrees across the longer image side (NLF's default_fov_degrees)
CAMERA_TO_WORLD = np.diag([1.0, -1.0, -1.0])  # Rx(180): OpenCV camera axes (y down, z forward) -> Y up
TRACK_IOU = 0.2  # a detection overlapping the previous choice this much continues the track
NLF_OUTPUT_KEYS = ("boxes", "pose", "betas", "trans")
GVHMR_FPS = 30.0  # GVHMR works at 30 fps (it resamples its input video to that)


class EstimatorError(MIMOInputError):
    """Bad estimator file, output or input video."""


class EstimatorUnavailable(RuntimeError):
    """The estimator is not installed here."""


@dataclass
class PersonEstimate:
    """One frame's chosen person in camera coordinates (metres; OpenCV axes: x right, y down, z forward)."""

    pose: np.ndarray  # [>= 66] axis-angle: root, then SMPL body joints 1..21 (more are ignored)
    trans: np.ndarray  # [3] SMPL translation (the pelvis is at J0(betas) + trans)
    betas: np.ndarray | None = None  # [B]
    pelvis: np.ndarray | None = None  # [3] the estimator's pelvis joint, when it reports joints


# ----------------------------------------------------------------------------------------------- frames
def _video(frames):
    """The video as a 4-D batch (a single image is one frame) and its (frames, height, width), checked
    by ``image_ops.frame_shape`` (at least 8x8 pixels); a bad shape is an EstimatorError."""
    try:
        n, h, w = image_ops.frame_shape(frames, single_ok=True, min_side=8)
    except ValueError as e:
        raise EstimatorError(str(e)) from None
    return (frames[None] if frames.ndim == 3 else frames), n, h, w


# ----------------------------------------------------------------------------------------------- camera
def focal_from_fov(width: int, height: int, fov_degrees: float) -> float:
    """Focal length (pixels, square pixels) for a field of view across the longer image side (NLF's rule)."""
    if not 0.0 < fov_degrees < 180.0:
        raise EstimatorError(f"The field of view must be between 0 and 180 degrees, got {fov_degrees}.")
    return max(width, height) / (2.0 * math.tan(math.radians(fov_degrees) / 2.0))


def video_camera(fx: float, fy: float, cx: float, cy: float, width: int, height: int, source: str = "") -> dict:
    """The camera dict stored in ``motion.meta["camera"]`` (plain JSON types). Intrinsics in pixels of the
    width x height video with pixel centres at +0.5 (``models/render/camera.py``); world->camera
    ``x_cam = R x_world + t`` with R = Rx(180), t = 0 (see the module notes)."""
    return {"fx": float(fx), "fy": float(fy), "cx": float(cx), "cy": float(cy), "width": int(width),
            "height": int(height), "R": CAMERA_TO_WORLD.T.tolist(), "t": [0.0, 0.0, 0.0], "source": source}


# ----------------------------------------------------------------------------------------------- convert
def motion_from_estimates(estimates: list, fps: float, camera: dict, rest_pelvis=None, model_type: str = "smpl",
                          source: str = "", meta: dict | None = None) -> Motion:
    """Per-frame camera-space estimates (``PersonEstimate`` or None where nobody was found) -> Motion in
    the pack's world with ``meta["camera"] = camera``. ``rest_pelvis``: the driven body's rest pelvis [3]
    (or rest joints [J,3], or a function betas -> either); None: a typical SMPL pelvis."""
    n = len(estimates)
    found = [i for i, e in enumerate(estimates) if e is not None]
    if not found:
        raise EstimatorError(f"No person was detected in any of the {n} frames. Check that the person is visible "
                             "and large enough in the video (or try another estimator / field of view).")
    betas_list = [np.asarray(estimates[i].betas, dtype=np.float64).ravel() for i in found
                  if estimates[i].betas is not None]
    betas = None
    if betas_list:
        size = min(b.size for b in betas_list)
        betas = np.mean([b[:size] for b in betas_list], axis=0)
    j0 = rest_pelvis_joint(rest_pelvis, betas)

    root_q = np.zeros((n, 4))
    body_q = np.zeros((n, 21, 4))
    trans = np.zeros((n, 3))
    for i in found:
        e = estimates[i]
        pose = np.asarray(e.pose, dtype=np.float64).ravel()
        if pose.size < 66:
            raise EstimatorError(f"Frame {i}: the estimator gave {pose.size} pose values; SMPL needs at least 66 "
                                 "(root + 21 body joints, axis-angle).")
        root = rot.matrix_to_aa(CAMERA_TO_WORLD @ rot.aa_to_matrix(pose[:3]))
        root_q[i] = rot.aa_to_quat(root)
        body_q[i] = rot.aa_to_quat(pose[3:66].reshape(21, 3))
        pelvis = (np.asarray(e.trans, dtype=np.float64).ravel() + j0) if e.pelvis is None else \
            np.asarray(e.pelvis, dtype=np.float64).ravel()
        trans[i] = CAMERA_TO_WORLD @ pelvis - j0

    filled = []
    for i in range(n):  # frames without a detection: slerp / lerp between the nearest detected ones
        if estimates[i] is not None:
            continue
        before = [k for k in found if k < i]
        after = [k for k in found if k > i]
        a = before[-1] if before else after[0]
        b = after[0] if after else before[-1]
        w = 0.0 if a == b else (i - a) / (b - a)
        root_q[i] = rot.quat_slerp(root_q[a], root_q[b], w)
        body_q[i] = rot.quat_slerp(body_q[a], body_q[b], np.full(21, w))
        trans[i] = (1 - w) * trans[a] + w * trans[b]
        filled.append(i)
    info = {"camera": camera, "estimator": source, "detected_frames": len(found), "filled_frames": len(filled),
            "rest_pelvis": j0.tolist()}
    info.update(meta or {})
    return Motion(root_orient=rot.quat_to_aa(root_q), body_pose=rot.quat_to_aa(body_q), trans=trans, fps=fps,
                  betas=betas, model_type=model_type, source=source, meta=info)


# ----------------------------------------------------------------------------------------------- person choice
def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (x, y, w, h) box with each of boxes [P, >=4]."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2])
    y1 = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter
    return inter / np.maximum(union, 1e-9)


def choose_people(boxes_per_frame: list) -> list:
    """Index of the tracked person in each frame (None where there are no detections): the detection
    overlapping the previous choice most (IoU >= TRACK_IOU), else the largest box."""
    out, previous = [], None
    for boxes in boxes_per_frame:
        if boxes is None or len(boxes) == 0:
            out.append(None)
            continue
        boxes = np.asarray(boxes, dtype=np.float64).reshape(len(boxes), -1)
        k = int(np.argmax(boxes[:, 2] * boxes[:, 3]))
        if previous is not None:
            iou = box_iou(previous, boxes)
            if iou.max() >= TRACK_IOU:
                k = int(np.argmax(iou))
        previous = boxes[k, :4]
        out.append(k)
    return out


# ----------------------------------------------------------------------------------------------- NLF
def load_nlf(path, device="cpu"):
    """The NLF TorchScript model (or a stand-in with the same method), on ``device``."""
    import torchvision  # noqa: F401  registers torchvision::nms, which NLF's detector calls

    path = Path(path)
    if not path.is_file():
        raise EstimatorError(f"NLF model file not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns that TorchScript is deprecated; NLF ships as TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(str(path), map_location=torch.device(device))
    except Exception as e:  # noqa: BLE001  torch raises RuntimeError / ValueError / pickle errors
        raise EstimatorError(
            f"'{path.name}' is not a TorchScript model ({type(e).__name__}: {str(e).strip().splitlines()[0][:200]}). "
            "NLF is the single .torchscript file from https://github.com/isarandi/nlf/releases "
            "(e.g. nlf_l_multi_0.3.2.torchscript); put it in ComfyUI/models/nlf.") from None
    if not hasattr(model, "detect_smpl_batched"):
        raise EstimatorError(f"'{path.name}' is a TorchScript model but not NLF: it has no detect_smpl_batched "
                             "method. Use NLF's multi-person .torchscript file (e.g. nlf_l_multi_0.3.2.torchscript).")
    return model.eval()


def _detect(model, images: torch.Tensor, K: torch.Tensor) -> dict:
    try:
        return model.detect_smpl_batched(images, intrinsic_matrix=K, model_name="smpl")
    except RuntimeError as e:  # older NLF exports have no model_name argument (SMPL only)
        if "model_name" not in str(e):
            raise
        return model.detect_smpl_batched(images, intrinsic_matrix=K)


def _numpy_list(value, n: int, key: str) -> list:
    if isinstance(value, torch.Tensor):
        value = list(value.unbind(0))
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise EstimatorError(f"The NLF model's '{key}' output is not one entry per image ({n} images).")
    return [v.detach().to("cpu", torch.float64).numpy() for v in value]


def _unit(joint: np.ndarray, trans: np.ndarray) -> float:
    """1 if joints are in metres, 1/1000 if in millimetres: the pelvis is within ~0.5 m of trans."""
    return min((1.0, 1e-3), key=lambda u: float(np.linalg.norm(joint * u - trans)))


def estimate_nlf(frames, model, fps: float, *, fov_degrees: float | None = None, batch_size: int = 16,
                 device=None, rest_pelvis=None, source: str = "nlf",
                 progress: Callable[[int, int], None] | None = None) -> Motion:
    """SMPL motion of the main person in ``frames`` [F,H,W,3] (float 0..1 or uint8) with NLF.

    ``model``: a loaded model (``load_nlf``) or the path of the .torchscript file (loaded here, freed
    after). ``fov_degrees``: across the longer side; None: NLF's default 55. ``batch_size``: frames per
    call (the video is streamed to the model in such chunks). ``progress(done, total)`` is called after
    each chunk."""
    if not fps > 0:
        raise EstimatorError(f"The video's fps must be positive, got {fps}.")
    frames, n, h, w = _video(frames)
    own = not hasattr(model, "detect_smpl_batched")
    device = torch.device(device or "cpu")
    if own:
        model = load_nlf(model, device)
    fov = NLF_DEFAULT_FOV if not fov_degrees else float(fov_degrees)
    f = focal_from_fov(w, h, fov)
    K = torch.tensor([[[f, 0.0, (w - 1) / 2.0], [0.0, f, (h - 1) / 2.0], [0.0, 0.0, 1.0]]],
                     dtype=torch.float32, device=device)  # NLF's pixel convention: centres on integers
    batch_size = max(1, int(batch_size))
    detections = []  # per frame: every detection's boxes, pose, betas, trans (and joints)
    try:
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                end = min(n, start + batch_size)
                images = torch.from_numpy(image_ops.uint8_frames(frames, start, end))
                out = _detect(model, images.permute(0, 3, 1, 2).contiguous().to(device), K)
                missing = [k for k in NLF_OUTPUT_KEYS if not isinstance(out, dict) or k not in out]
                if missing:
                    raise EstimatorError(f"The NLF model's output lacks {', '.join(missing)} (expected the dict of "
                                         "NLF's detect_smpl_batched).")
                chunk = {k: _numpy_list(out[k], end - start, k) for k in NLF_OUTPUT_KEYS}
                joints = _numpy_list(out["joints3d"], end - start, "joints3d") if "joints3d" in out else None
                del out
                detections.extend(_frame_detections(chunk, joints, i) for i in range(end - start))
                if progress is not None:
                    progress(end, n)
    finally:
        if own:
            del model
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    people = []
    for d, k in zip(detections, choose_people([d["boxes"] for d in detections]), strict=True):
        if k is None:
            people.append(None)
            continue
        trans = d["trans"][k].reshape(3)
        pelvis = None
        if d["joints"] is not None and len(d["joints"]) > k:
            joint = d["joints"][k].reshape(-1, 3)[0]
            pelvis = joint * _unit(joint, trans)
        people.append(PersonEstimate(pose=d["pose"][k], trans=trans, betas=d["betas"][k], pelvis=pelvis))
    camera = video_camera(f, f, w / 2.0, h / 2.0, w, h, source="nlf")
    motion = motion_from_estimates(people, fps, camera, rest_pelvis, model_type="smpl", source=source,
                                   meta={"fov_degrees": fov})
    log.info("%s: %d frames, a person in %d (%d filled in).", source, n, motion.meta["detected_frames"],
             motion.meta["filled_frames"])
    return motion


def _rows(value: np.ndarray, inner: tuple = (-1,)) -> np.ndarray:
    """One image's output as per-detection rows [P, *inner] (P may be 0; a 1-D value is one detection)."""
    value = np.asarray(value)
    if value.size == 0:
        return value.reshape((0,) + tuple(max(d, 0) for d in inner))
    return value.reshape(value.shape[0] if value.ndim > 1 else 1, *inner)


def _frame_detections(chunk: dict, joints, i: int) -> dict:
    boxes = _rows(chunk["boxes"][i])
    d = {"boxes": boxes, "joints": None if joints is None else _rows(joints[i], (-1, 3))}
    for key in ("pose", "betas", "trans"):
        d[key] = _rows(chunk[key][i])
        if len(d[key]) != len(boxes):
            raise EstimatorError(f"The NLF model gave {len(boxes)} boxes but {len(d[key])} '{key}' entries for one "
                                 "image.")
    return d
