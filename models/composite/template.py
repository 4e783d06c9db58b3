"""Official MIMO template folders: read and write them with PyAV.

A template folder (as ``video_decomp/run.py`` writes it and ``run_edit.py`` reads it) holds

- ``vid.mp4``: the original video;
- ``sdc.mp4``: the motion renders (SMPL with MIMO's vertex colours on black);
- ``bk.mp4``: the scene with the person removed (inpainted);
- ``occ.mp4`` (optional): the soft occluder alpha (channel 0, 0..255);
- ``mask.mp4`` (optional): the person's mask (not used by the official inference);
- ``config.json`` (required): ``fps`` and ``time_crop {start_idx, end_idx}``, the latter in
  30-fps frame indices; ``frame_crop`` and ``layer_recover`` are read by the official code but
  never used.

Loading follows ``run_edit.py`` (mimo_official.md §1.4, trap 14): every video goes through
``load_video_fixed_fps`` (source fps = ``round(container fps)``, frame indices
``np.arange(0, n, fps_src / target_fps).astype(int)``: floor, frames repeat when the target is
faster), then ``start = int(target * start_idx / 30)``, ``end = int(target * end_idx / 30)``,
clamped to ``[0, len(sdc)]``, is applied to every stream, then the first ``max_frames`` are kept
(official: 150). Frames are decoded in one streaming pass per file, and only the ones kept are
held in memory.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import MIMOInputError

log = logging.getLogger("MIMO")

REQUIRED = ("vid.mp4", "sdc.mp4", "bk.mp4", "config.json")
OPTIONAL = ("occ.mp4", "mask.mp4")
STREAMS = {"video": "vid.mp4", "motion": "sdc.mp4", "scene": "bk.mp4", "occlusion": "occ.mp4", "mask": "mask.mp4"}
MAX_FRAME_NUM = 150
CROP_FPS = 30  # time_crop indices are in 30-fps units
PROGRESS_EVERY = 8  # decoded frames between progress calls (cancel points)
Progress = Callable[[int, int], None]


class TemplateError(MIMOInputError):
    """A template folder or its config.json that cannot be used; the message names the file."""


def _av():
    try:
        import av
    except ImportError as e:  # pragma: no cover - av ships with ComfyUI
        raise ImportError("Reading and writing template videos needs PyAV: pip install av") from e
    return av


@dataclass
class Template:
    """Frames of a template, all uint8 and the same length L: video/motion/scene [L,H,W,3],
    occlusion/mask [L,H,W] (channel 0, 0..255) or None when the file is absent."""

    video: np.ndarray
    motion: np.ndarray
    scene: np.ndarray
    occlusion: np.ndarray | None
    mask: np.ndarray | None
    fps: float
    config: dict = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return self.motion.shape[0]


# ----------------------------------------------------------------------------- reading

def _unreadable(path, error: Exception) -> TemplateError:
    why = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return TemplateError(f"'{path}' is not a readable video ({why}); expected an H.264 .mp4 as the official "
                         "templates and MIMO Save Template write. Replace or re-encode the file (e.g. ffmpeg -i "
                         "in.mov -c:v libx264 -pix_fmt yuv420p out.mp4).")


@contextmanager
def _open_video(path):
    """(container, its first video stream); a TemplateError naming the file when it is not a video."""
    av = _av()
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise _unreadable(path, e) from None
    with container:
        if not container.streams.video:
            raise TemplateError(f"'{path}' has no frames (it holds no video stream); expected an H.264 .mp4 with "
                                "one frame per template frame. Re-export the template (e.g. with MIMO Save "
                                "Template) or replace the file.")
        yield container, container.streams.video[0]


def video_info(path) -> tuple[float, int | None, int, int]:
    """(container fps, frame count from the header or None, width, height) of a video file."""
    with _open_video(path) as (_, stream):
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        return float(rate) if rate else 0.0, (stream.frames or None), stream.width, stream.height


def source_indices(n_frames: int, fps_src: float, target_fps: float) -> np.ndarray:
    """Official ``load_video_fixed_fps`` frame indices: ``arange(0, n, round(fps_src)/target).astype(int)``."""
    ratio = round(fps_src) / target_fps
    return np.arange(0, n_frames, ratio).astype(int)


def _decode(path, keep, channel0: bool = False, last: int | None = None,
            progress: Progress | None = None) -> tuple[dict[int, np.ndarray], int, bool]:
    """Decode frames in order, keeping those whose index passes ``keep(j)``; stop after index ``last``.
    ``progress(frames decoded, frames expected)`` every few frames (a cancel point in ComfyUI).

    Returns ({index: frame}, frames decoded, whether the whole file was decoded)."""
    av = _av()
    kept: dict[int, np.ndarray] = {}
    n = 0
    with _open_video(path) as (container, stream):
        stream.thread_type = "AUTO"
        expected = max(1, stream.frames or 0, (last or 0) + 1)
        try:
            for frame in container.decode(stream):
                if last is not None and n > last:
                    return kept, n, False
                if keep(n):
                    rgb = frame.to_ndarray(format="rgb24")
                    kept[n] = np.ascontiguousarray(rgb[..., 0]) if channel0 else rgb
                n += 1
                if progress is not None and n % PROGRESS_EVERY == 0:
                    progress(min(n, expected), expected)
        except av.FFmpegError as e:
            raise _unreadable(path, e) from None
    return kept, n, True


def load_video_fixed_fps(path, target_fps: float, start: int = 0, stop: int | None = None,
                         channel0: bool = False, progress: Progress | None = None) -> tuple[np.ndarray, int | None]:
    """Frames ``[start:stop]`` of the official fixed-fps resampling of a video.

    Returns (uint8 frames [k,H,W,3], or [k,H,W] channel 0 with ``channel0``; the resampled length
    of the whole video, or None when decoding stopped early because the frames after ``stop``
    were not needed). Only the frames returned are held in memory."""
    fps_src, _, width, height = video_info(path)
    if fps_src <= 0:
        raise ValueError(f"'{path}' has no frame rate in its header; re-encode it (e.g. with MIMO Save Template).")
    if round(fps_src) <= 0:
        raise ValueError(f"'{path}' has a frame rate of {fps_src:g} fps: too low for the official resampling.")
    start = max(0, start)
    ratio = round(fps_src) / target_fps
    if stop is not None:
        # output frame k is source frame int(k * ratio): the same floats np.arange makes
        wanted = {int(k * ratio) for k in range(start, max(start, stop))}
        kept, n, complete = _decode(path, wanted.__contains__, channel0, last=max(wanted, default=-1),
                                    progress=progress)
    else:
        first = int(start * ratio)
        kept, n, complete = _decode(path, lambda j: j >= first, channel0, progress=progress)
    # decoding stopped early only after every wanted index, so arange over what was decoded covers them
    indices = source_indices(n, fps_src, target_fps)
    chosen = indices[start:stop]
    if any(int(j) not in kept for j in chosen):  # float corner case: decode again keeping exactly those
        need = {int(j) for j in chosen}
        kept, _, _ = _decode(path, need.__contains__, channel0, last=max(need), progress=progress)
    shape = (0, height, width) if channel0 else (0, height, width, 3)
    frames = np.stack([kept[int(j)] for j in chosen]) if len(chosen) else np.zeros(shape, np.uint8)
    return frames, (len(indices) if complete else None)


def _missing(folder: Path, name: str) -> FileNotFoundError:
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    return FileNotFoundError(
        f"The MIMO template folder '{folder}' has no '{name}' (it holds: {', '.join(present) or 'nothing'}). "
        f"A template needs {', '.join(REQUIRED)}, optionally {', '.join(OPTIONAL)}."
    )


def read_config(folder) -> dict:
    folder = Path(folder)
    path = folder / "config.json"
    if not folder.is_dir():
        raise FileNotFoundError(f"The MIMO template folder '{folder}' does not exist.")
    if not path.is_file():
        raise _missing(folder, "config.json")
    example = '{"fps": 30, "time_crop": {"start_idx": 0, "end_idx": 150}}'
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as e:  # bad UTF-8, bad JSON, absurd nesting
        raise TemplateError(f"'{path}' is not valid JSON ({e}); expected e.g. {example}.") from None
    except OSError as e:
        raise TemplateError(f"Cannot read '{path}': {e}") from None
    if not isinstance(config, dict) or "fps" not in config:
        found = f"keys {sorted(config)}" if isinstance(config, dict) else f"a JSON {type(config).__name__}"
        raise TemplateError(f"'{path}' has no 'fps' (the template's frame rate); expected e.g. {example}, "
                            f"found {found}.")
    fps = config["fps"]
    try:
        fps = None if isinstance(fps, bool) else float(fps)
    except (TypeError, ValueError, OverflowError):
        fps = None
    if fps is None or not math.isfinite(fps) or not fps > 0:
        raise TemplateError(f"'{path}': fps must be a positive number, got {config['fps']!r}.")
    crop = config.get("time_crop")
    if crop is not None:
        if not isinstance(crop, dict):
            raise TemplateError(f"'{path}': time_crop must be an object like {{\"start_idx\": 0, \"end_idx\": 150}} "
                                f"or null, got {crop!r}.")
        for key in ("start_idx", "end_idx"):
            value = crop.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or abs(value) > 1e9):
                raise TemplateError(f"'{path}': time_crop.{key} must be a frame index (a whole number, in 30-fps "
                                    f"frames) or null, got {value!r}.")
    return config


def time_crop(config: dict, target_fps: float) -> tuple[int, int | None]:
    """Official time_crop in output frames: int(target * idx / 30); (0, None) when absent."""
    crop = config.get("time_crop") or {}
    start = crop.get("start_idx", 0) or 0
    end = crop.get("end_idx")
    start = max(0, int(target_fps * start / CROP_FPS))
    end = None if end is None else int(target_fps * end / CROP_FPS)
    return start, end


def load_template(folder, target_fps: float | None = None, max_frames: int | None = MAX_FRAME_NUM,
                  use_time_crop: bool = True, progress: Progress | None = None) -> Template:
    """Read an official template folder (see the module docstring).

    target_fps: None uses ``config.json``'s fps (official); max_frames: None or 0 keeps all.
    ``progress(done, total)`` is called while decoding (a cancel point in ComfyUI)."""
    folder = Path(folder)
    config = read_config(folder)
    for name in REQUIRED:
        if not (folder / name).is_file():
            raise _missing(folder, name)
    fps = float(target_fps) if target_fps else float(config["fps"])
    start, end = time_crop(config, fps) if use_time_crop else (0, None)
    stop = end
    if max_frames:
        stop = start + max_frames if stop is None else min(stop, start + max_frames)
    # sdc.mp4 first: the official clamp of time_crop is to its resampled length
    motion, motion_len = load_video_fixed_fps(folder / "sdc.mp4", fps, start, stop, progress=progress)
    if motion_len == 0:
        raise TemplateError(f"'{folder / 'sdc.mp4'}' has no frames: a template's motion renders need one frame per "
                            "video frame. Re-export the template (e.g. with MIMO Save Template) or replace sdc.mp4.")
    if len(motion) == 0:
        has = f"; sdc.mp4 has {motion_len} frames at that rate" if motion_len is not None else ""
        raise ValueError(f"Template '{folder}': time_crop {config.get('time_crop')} at {fps:g} fps leaves no frames "
                         f"(start {start}, end {end}{has}).")
    stop = start + len(motion)
    streams = {}
    for key, name in STREAMS.items():
        path = folder / name
        if key == "motion":
            streams[key] = motion
        elif not path.is_file():
            streams[key] = None
        else:
            streams[key], _ = load_video_fixed_fps(path, fps, start, stop, channel0=key in ("occlusion", "mask"),
                                                   progress=progress)
    lengths = {k: len(v) for k, v in streams.items() if v is not None}
    empty = [STREAMS[k] for k, v in lengths.items() if v == 0]
    if empty:
        raise TemplateError(f"Template '{folder}': {', '.join(empty)} gave no frames for frames {start}..{stop - 1} "
                            f"at {fps:g} fps while sdc.mp4 has {len(motion)}; every layer needs one frame per "
                            "sdc.mp4 frame. Re-export the template or replace the file.")
    n = min(lengths.values())
    if len(set(lengths.values())) > 1:
        log.warning("Template '%s': the videos have different lengths %s after resampling; using the first %d "
                    "frames of each.", folder, lengths, n)
    sizes = {k: v.shape[1:3] for k, v in streams.items() if v is not None}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"Template '{folder}': the videos have different sizes "
                         f"{ {k: f'{s[1]}x{s[0]}' for k, s in sizes.items()} }; all must match vid.mp4.")
    cut = {k: (v[:n] if v is not None else None) for k, v in streams.items()}
    log.info("Template '%s': %d frames %dx%d at %g fps%s%s.", folder, n, sizes["motion"][1], sizes["motion"][0],
             fps, ", occluders" if cut["occlusion"] is not None else "", ", mask" if cut["mask"] is not None else "")
    return Template(cut["video"], cut["motion"], cut["scene"], cut["occlusion"], cut["mask"], fps, config)


def is_template(folder) -> bool:
    folder = Path(folder)
    return (folder / "config.json").is_file() and any((folder / n).is_file() for n in ("sdc.mp4", "vid.mp4"))


def find_templates(root) -> list[str]:
    """Folders under root (recursively) that look like templates, as 'sub/dir' relative paths."""
    root = Path(root)
    out, seen = [], set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if "config.json" in files and ("sdc.mp4" in files or "vid.mp4" in files):
            rel = os.path.relpath(folder, root).replace(os.sep, "/")
            if rel != ".":
                out.append(rel)
    return sorted(out)


# ----------------------------------------------------------------------------- writing

def _rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def write_video(path, frames: np.ndarray, fps: float, crf: int = 15) -> Path:
    """H.264 (libx264, yuv420p) mp4 of uint8 frames [F,H,W,3] (or [F,H,W] gray). Sizes must be even."""
    av = _av()
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be [frames, H, W, 3] with at least one frame, got {tuple(frames.shape)}")
    height, width = frames.shape[1:3]
    if width % 2 or height % 2:
        raise ValueError(f"H.264 (4:2:0) needs an even width and height; the frames are {width}x{height}. "
                         "Crop or resize them by one pixel first.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=_rate(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(int(crf))}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def crop_end_index(frames: int, fps: float) -> int:
    """Smallest 30-fps end_idx whose official rescale ``int(fps * end / 30)`` covers all frames."""
    end = math.ceil(frames * CROP_FPS / fps)
    while int(fps * end / CROP_FPS) < frames:
        end += 1
    return end


def write_template(folder, video: np.ndarray, motion: np.ndarray, scene: np.ndarray, fps: float,
                   occlusion: np.ndarray | None = None, mask: np.ndarray | None = None, crf: int = 15,
                   mask_crf: int = 10) -> Path:
    """Write an official template folder (uint8 frames, see ``Template``); returns the folder.

    ``scene`` may be one frame for a static scene; occlusion/mask are [L,H,W] (0..255) or None.
    config.json: ``fps``, ``time_crop`` over the whole clip (in 30-fps units), and the
    ``frame_crop`` / ``layer_recover`` keys the official loader reads (null: never used)."""
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    video, motion, scene = (np.asarray(x) for x in (video, motion, scene))
    n = motion.shape[0]
    if scene.shape[0] == 1 and n > 1:
        scene = np.repeat(scene, n, axis=0)
    layers = {"vid.mp4": video, "sdc.mp4": motion, "bk.mp4": scene}
    if occlusion is not None:
        layers["occ.mp4"] = np.asarray(occlusion)
    if mask is not None:
        layers["mask.mp4"] = np.asarray(mask)
    for name, frames in layers.items():
        if frames.shape[0] != n:
            raise ValueError(f"{name}: {frames.shape[0]} frames, but the motion has {n}; all layers need the same "
                             "number of frames.")
        if frames.shape[1:3] != motion.shape[1:3]:
            raise ValueError(f"{name}: frames are {frames.shape[2]}x{frames.shape[1]}, the motion "
                             f"{motion.shape[2]}x{motion.shape[1]}; all layers need the same size.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frames in layers.items():
        write_video(folder / name, frames, fps, crf=mask_crf if name in ("occ.mp4", "mask.mp4") else crf)
    fps_value = int(fps) if float(fps).is_integer() else float(fps)
    config = {"fps": fps_value, "time_crop": {"start_idx": 0, "end_idx": crop_end_index(n, fps)},
              "frame_crop": None, "layer_recover": None}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder
