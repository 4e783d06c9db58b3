"""SAM 2's video predictor on frames held in memory, without patching the ``sam2`` package.

Frames never go through JPEG files: the clip stays in memory and is resized to the model's square
input exactly as SAM 2's loader does (uint8, PIL bicubic) and normalised a chunk of frames at a time,
only when the predictor asks for a frame.

``SAM2VideoPredictor.init_state`` reads frames with the module function ``load_video_frames`` (a JPEG
folder or an mp4 only) and ``propagate_in_video`` wraps its frames in ``tqdm``. Rather than replacing
those module attributes (which every other caller in the process would see), each call runs a copy of
the predictor's own method whose global names ``load_video_frames`` / ``tqdm`` are bound to ours
(``_with_names``): the installed sam2 code builds the state and tracks, and the ``sam2`` modules stay
untouched, also for another node tracking at the same time.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Iterator

import numpy as np
import torch
from PIL import Image

from .. import image_ops

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
OFFLOAD_STATE_AFTER = 96  # frames: keep SAM 2's per-frame memories on the CPU for longer clips on a GPU


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
            size = (self.size, self.size)
            x = [np.asarray(Image.fromarray(f).resize(size, Image.BICUBIC)) / 255.0
                 for f in image_ops.uint8_frames(self.frames, start, start + self.chunk)]
            x = torch.from_numpy(np.stack(x)).permute(0, 3, 1, 2).float()
            self._block, self._start = (x - self.mean) / self.std, start
        return self._block[i - start]


def _with_names(method: Callable, **names) -> Callable:
    """A copy of ``method`` (a function of the sam2 package, run in inference mode) that sees ``names``
    instead of its module's globals of the same names. Nothing is changed in the module. Raises when
    the installed sam2 does not use one of the names (another sam2 version than 1.1.0)."""
    func = inspect.unwrap(method)
    absent = [n for n in names if n not in func.__code__.co_names]
    if absent:
        import sam2

        raise RuntimeError(f"The installed sam2 ({getattr(sam2, '__version__', '?')}) has a {func.__qualname__} "
                           f"that does not use {', '.join(absent)}; this pack needs sam2 1.1.0 "
                           "(pip install sam2==1.1.0, see README).")
    copy = types.FunctionType(func.__code__, {**func.__globals__, **names}, func.__name__, func.__defaults__,
                              func.__closure__)
    copy.__kwdefaults__ = func.__kwdefaults__
    return torch.inference_mode()(copy)  # as the predictor's methods are decorated


def _passthrough(iterable, *args, **kwargs):
    return iterable


def init_state(model, frames: torch.Tensor, chunk: int = 16) -> dict:
    """SAM 2's inference state for in-memory frames [F, H, W, 3] (0..1)."""
    n, h, w = frames.shape[:3]
    offload = next(model.parameters()).device.type != "cpu" and n > OFFLOAD_STATE_AFTER
    images = SamFrames(frames, model.image_size, chunk)
    build = _with_names(type(model).init_state, load_video_frames=lambda **kw: (images, h, w))
    return build(model, video_path="<frames in memory>", offload_state_to_cpu=offload)


def propagate(model, state: dict, start: int, reverse: bool) -> Iterator[tuple[int, list, torch.Tensor]]:
    """``model.propagate_in_video`` from ``start`` one way, without SAM 2's own progress bar:
    (frame index, object ids, mask logits) per frame."""
    run = _with_names(type(model).propagate_in_video, tqdm=_passthrough)
    return run(model, state, start_frame_idx=start, reverse=reverse)


__all__ = ["SamFrames", "init_state", "propagate", "IMAGE_MEAN", "IMAGE_STD"]
