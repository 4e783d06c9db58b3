"""The person's mask in every frame: the SAM 2 video predictor (Ravi et al. 2024, ``sam2`` 1.1.0).

Checkpoints (``models/sam2``): the official ``sam2_hiera_{tiny,small,base_plus,large}.pt`` and
``sam2.1_hiera_*.pt`` (``torch.load(..., weights_only=True)["model"]``) and ComfyUI's / Kijai's ``*.safetensors`` (the
same keys, flat, fp32 or fp16). The architecture is read from the weights, not from the file name:
the Hiera trunk's width and block count give the size (t 96/12, s 96/16, b+ 112/24, l 144/48) and
the SAM 2.1-only parameters (``no_obj_embed_spatial``, ``obj_ptr_tpos_proj``) the version; the
matching config of the installed ``sam2`` package is then built directly with OmegaConf (Hydra's
global config search is not used, so another node pack that re-initialises Hydra cannot break it).

Frames never go through JPEG files: the clip stays in memory and is resized to the model's square
input exactly as SAM 2's loader does (uint8, PIL bicubic) and normalised a chunk of frames at a time,
only when the predictor asks for a frame. Works on CPU (fp32; SAM 2 stores its memories in bfloat16,
which a pre-hook on the memory attention casts back, see decomposition_deps.md §1.4) and on CUDA
(bfloat16 autocast, as SAM 2's own demos). The model is built for the call and freed after it.

Prompt on the first frame (on the last one with ``reverse=True``): a mask, points (pixels, with
labels 1 = person / 0 = not the person), a box, or nothing. With no prompt the person is found
automatically, and this is a heuristic, not a person detector:

1. motion: the median of the clip over time is taken as the background (static camera); the largest
   connected region of the prompt frame that differs from it (more than ``max(0.06, 4 x the median
   difference)`` in some channel; opened 3x3, parts within a 5x5 closing grouped, holes filled) is
   taken as the person. It fails when the camera moves (skipped when the typical pixel changes by more
   than 0.04 or half of the frame by more than 0.06), when the person hardly moves, or when something
   else moves more.
2. otherwise SAM 2's automatic mask generator on the prompt frame, and the most person-like of its
   masks: upright (box height/width near 2), a plausible size (0.5 %..85 % of the frame), central,
   not spanning the whole width, weighted by SAM's own quality scores.

A MASK from a real person detector/segmenter (any node) is the recommended prompt.
``mask_prompt="points"`` reproduces the official MIMO decomposition (``video_decomp/run.py``): the
first mask is turned into 10 positive points picked evenly (row-major order) among its pixels.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..memory import release
from ..weights import CheckpointError

log = logging.getLogger("MIMO")
Progress = Callable[[int, int], None]

SAM2_INSTALL = ("SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0 "
                "antlr4-python3-runtime==4.9.3 \"omegaconf>=2.2,<2.4\"")
HIERA_SIZES = {(96, 12): "t", (96, 16): "s", (112, 24): "b+", (144, 48): "l"}  # (width, blocks) -> size
SIZE_NAMES = {"t": "tiny", "s": "small", "b+": "base_plus", "l": "large"}
V21_ONLY_KEY = "no_obj_embed_spatial"
DEFAULT_IMAGE_SIZE = 1024
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
OFFICIAL_POINTS = 10  # video_decomp/run.py get_video_track: 10 positive points from the first mask
OFFLOAD_STATE_AFTER = 96  # frames: keep SAM 2's per-frame memories on the CPU for longer clips on a GPU
MASK_PROMPTS = ("mask", "points")
META_IMAGE_SIZE = "image_size"  # .pt: {"model": sd, "image_size": n}; .safetensors metadata


# ----------------------------------------------------------------------------- the sam2 package

def _sam2():
    try:
        import sam2  # noqa: F401  (its import also sets up Hydra's config module)
        from hydra.utils import instantiate
        from omegaconf import OmegaConf
        from sam2 import sam2_video_predictor
    except ImportError as e:
        raise ImportError(
            f"SAM 2 is not installed ({e}). Install it into ComfyUI's Python with:\n  {SAM2_INSTALL}\n"
            "(SAM2_BUILD_CUDA=0 and --no-build-isolation skip its optional CUDA extension and keep your torch.)"
        ) from e
    return sam2, sam2_video_predictor, OmegaConf, instantiate


def sam2_config_name(size: str, version: str = "2.1") -> str:
    """The config of the ``sam2`` package for a size (t, s, b+, l) and version (2.0, 2.1)."""
    if size not in SIZE_NAMES:
        raise ValueError(f"Unknown SAM 2 size {size!r}: use one of {list(SIZE_NAMES)}.")
    if version == "2.1":
        return f"configs/sam2.1/sam2.1_hiera_{size}.yaml"
    if version == "2.0":
        return f"configs/sam2/sam2_hiera_{size}.yaml"
    raise ValueError(f"Unknown SAM 2 version {version!r}: use '2.0' or '2.1'.")


def _config_path(config: str) -> Path:
    """A config name as SAM 2 spells it (``configs/sam2.1/sam2.1_hiera_t.yaml``, the legacy
    ``sam2_hiera_l.yaml``, with or without ``.yaml``) or a path to a YAML file."""
    sam2 = _sam2()[0]
    root = Path(sam2.__file__).parent
    given = Path(config)
    if given.is_absolute() and given.is_file():
        return given
    name = config.lstrip("/")
    if not name.endswith(".yaml"):
        name += ".yaml"
    for candidate in (root / name, root / "configs" / "sam2.1" / name, root / "configs" / "sam2" / name):
        if candidate.is_file():
            return candidate
    known = sorted(p.relative_to(root).as_posix() for p in root.glob("configs/sam2*/*.yaml"))
    raise FileNotFoundError(f"SAM 2 config {config!r} not found in {root}. Known configs: {', '.join(known)}.")


@contextlib.contextmanager
def _skip_init():
    """Build modules without random initialisation (every weight is loaded right after)."""
    names = ("uniform_", "normal_", "trunc_normal_", "constant_", "zeros_", "ones_", "kaiming_uniform_",
             "kaiming_normal_", "xavier_uniform_", "xavier_normal_")
    saved = {n: getattr(torch.nn.init, n) for n in names}
    try:
        for n in names:
            setattr(torch.nn.init, n, lambda tensor, *a, **k: tensor)
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.nn.init, n, f)


def build_sam2(config: str, image_size: int = DEFAULT_IMAGE_SIZE, random_init: bool = True):
    """A ``SAM2VideoPredictor`` on the CPU from a config, with the post-processing settings of
    ``sam2.build_sam.build_sam2_video_predictor``; ``image_size`` overrides the model's input size
    (1024 in every released config; small sizes are for tests)."""
    _, _, OmegaConf, instantiate = _sam2()
    if image_size % 16 or image_size < 64:
        raise ValueError(f"SAM 2 image_size must be a multiple of 16 and at least 64, got {image_size}.")
    cfg = OmegaConf.load(_config_path(config))
    settings = {
        "model._target_": "sam2.sam2_video_predictor.SAM2VideoPredictor",
        "model.image_size": image_size,
        "model.memory_attention.layer.self_attention.feat_sizes": [image_size // 16] * 2,
        "model.memory_attention.layer.cross_attention.feat_sizes": [image_size // 16] * 2,
        "model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability": True,
        "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta": 0.05,
        "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh": 0.98,
        "model.binarize_mask_from_pts_for_mem_enc": True,
        "model.fill_hole_area": 8,
    }
    for key, value in settings.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    try:
        OmegaConf.resolve(cfg)
        with contextlib.nullcontext() if random_init else _skip_init():
            model = instantiate(cfg.model, _recursive_=True)
    except Exception as e:
        hint = ""
        if "ATN" in str(e) or "antlr" in str(e).lower():
            hint = ("\nThis is the antlr4/omegaconf version clash (another package installed antlr4 4.13); "
                    "fix: pip install antlr4-python3-runtime==4.9.3 \"omegaconf>=2.2,<2.4\"")
        raise RuntimeError(f"Could not build SAM 2 from {config}: {e}{hint}") from e
    return model.eval()


# ----------------------------------------------------------------------------- checkpoints

def read_sam2_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], int | None]:
    """The state dict of an official ``.pt`` (``{"model": sd}``) or a flat ``.safetensors``/``.pt``,
    and the model input size recorded in the file (only the pack's tiny test files record one)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SAM 2 model file not found: {path}")
    size = None
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
            sd = load_file(str(path))
            size = int(meta[META_IMAGE_SIZE]) if META_IMAGE_SIZE in meta else None
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
            sd = obj
            if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
                sd = obj["model"]
                size = int(obj[META_IMAGE_SIZE]) if META_IMAGE_SIZE in obj else None
    except Exception as e:
        raise CheckpointError(f"Could not read the SAM 2 file {path.name} ({path}): {e}. Re-download it.") from e
    if not isinstance(sd, dict) or not sd:
        raise CheckpointError(f"{path.name} ({path}) holds no state dict.")
    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    return sd, size


def detect_sam2(sd: dict[str, torch.Tensor], name: str = "") -> tuple[str, str]:
    """(size, version) of a SAM 2 state dict, from its shapes: size t/s/b+/l, version 2.0/2.1."""
    key = "image_encoder.trunk.patch_embed.proj.weight"
    if key not in sd:
        if "image_encoder.patch_embed.proj.weight" in sd:
            what = "a SAM (v1) checkpoint; MIMO needs SAM 2"
        elif any(k.startswith("vision_encoder.") for k in sd):
            what = "a SAM 2 checkpoint in the transformers layout (facebook/sam2*-hf), which this loader does not read"
        else:
            what = "not a SAM 2 checkpoint (no Hiera image encoder)"
        raise CheckpointError(f"{name or 'The file'} is {what}. Use sam2_hiera_*.pt / sam2.1_hiera_*.pt "
                              "(or their .safetensors) in models/sam2.")
    width = int(sd[key].shape[0])
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"image_encoder\.trunk\.blocks\.(\d+)\.", k))}
    size = HIERA_SIZES.get((width, len(blocks)))
    if size is None:
        raise CheckpointError(f"{name or 'The file'}: unknown SAM 2 Hiera trunk (width {width}, {len(blocks)} blocks); "
                              f"known: {', '.join(f'{s} {w}/{b}' for (w, b), s in HIERA_SIZES.items())}.")
    version = "2.1" if V21_ONLY_KEY in sd else "2.0"
    said = "2.1" if re.search(r"sam2[._]1", name.lower()) else "2.0" if "sam2" in name.lower() else None
    if said and said != version:
        log.warning("%s is named like SAM %s but its weights are SAM %s: using %s.", name, said, version, version)
    return size, version


def _cast_memory_to_query_dtype(module, args, kwargs):
    """SAM 2 stores memories in bfloat16 (made for CUDA autocast); in fp32 the cross-attention then
    mixes dtypes whenever a memory has no object pointers (e.g. tracking backwards)."""
    curr = kwargs.get("curr", args[0] if args else None)
    dtype = (curr[0] if isinstance(curr, list) else curr).dtype
    for name in ("memory", "memory_pos"):
        if isinstance(kwargs.get(name), torch.Tensor):
            kwargs[name] = kwargs[name].to(dtype)
    return args, kwargs


def prepare_for_inference(model, device) -> None:
    """The CPU memory-dtype fix, hole filling only when SAM 2's CUDA extension exists, and the device."""
    try:
        from sam2 import _C  # noqa: F401
    except ImportError:
        model.fill_hole_area = 0  # otherwise a warning on every frame and no hole filling anyway
    if not getattr(model, "_mimo_dtype_hook", False):
        model.memory_attention.register_forward_pre_hook(_cast_memory_to_query_dtype, with_kwargs=True)
        model._mimo_dtype_hook = True
    model.to(device).eval()


def load_sam2(model_path: str | Path, *, device=None, image_size: int | None = None, config: str | None = None):
    """A ready ``SAM2VideoPredictor``: config detected from the weights (or ``config``), weights loaded
    strictly, on ``device`` (default CUDA when available)."""
    path = Path(model_path)
    sd, stored_size = read_sam2_checkpoint(path)
    size, version = detect_sam2(sd, path.name)
    config = config or sam2_config_name(size, version)
    image_size = image_size or stored_size or DEFAULT_IMAGE_SIZE
    model = build_sam2(config, image_size=image_size, random_init=False)
    fix = "Leave 'config' empty to detect it from the weights."
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatches
        detail = " ".join(str(e).split("\n")[1:3]).strip()
        raise CheckpointError(f"{path.name} does not fit the SAM 2 config {config}: {detail} ... {fix}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{path.name} does not fit the SAM 2 config {config}: missing {sorted(missing)[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {sorted(unexpected)[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}. {fix}")
    prepare_for_inference(model, _device(device))
    log.info("SAM 2.%s hiera-%s loaded from %s (input %d px).", version[-1], size, path.name, image_size)
    return model


def _device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ----------------------------------------------------------------------------- frames in memory

class SamFrames:
    """The clip as SAM 2's ``inference_state["images"]``: ``len()`` and ``[i]`` -> normalised
    [3, S, S] float tensors, prepared ``chunk`` frames at a time on the CPU when first asked for, as
    SAM 2's own loader does (uint8 frame, PIL bicubic resize to S x S, /255, ImageNet mean/std)."""

    def __init__(self, frames: torch.Tensor, image_size: int, chunk: int = 16):
        self.frames, self.size, self.chunk = frames, image_size, max(1, int(chunk))
        self.mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
        self._start, self._block = -1, None

    def __len__(self) -> int:
        return self.frames.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        if i < 0:
            i += len(self)
        start = (i // self.chunk) * self.chunk
        if start != self._start:
            from PIL import Image

            from ..image_ops import to_uint8

            size = (self.size, self.size)
            x = [np.asarray(Image.fromarray(f).resize(size, Image.BICUBIC)) / 255.0
                 for f in to_uint8(self.frames[start:start + self.chunk, ..., :3])]
            x = torch.from_numpy(np.stack(x)).permute(0, 3, 1, 2).float()
            self._block, self._start = (x - self.mean) / self.std, start
        return self._block[i - start]


@contextlib.contextmanager
def _in_memory_loader(images: SamFrames, height: int, width: int):
    """``init_state`` loads frames through ``load_video_frames`` (JPEG folder or mp4 only): hand it
    our frames instead, so the rest of the state is built by the installed sam2 itself."""
    module = _sam2()[1]
    original = module.load_video_frames
    module.load_video_frames = lambda **kw: (images, height, width)
    try:
        yield
    finally:
        module.load_video_frames = original


def init_state(model, frames: torch.Tensor, chunk: int = 16) -> dict:
    """SAM 2's inference state for in-memory frames [F, H, W, 3] (0..1)."""
    n, h, w = frames.shape[:3]
    offload = next(model.parameters()).device.type != "cpu" and n > OFFLOAD_STATE_AFTER
    with _in_memory_loader(SamFrames(frames, model.image_size, chunk), h, w):
        return model.init_state(video_path="<frames in memory>", offload_state_to_cpu=offload)


@contextlib.contextmanager
def _no_tqdm():
    """SAM 2 prints a tqdm bar per propagation; progress goes through ``progress`` instead."""
    module = _sam2()[1]
    original = getattr(module, "tqdm", None)
    module.tqdm = lambda iterable, *a, **k: iterable
    try:
        yield
    finally:
        module.tqdm = original


def _autocast(device: torch.device):
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------- prompts

def _check_frames(frames: torch.Tensor) -> torch.Tensor:
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] not in (3, 4):
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"frames must be a [frames, height, width, 3] image tensor (0..1), got {shape}.")
    if frames.shape[0] == 0:
        raise ValueError("The video has no frames.")
    return frames[..., :3]


def parse_points(text: str | None) -> list[tuple[float, float]]:
    """``"x,y; x,y"`` (pixels; ``;`` or new lines between points) -> [(x, y), ...]."""
    points = []
    for part in re.split(r"[;\n]+", text or ""):
        if not part.strip():
            continue
        values = [v for v in re.split(r"[,\s]+", part.strip().strip("()[]")) if v]
        try:
            xy = tuple(float(v) for v in values)
        except ValueError:
            xy = ()
        if len(xy) != 2:
            raise ValueError(f"Bad point {part.strip()!r}: write points as 'x,y; x,y' (pixels from the top left).")
        points.append(xy)
    return points


def parse_box(text: str | None) -> tuple[float, float, float, float] | None:
    """``"x0,y0,x1,y1"`` (pixels) -> the box, or None for an empty text."""
    if not text or not text.strip():
        return None
    values = [v for v in re.split(r"[,;\s]+", text.strip().strip("()[]")) if v]
    try:
        box = tuple(float(v) for v in values)
    except ValueError:
        box = ()
    if len(box) != 4:
        raise ValueError(f"Bad box {text!r}: write it as 'x0,y0,x1,y1' (pixels, top-left and bottom-right corners).")
    return box


def mask_to_points(mask: torch.Tensor | np.ndarray, n: int = OFFICIAL_POINTS) -> list[tuple[float, float]]:
    """Official MIMO: ``n`` positive points at ``linspace(0, count-1, n).astype(int)`` indices of the
    mask's pixels in row-major order, as (x, y)."""
    m = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask) > 0.5
    yx = np.argwhere(m)
    if len(yx) == 0:
        raise ValueError("The prompt mask is empty: nothing to track.")
    idx = np.linspace(0, len(yx) - 1, n).astype(int)
    return [(float(x), float(y)) for y, x in yx[idx]]


def _prompt_mask(mask: torch.Tensor, frame_idx: int, n: int, h: int, w: int) -> torch.Tensor:
    m = mask.detach().to("cpu", torch.float32)
    if m.ndim == 3:
        m = m[frame_idx] if m.shape[0] == n and n > 1 else m[0]
    if m.ndim != 2:
        raise ValueError("The prompt mask must be [height, width] or [frames, height, width], "
                         f"got {tuple(mask.shape)}.")
    if m.shape != (h, w):
        log.info("Resizing the prompt mask from %dx%d to the video's %dx%d.", m.shape[1], m.shape[0], w, h)
        m = F.interpolate(m[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    m = m > 0.5
    if not m.any():
        raise ValueError("The prompt mask is empty (no pixel above 0.5) on the prompt frame: nothing to track.")
    return m


def _check_points(points, labels, box, h: int, w: int):
    if labels is not None and points is None:
        raise ValueError("labels were given without points.")
    if points is not None:
        points = [tuple(map(float, p)) for p in points]
        if any(len(p) != 2 for p in points):
            raise ValueError("points must be (x, y) pairs in pixels.")
        labels = [1] * len(points) if labels is None else [int(v) for v in labels]
        if len(labels) != len(points):
            raise ValueError(f"{len(points)} points but {len(labels)} labels: "
                             "give one label (1 = person, 0 = not) per point.")
        if any(v not in (0, 1) for v in labels):
            raise ValueError("Point labels are 1 (on the person) or 0 (not the person).")
        outside = [p for p in points if not (0 <= p[0] <= w and 0 <= p[1] <= h)]
        if outside:
            raise ValueError(f"Points {outside} lie outside the {w}x{h} video (pixels, x to the right, y down).")
        if not points:
            points, labels = None, None
    if box is not None:
        x0, y0, x1, y1 = map(float, box)
        if not (x1 > x0 and y1 > y0):
            raise ValueError(f"Box {box}: write it as x0,y0,x1,y1 with x1 > x0 and y1 > y0 (pixels).")
        if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            raise ValueError(f"Box {box} lies outside the {w}x{h} video.")
        box = (max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1))
    return points, labels, box


# ----------------------------------------------------------------------------- automatic prompt

def _binary(op: str, m: torch.Tensor, k: int) -> torch.Tensor:
    x = m[None, None].float()
    if op == "dilate":
        return F.max_pool2d(x, k, 1, k // 2)[0, 0] > 0.5
    return -F.max_pool2d(-x, k, 1, k // 2)[0, 0] > 0.5  # erode


def find_moving_person(frames: torch.Tensor, frame_idx: int = 0, max_side: int = 320) -> torch.Tensor | None:
    """The largest region of frame ``frame_idx`` that differs from the clip's temporal median, as a
    bool mask [H, W]; None when the clip is too short, the camera seems to move, or nothing fits."""
    from scipy import ndimage

    frames = _check_frames(frames)
    n, h, w = frames.shape[:3]
    if n < 3:
        return None
    scale = min(1.0, max_side / max(h, w))
    sh, sw = max(8, round(h * scale)), max(8, round(w * scale))
    picks = torch.linspace(0, n - 1, min(n, 48)).round().long().unique()
    picks = torch.cat([picks, torch.tensor([frame_idx])]).unique()

    def small(idx):
        x = frames[idx].to("cpu", torch.float32).permute(0, 3, 1, 2)
        return F.interpolate(x, size=(sh, sw), mode="area") if (sh, sw) != (h, w) else x

    sample = small(picks)
    background = sample.median(dim=0).values
    diff = (sample - background).abs().amax(dim=1)  # [S, sh, sw]
    if float(diff.median()) > 0.04 or (diff > 0.06).float().mean() > 0.5:
        log.info("Automatic person prompt: most of the frame changes (moving camera?); motion cue skipped.")
        return None
    threshold = max(0.06, 4.0 * float(diff.median()))  # above the noise (compression, grain)
    fg = diff[int((picks == frame_idx).nonzero()[0, 0])] > threshold
    fg = _binary("dilate", _binary("erode", fg, 3), 3)  # opening: drop specks
    joined = _binary("erode", _binary("dilate", fg, 5), 5)  # closing: limbs belong to the body
    labels, count = ndimage.label(joined.numpy())
    if count == 0:
        return None
    areas = np.bincount(labels.ravel(), weights=fg.numpy().ravel())[1:]
    best = int(np.argmax(areas)) + 1
    if not 0.003 <= areas[best - 1] / labels.size <= 0.7:
        return None
    region = torch.from_numpy(ndimage.binary_fill_holes((labels == best) & fg.numpy()))
    if (sh, sw) != (h, w):
        region = F.interpolate(region[None, None].float(), size=(h, w), mode="bilinear", align_corners=False)
        region = region[0, 0] > 0.5
    return region


def person_score(mask: np.ndarray, quality: float = 1.0) -> float:
    """How person-like a candidate mask is (0 = not at all): upright, plausible size, central."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return 0.0
    area = len(ys) / (h * w)
    bh, bw = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    if not 0.005 <= area <= 0.85 or bw >= 0.95 * w:
        return 0.0
    upright = math.exp(-0.5 * ((math.log(bh / bw) - math.log(2.0)) / 0.6) ** 2)
    fill = len(ys) / (bh * bw)
    solid = 1.0 if fill < 0.85 else 0.6  # people rarely fill their box; walls, doors and screens do
    centre = 1.0 - abs(xs.mean() / w - 0.5)  # 0.5 .. 1
    return float(quality * upright * solid * centre * math.sqrt(area))


def find_person_with_sam(model, frame: torch.Tensor, points_per_side: int = 16) -> torch.Tensor | None:
    """The most person-like mask of SAM 2's automatic mask generator on one frame [H, W, 3]."""
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    from ..image_ops import to_uint8

    s = model.image_size
    with warnings.catch_warnings():  # SAM 2's image transforms use the deprecated torch.jit.script
        warnings.filterwarnings("ignore", message=".*torch.jit.script", category=FutureWarning)
        generator = SAM2AutomaticMaskGenerator(model, points_per_side=points_per_side, pred_iou_thresh=0.7,
                                               stability_score_thresh=0.85, box_nms_thresh=0.7)
    generator.predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
    with torch.inference_mode(), _autocast(next(model.parameters()).device):
        candidates = generator.generate(to_uint8(frame))
    scores = [person_score(c["segmentation"], c["predicted_iou"] * c["stability_score"]) for c in candidates]
    if not scores or max(scores) <= 0:
        return None
    return torch.from_numpy(np.asarray(candidates[int(np.argmax(scores))]["segmentation"], dtype=bool))


# ----------------------------------------------------------------------------- tracking

def _propagate(model, state, start: int, reverse: bool, out: torch.Tensor, done: list, total: int,
               progress: Progress | None) -> None:
    """Run SAM 2 from ``start`` one way, OR-ing every object's mask into ``out`` [F, H, W] (bool)."""
    for frame_idx, _, logits in model.propagate_in_video(state, start_frame_idx=start, reverse=reverse):
        out[frame_idx] |= (logits[:, 0] > 0).any(dim=0).cpu()
        done[0] += 1
        if progress is not None:
            progress(done[0], total)


def track_human(frames: torch.Tensor, model_path: str | Path, *, mask: torch.Tensor | None = None,
                points: Sequence[tuple[float, float]] | None = None, labels: Sequence[int] | None = None,
                box: tuple[float, float, float, float] | None = None, reverse: bool = False, device=None,
                chunk: int = 16, image_size: int | None = None, config: str | None = None,
                mask_prompt: str = "mask", auto_points_per_side: int = 16,
                progress: Progress | None = None) -> torch.Tensor:
    """The person's mask in every frame, [F, H, W] float 0/1 on the CPU.

    The prompt (``mask`` [H, W] (or a [F, H, W] batch: its prompt frame is used), ``points`` in
    pixels with ``labels`` (default all 1), ``box`` x0,y0,x1,y1 in pixels) is placed on frame 0, or on
    the last frame with ``reverse=True`` (tracking then runs backwards). Points and a box can be
    combined; a mask is given alone, unless ``mask_prompt="points"`` (official MIMO: the mask becomes
    10 positive points, to which given points are added). With no prompt the person is found
    automatically (module docstring: motion, then SAM 2's automatic masks; a heuristic).
    """
    frames = _check_frames(frames)
    n, h, w = frames.shape[:3]
    if mask_prompt not in MASK_PROMPTS:
        raise ValueError(f"mask_prompt must be one of {MASK_PROMPTS}, got {mask_prompt!r}.")
    points, labels, box = _check_points(points, labels, box, h, w)
    frame_idx = n - 1 if reverse else 0
    if mask is not None and mask_prompt == "mask" and (points is not None or box is not None):
        raise ValueError("Give either a mask or points/box as the prompt (SAM 2 takes one kind per frame), "
                         "or set mask_prompt='points' to turn the mask into points.")
    prompt_mask = _prompt_mask(mask, frame_idx, n, h, w) if mask is not None else None
    if prompt_mask is None and points is None and box is None:
        prompt_mask = find_moving_person(frames, frame_idx)
        if prompt_mask is not None:
            log.info("Automatic person prompt: the moving region of frame %d (%d px).",
                     frame_idx, int(prompt_mask.sum()))

    device = _device(device)
    model = load_sam2(model_path, device=device, image_size=image_size, config=config)
    try:
        if prompt_mask is None and points is None and box is None:
            prompt_mask = find_person_with_sam(model, frames[frame_idx], auto_points_per_side)
            if prompt_mask is None:
                raise ValueError(
                    "Could not find the person automatically (no moving region and no person-like SAM 2 mask). "
                    "Connect a first-frame MASK (e.g. from a person segmentation node) or give points or a box.")
            log.info("Automatic person prompt: SAM 2's most person-like mask on frame %d (%d px).",
                     frame_idx, int(prompt_mask.sum()))
        if prompt_mask is not None and mask_prompt == "points":
            extra, extra_labels = list(points or []), list(labels or [])
            points = mask_to_points(prompt_mask) + extra
            labels = [1] * OFFICIAL_POINTS + extra_labels
            prompt_mask = None
        out = torch.zeros(n, h, w, dtype=torch.bool)
        with torch.inference_mode(), _autocast(device), _no_tqdm():
            state = init_state(model, frames, chunk)
            if prompt_mask is not None:
                model.add_new_mask(state, frame_idx=frame_idx, obj_id=1, mask=prompt_mask)
            else:
                model.add_new_points_or_box(
                    state, frame_idx=frame_idx, obj_id=1,
                    points=None if points is None else np.asarray(points, np.float32),
                    labels=None if labels is None else np.asarray(labels, np.int32),
                    box=None if box is None else np.asarray(box, np.float32))
            _propagate(model, state, frame_idx, reverse, out, [0], n, progress)
            del state
    finally:
        release(model)
    return out.float()


def track_objects(frames: torch.Tensor, model_path: str | Path, masks_at: dict[int, torch.Tensor],
                  both_directions: bool = True, *, device=None, chunk: int = 16, image_size: int | None = None,
                  config: str | None = None, progress: Progress | None = None) -> torch.Tensor:
    """Objects given as masks on keyframes, tracked through the clip, OR-ed per frame: [F, H, W] 0/1.

    ``masks_at`` maps a frame index to one mask [H, W] or several [N, H, W] (one object each; empty
    ones are skipped). As the official occlusion tracker: each keyframe's objects start from their
    masks (``add_new_mask``) and are propagated forward and, with ``both_directions``, backwards;
    keyframes are tracked one after the other (state reset in between).
    """
    frames = _check_frames(frames)
    n, h, w = frames.shape[:3]
    groups = []
    for k in sorted(masks_at):
        if not -n <= int(k) < n:
            raise ValueError(f"Keyframe {k} is outside the {n}-frame video.")
        m = masks_at[k].detach().to("cpu", torch.float32)
        m = m[None] if m.ndim == 2 else m
        if m.ndim != 3:
            raise ValueError(f"The masks of keyframe {k} must be [H, W] or [N, H, W], got {tuple(m.shape)}.")
        if m.shape[-2:] != (h, w):
            m = F.interpolate(m[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        objects = [o > 0.5 for o in m if (o > 0.5).any()]
        if len(objects) < len(m):
            log.warning("Keyframe %d: %d empty mask(s) skipped.", k, len(m) - len(objects))
        if objects:
            groups.append((int(k) % n, objects))
    out = torch.zeros(n, h, w, dtype=torch.bool)
    if not groups:
        return out.float()
    device = _device(device)
    model = load_sam2(model_path, device=device, image_size=image_size, config=config)
    total = sum(n - k + (k + 1 if both_directions and k > 0 else 0) for k, _ in groups)
    done = [0]
    try:
        with torch.inference_mode(), _autocast(device), _no_tqdm():
            state = init_state(model, frames, chunk)
            for k, objects in groups:
                model.reset_state(state)
                for obj_id, m in enumerate(objects, start=1):
                    model.add_new_mask(state, frame_idx=k, obj_id=obj_id, mask=m)
                _propagate(model, state, k, False, out, done, total, progress)
                if both_directions and k > 0:
                    _propagate(model, state, k, True, out, done, total, progress)
            del state
    finally:
        release(model)
    return out.float()


def sam2_files_hint() -> str:
    return ("Put a SAM 2 checkpoint in ComfyUI/models/sam2: the official sam2.1_hiera_{tiny,small,base_plus,large}.pt "
            "(or sam2_hiera_*.pt, as official MIMO uses sam2_hiera_large.pt) or ComfyUI's sam2*.safetensors.")


__all__ = [
    "track_human", "track_objects", "load_sam2", "build_sam2", "detect_sam2", "read_sam2_checkpoint",
    "sam2_config_name", "init_state", "find_moving_person", "find_person_with_sam", "person_score",
    "mask_to_points", "parse_points", "parse_box", "SamFrames", "prepare_for_inference", "sam2_files_hint",
]
