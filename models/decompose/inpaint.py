"""The scene behind the person: every frame with the masked pixels (the person) filled in.

Two back ends:

* ``median`` (built in, permissive, the default without ProPainter): for every pixel, the temporal
  median of the frames in which it is *not* masked; pixels masked in every frame are then filled
  spatially with OpenCV's ``cv2.inpaint`` (Telea) on that median image. Unmasked pixels keep the
  frame's own value. On a static camera (a locked-off shot, unchanging light) this is exact wherever
  the person moved away at least once. A moving camera breaks the assumption (the median mixes
  different scene points): use ProPainter or a scene inpainted by another tool there.
  Long or slowly changing clips: ``window=N`` takes the median over the N frames around each block
  of ``max(1, N // 4)`` frames instead of the whole clip (pixels never uncovered inside the window
  fall back to the whole-clip median, then to Telea). The clip is processed in strips of rows, so
  the extra memory stays small whatever the clip length.
* ``propainter``: the ProPainter video inpainter (Zhou et al. 2023) through the PyPI ``propainter``
  package (its networks live in ``pytorchcv``), used only when it is installed and CUDA is present.
  As the official MIMO decomposition does (mimo_official.md §4.2 step 8), the clip is cropped to the
  union box of the masks, scaled so its short side is 480 px (multiple of 8), masks dilated by
  ``dilate`` (official 4), and retried at 0.75x the scale after an error (e.g. out of memory). The
  weights are pytorchcv's converted files (``raft_things-*.pth``, ``propainter_rfc-*.pth``,
  ``propainter-*.pth``): from ``weights_dir`` when given, otherwise pytorchcv downloads them into
  ``~/.torch/models``. The official sczhou/ProPainter ``.pth`` files use other key names and do not
  load. ProPainter and those weights are under the non-commercial S-Lab licence.

``auto`` uses ProPainter when it can run (package importable and CUDA available), the median
otherwise (and after any ProPainter failure, with a warning).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .. import image_ops

log = logging.getLogger("MIMO")

METHODS = ("auto", "median", "propainter")
PROPAINTER_SHORT_SIDE = 480  # official resize_ratio = 480 / min(crop_h, crop_w)
PROPAINTER_WEIGHTS = ("raft_things", "propainter_rfc", "propainter")
TELEA_RADIUS = 5

Progress = Callable[[int, int], None]


def dilate_masks(masks: torch.Tensor, iterations: int) -> torch.Tensor:
    """Binary dilation with the 3x3 cross, ``iterations`` times (as scipy's binary_dilation, which
    the official ProPainter call uses): a diamond of radius ``iterations``. Bool [F,H,W] in and out."""
    m = masks.bool()
    if iterations <= 0 or not m.any():
        return m
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    out = [torch.from_numpy(cv2.dilate(f.numpy().astype(np.uint8), kernel, iterations=int(iterations)) > 0)
           for f in m]
    return torch.stack(out)


# ----------------------------------------------------------------------------- median


def _strip_rows(n: int, w: int, budget_bytes: int = 192 << 20) -> int:
    return max(1, budget_bytes // max(1, n * w * 3 * 4 * 2))


def _telea(image: np.ndarray, hole: np.ndarray, radius: int = TELEA_RADIUS) -> np.ndarray:
    """cv2.inpaint (Telea) of a 0..1 float [H,W,3] image, channel by channel in float32 (no 8-bit
    rounding). OpenCV's Telea is tuned for 0..255 values (on 0..1 floats it returns garbage), so the
    channels are scaled to 0..255 for it."""
    import cv2

    hole8 = hole.astype(np.uint8) * 255
    chans = [cv2.inpaint(np.ascontiguousarray(image[..., c] * 255.0, dtype=np.float32), hole8, radius,
                         cv2.INPAINT_TELEA) for c in range(image.shape[-1])]
    return np.clip(np.stack(chans, -1) / 255.0, 0.0, 1.0)


def median_inpaint(frames: torch.Tensor, masks: torch.Tensor, *, window: int = 0,
                   progress: Progress | None = None) -> torch.Tensor:
    """The temporal-median back end (see the module doc). ``masks`` are bool [F,H,W], already dilated."""
    n, h, w, _ = frames.shape
    if bool(masks.all()):
        raise ValueError("The mask covers every pixel of every frame: there is nothing to fill the scene from. "
                         "Check the mask (is it inverted?).")
    window = int(window)
    blocks: list[tuple[int, int, int, int]] = []  # (start, end, window_lo, window_hi)
    if 0 < window < n:
        step = max(1, window // 4)
        for s in range(0, n, step):
            e = min(n, s + step)
            mid = (s + e) // 2
            lo = max(0, min(mid - window // 2, n - window))
            blocks.append((s, e, lo, lo + window))
    out = torch.empty(n, h, w, 3, dtype=torch.float32)
    median = torch.empty(h, w, 3, dtype=torch.float32)
    rows = _strip_rows(n, w)
    strips = list(range(0, h, rows))
    for k, r0 in enumerate(strips):
        r1 = min(h, r0 + rows)
        x = frames[:, r0:r1].clone()
        m = masks[:, r0:r1]
        x[m] = float("nan")
        whole = torch.nanmedian(x, dim=0).values  # NaN where the pixel was masked in every frame
        median[r0:r1] = whole
        if not blocks:
            out[:, r0:r1] = torch.where(m[..., None], whole.expand_as(x), frames[:, r0:r1])
        else:
            for s, e, lo, hi in blocks:
                local = torch.nanmedian(x[lo:hi], dim=0).values
                local = torch.where(torch.isnan(local), whole, local)
                out[s:e, r0:r1] = torch.where(m[s:e, ..., None], local.expand(e - s, *local.shape),
                                              frames[s:e, r0:r1])
        if progress is not None:
            progress(k + 1, len(strips) + 1)
    hole = torch.isnan(median[..., 0])
    if bool(hole.any()):
        log.info("Scene: %d pixels are covered in every frame; filling them spatially (OpenCV Telea).",
                 int(hole.sum()))
        filled = torch.from_numpy(_telea(torch.nan_to_num(median).numpy(), hole.numpy()))
        bad = torch.isnan(out)
        out[bad] = filled.expand_as(out)[bad]
    if progress is not None:
        progress(len(strips) + 1, len(strips) + 1)
    return out


# ----------------------------------------------------------------------------- ProPainter


def propainter_available() -> bool:
    """The ``propainter`` package (and its ``pytorchcv`` networks) importable and CUDA present."""
    if not torch.cuda.is_available():
        return False
    try:
        import propainter.propainter_video  # noqa: F401
    except Exception:  # noqa: BLE001 - any import problem means "not usable"
        return False
    return True


@dataclass
class ProPainterWeights:
    """Paths of pytorchcv's converted ProPainter weights (None: pytorchcv downloads its own)."""

    raft: str | None = None
    flow_completion: str | None = None
    propainter: str | None = None

    @classmethod
    def find(cls, folder: str | None) -> ProPainterWeights:
        """The three files in ``folder`` by pytorchcv's names (``raft_things-*``, ``propainter_rfc-*``,
        ``propainter-*``); missing ones stay None."""
        import os

        found = {}
        if folder and os.path.isdir(folder):
            for name in sorted(os.listdir(folder)):
                if not name.endswith((".pth", ".pt")):
                    continue
                stem = name.split("-")[0].split(".")[0]
                if stem in PROPAINTER_WEIGHTS and stem not in found:
                    found[stem] = os.path.join(folder, name)
        return cls(found.get("raft_things"), found.get("propainter_rfc"), found.get("propainter"))


def _union_box(masks: torch.Tensor, pad: int) -> tuple[int, int, int, int] | None:
    any_m = masks.any(0)
    if not bool(any_m.any()):
        return None
    ys = torch.nonzero(any_m.any(1)).flatten()
    xs = torch.nonzero(any_m.any(0)).flatten()
    h, w = any_m.shape
    return (max(0, int(xs[0]) - pad), min(w, int(xs[-1]) + 1 + pad), max(0, int(ys[0]) - pad),
            min(h, int(ys[-1]) + 1 + pad))


def run_propainter(frames_u8: np.ndarray, masks_u8: np.ndarray, *, resize_ratio: float, dilate: int,
                   weights: ProPainterWeights, use_cuda: bool, raft_model=None, flow_model=None,
                   pp_model=None) -> np.ndarray:
    """One ProPainter pass over uint8 frames [F,H,W,3] and 0/1 masks [F,H,W] (pytorchcv's streaming
    iterator, 80-frame windows, stride 5, step 10 as the official settings); returns uint8 [F,H,W,3].

    The ``*_model`` arguments take ready modules instead of weight paths (tests use stand-ins). The
    package's own ``ScaledProPainterIterator`` does not pass ``use_cuda`` on to its sequencers, so
    they are built here."""
    from propainter import propainter_video as ppv
    from pytorchcv.models.propainter_stream import ProPainterIterator

    frames_seq = ppv.FrameSequencer(data=frames_u8, image_resize_ratio=resize_ratio, use_cuda=use_cuda)
    masks_seq = ppv.MaskSequencer(data=masks_u8, image_resize_ratio=resize_ratio, mask_dilation=max(1, dilate),
                                  use_cuda=use_cuda)
    it = ProPainterIterator(frames=frames_seq, masks=masks_seq,
                            raft_model=raft_model if raft_model is not None else weights.raft,
                            pprfc_model=flow_model if flow_model is not None else weights.flow_completion,
                            pp_model=pp_model if pp_model is not None else weights.propainter,
                            use_cuda=use_cuda, pp_window_size=80, pp_stride=5, step=10)
    it.main_sequencer = ppv.ProPainterSIMSequencer(inp_frames=it.inp_frame_sequencer, raw_frames=frames_u8,
                                                   raw_masks=masks_u8, rescaler=frames_seq.rescaler,
                                                   post_raw_mask_dilation=max(1, dilate))
    chunks = [np.asarray(c) for c in it]
    out = np.concatenate(chunks) if chunks else frames_u8.copy()
    if out.shape != frames_u8.shape:
        raise RuntimeError(f"ProPainter returned {out.shape}, expected {frames_u8.shape}.")
    return out


def propainter_inpaint(frames: torch.Tensor, masks: torch.Tensor, *, dilate: int = 4,
                       weights: ProPainterWeights | None = None, device: torch.device | None = None,
                       short_side: int = PROPAINTER_SHORT_SIDE, progress: Progress | None = None,
                       **models) -> torch.Tensor:
    """ProPainter on the union box of the (undilated, bool) masks, scaled so its short side is
    ``short_side`` (official 480), pasted back into the frames."""
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available()
                                                                              else "cpu")
    use_cuda = device.type == "cuda"
    n = frames.shape[0]
    box = _union_box(masks, pad=2 * max(1, dilate))
    if box is None:
        return frames.clone()
    x0, x1, y0, y1 = box
    crop = image_ops.uint8_frames(frames[:, y0:y1, x0:x1])
    crop_m = masks[:, y0:y1, x0:x1].numpy().astype(np.uint8)
    ratio = short_side / min(y1 - y0, x1 - x0)
    weights = weights or ProPainterWeights()
    log.info("ProPainter (non-commercial S-Lab licence) on a %dx%d crop of %d frames, scale %.3f.",
             x1 - x0, y1 - y0, n, ratio)
    result, last_error = None, None
    for _attempt in range(4):
        if min(int(ratio * (x1 - x0)), int(ratio * (y1 - y0))) < 8:
            break
        try:
            result = run_propainter(crop, crop_m, resize_ratio=ratio, dilate=dilate, weights=weights,
                                    use_cuda=use_cuda, **models)
            break
        except (ImportError, FileNotFoundError):
            raise
        except Exception as error:  # noqa: BLE001 - official behaviour: retry smaller after any failure
            last_error = error
            log.warning("ProPainter failed at scale %.3f (%s); retrying at 0.75x.", ratio, error)
            ratio *= 0.75
            if use_cuda:
                torch.cuda.empty_cache()
    if result is None:
        raise RuntimeError(f"ProPainter failed on this {x1 - x0}x{y1 - y0} crop at every scale tried: "
                           f"{last_error}") from last_error
    out = frames.clone()
    filled = image_ops.to_image(result)
    region = dilate_masks(masks, dilate)[:, y0:y1, x0:x1]
    out[:, y0:y1, x0:x1] = torch.where(region[..., None], filled, frames[:, y0:y1, x0:x1])
    if progress is not None:
        progress(1, 1)
    return out


# ----------------------------------------------------------------------------- entry point


def inpaint_scene(frames, masks, *, method: str = "auto", dilate: int = 4, window: int = 0,
                  threshold: float = 0.5, propainter_weights: str | ProPainterWeights | None = None,
                  device: torch.device | str | None = None, progress: Progress | None = None) -> torch.Tensor:
    """The scene behind the masked pixels, per frame.

    frames: [F,H,W,3] 0..1; masks: [F,H,W] (or one [H,W] for the whole clip), 1 = remove (the person).
    Pixels with mask > ``threshold`` are removed, after ``dilate`` iterations of a 3x3-cross dilation
    (covers soft edges and compression halos). Returns float32 [F,H,W,3] on the CPU; unmasked pixels
    are the frame's own.
    method: "median", "propainter" or "auto" (see the module doc).
    window: median only; 0 = whole clip, N = sliding median over N frames.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown inpaint method '{method}': use one of {', '.join(METHODS)}.")
    x = image_ops.as_frames(frames, single_ok=True)
    m = image_ops.as_masks(masks, x, "mask") > float(threshold)
    if not bool(m.any()):
        log.info("Scene: the mask is empty, the frames are the scene.")
        return x.clone()
    if method == "propainter" or (method == "auto" and propainter_available()):
        if not propainter_available():
            raise RuntimeError(
                "ProPainter needs the 'propainter' package (pip install --no-deps propainter pytorchcv scipy) "
                "and a CUDA GPU; "
                + ("CUDA is not available here." if not torch.cuda.is_available()
                   else "the package could not be imported.")
                + " Use method 'median' (exact on a static camera) instead.")
        weights = (propainter_weights if isinstance(propainter_weights, ProPainterWeights)
                   else ProPainterWeights.find(propainter_weights))
        try:
            return propainter_inpaint(x, m, dilate=dilate, weights=weights, device=device, progress=progress)
        except Exception as error:
            if method == "propainter":
                raise
            log.warning("ProPainter failed (%s): falling back to the temporal median.", error)
    return median_inpaint(x, dilate_masks(m, dilate), window=window, progress=progress)
