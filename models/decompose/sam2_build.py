"""SAM 2 (Ravi et al. 2024, the ``sam2`` 1.1.0 package) built from a checkpoint, ready to run.

Checkpoints (``models/sam2``): the official ``sam2_hiera_{tiny,small,base_plus,large}.pt`` and
``sam2.1_hiera_*.pt`` (``torch.load(..., weights_only=True)["model"]``) and ComfyUI's / Kijai's
``*.safetensors`` (the same keys, flat, fp32 or fp16). The architecture is read from the weights, not
from the file name: the Hiera trunk's width and block count give the size (t 96/12, s 96/16, b+
112/24, l 144/48) and the SAM 2.1-only parameters (``no_obj_embed_spatial``, ``obj_ptr_tpos_proj``)
the version; the matching config of the installed ``sam2`` package is then built directly with
OmegaConf (Hydra's global config search is not used, so another node pack that re-initialises Hydra
cannot break it).

Nothing global is changed: the random initialisation that loading the weights makes useless is
skipped by a torch function mode, which is active only in the building thread and only while the
model is built (``skipped_parameter_init``); ``torch.nn.init`` and the ``sam2`` modules are never
patched. Works on CPU (fp32; SAM 2 stores its memories in bfloat16, which a pre-hook on the memory
attention of this model casts back, see decomposition_deps.md §1.4) and on CUDA (bfloat16 autocast,
as SAM 2's own demos).
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from ..weights import CheckpointError, check_not_empty

log = logging.getLogger("MIMO")

SAM2_INSTALL = ("SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0 "
                "antlr4-python3-runtime==4.9.3 \"omegaconf>=2.2,<2.4\"")
HIERA_SIZES = {(96, 12): "t", (96, 16): "s", (112, 24): "b+", (144, 48): "l"}  # (width, blocks) -> size
SIZE_NAMES = {"t": "tiny", "s": "small", "b+": "base_plus", "l": "large"}
V21_ONLY_KEY = "no_obj_embed_spatial"
DEFAULT_IMAGE_SIZE = 1024
META_IMAGE_SIZE = "image_size"  # .pt: {"model": sd, "image_size": n}; .safetensors metadata


def sam2_package():
    """The installed ``sam2`` package and what building needs from it, or a clear error."""
    try:
        import sam2  # noqa: F401  (its import also sets up Hydra's config module)
        from hydra.utils import instantiate
        from omegaconf import OmegaConf
    except ImportError as e:
        raise ImportError(
            f"SAM 2 is not installed ({e}). Install it into ComfyUI's Python with:\n  {SAM2_INSTALL}\n"
            "(SAM2_BUILD_CUDA=0 and --no-build-isolation skip its optional CUDA extension and keep your torch.)"
        ) from e
    return sam2, OmegaConf, instantiate


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
    root = Path(sam2_package()[0].__file__).parent
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


# ----------------------------------------------------------------------------- building

_KEEP_IN_PLACE = {"requires_grad_", "share_memory_", "set_", "resize_", "resize_as_"}


class _SkipParameterInit(TorchFunctionMode):
    """Leaves parameters as allocated: every in-place write to an ``nn.Parameter`` (``nn.init``'s
    fills and the tensor methods they use) returns the parameter unchanged. Buffers and other tensors
    are computed as usual. A torch function mode lives on the current thread's mode stack, so other
    threads (another node running at the same time) are not affected."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        target = args[0] if args else kwargs.get("tensor")
        if (isinstance(target, torch.nn.Parameter) and name.endswith("_") and not name.startswith("__")
                and name not in _KEEP_IN_PLACE):
            return target
        return func(*args, **kwargs)


@contextlib.contextmanager
def skipped_parameter_init():
    """``with skipped_parameter_init():`` modules built inside keep their parameters uninitialised (for
    weights that are loaded strictly right after). Only this thread, only inside the block."""
    with _SkipParameterInit():
        yield


def build_sam2(config: str, image_size: int = DEFAULT_IMAGE_SIZE, random_init: bool = True):
    """A ``SAM2VideoPredictor`` on the CPU from a config, with the post-processing settings of
    ``sam2.build_sam.build_sam2_video_predictor``; ``image_size`` overrides the model's input size
    (1024 in every released config; small sizes are for tests). ``random_init=False`` leaves the
    parameters uninitialised (load weights into it)."""
    _, OmegaConf, instantiate = sam2_package()
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
        with contextlib.nullcontext() if random_init else skipped_parameter_init():
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
    check_not_empty(path)
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


# ----------------------------------------------------------------------------- ready to run

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
    """The CPU memory-dtype fix, hole filling only when SAM 2's CUDA extension exists, and the device
    (all on this model only)."""
    try:
        from sam2 import _C  # noqa: F401
    except ImportError:
        model.fill_hole_area = 0  # otherwise a warning on every frame and no hole filling anyway
    if not getattr(model, "_mimo_dtype_hook", False):
        model.memory_attention.register_forward_pre_hook(_cast_memory_to_query_dtype, with_kwargs=True)
        model._mimo_dtype_hook = True
    model.to(device).eval()


def device_of(device=None) -> torch.device:
    """``device``, or CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast(device: torch.device):
    """bfloat16 autocast on a CUDA device that has it (as SAM 2's demos), nothing elsewhere."""
    if torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


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
    prepare_for_inference(model, device_of(device))
    log.info("SAM 2.%s hiera-%s loaded from %s (input %d px).", version[-1], size, path.name, image_size)
    return model


def sam2_files_hint() -> str:
    return ("Put a SAM 2 checkpoint in ComfyUI/models/sam2: the official sam2.1_hiera_{tiny,small,base_plus,large}.pt "
            "(or sam2_hiera_*.pt, as official MIMO uses sam2_hiera_large.pt) or ComfyUI's sam2*.safetensors.")


__all__ = ["load_sam2", "build_sam2", "detect_sam2", "read_sam2_checkpoint", "sam2_config_name",
           "prepare_for_inference", "skipped_parameter_init", "device_of", "autocast", "sam2_package",
           "sam2_files_hint", "SIZE_NAMES", "META_IMAGE_SIZE", "DEFAULT_IMAGE_SIZE"]
