"""Optional torch.compile of the denoiser's memory-bound cores (``MIMOUNet.set_compiled``).

Only pure pointwise and normalisation functions are compiled, no convolution or matmul, each fused
into one pass with no intermediate tensor written: a resnet's GroupNorm+SiLU (the second with the
first convolution's bias and the time embedding added before it) and its residual sum with the
convolutions' biases (the convolutions then run without bias: no pass of their own to add it); a
feed-forward's GEGLU gate (GELU and the product); a transformer's GroupNorm with the reordering of
its map into tokens (spatial: pixels, temporal: frames); a residual sum with the LayerNorm after it
(and the one-token cross-attention's value). One compiled function
serves every block width (dynamic shapes: a few graphs for the layouts and sizes, not one a block);
convolutions, matmuls, attention, the reference rows, row and token pieces and the cancel hooks
between modules stay as they are. Inductor keeps what it compiles on disk, so a later process
compiles faster.

When compiling fails (no C++ compiler for the CPU, no Triton for the GPU), every block runs
uncompiled, the same as with compile off; the reason is logged once and kept in ``failure()``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

RECOMPILE_LIMIT = 32  # graphs per compiled function (torch's default, 8, is for one model's forward)
_lock = threading.Lock()
_failure: list[str] = []  # the first compile failure of this process, if any


def failure() -> str | None:
    """Why compiled cores run uncompiled in this process (None: nothing failed)."""
    return _failure[0] if _failure else None


@functools.cache  # asked on every call of a compiled core (hundreds a forward): looked up once
def _compile_errors() -> tuple[type[BaseException], ...]:
    from torch._dynamo import exc  # TorchDynamoException covers BackendCompilerFailed and InductorError

    return tuple(getattr(exc, name) for name in ("TorchDynamoException", "FailOnRecompileLimitHit") if hasattr(exc, name))


@functools.cache
def _dynamo_settings() -> dict:
    """Room for the graphs a UNet's layouts and sizes need, and an error (not a quiet fall back to
    uncompiled code) past it; the names of torch 2.6 and later, the older one before."""
    from torch._dynamo import config

    if hasattr(config, "recompile_limit"):
        settings = {"recompile_limit": RECOMPILE_LIMIT}
        if hasattr(config, "fail_on_recompile_limit_hit"):
            settings["fail_on_recompile_limit_hit"] = True
        return settings
    return {"cache_size_limit": RECOMPILE_LIMIT}


CORES: list["CompiledCore"] = []  # every compiled core, in the order they were made


class CompiledCore:
    """``fn`` through ``torch.compile`` (made on first use), and ``fn`` itself once compiling failed."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self._compiled = None
        self.compiled_calls = 0  # calls handed to the compiled function (dynamo's counters say what it ran)
        CORES.append(self)

    def __call__(self, *args):
        if not _failure:
            if self._compiled is None:
                self._compiled = torch.compile(self.fn, dynamic=True)
            try:
                # Parameters as plain tensors: torch.compile keeps a parameter's shape static (one graph
                # per block width).
                with torch._dynamo.config.patch(**_dynamo_settings()):
                    out = self._compiled(*(a.detach() if isinstance(a, torch.nn.Parameter) else a for a in args))
                self.compiled_calls += 1
                return out
            except _compile_errors() as error:
                _record(self.fn, error)
        return self.fn(*args)


def _record(fn: Callable, error: BaseException) -> None:
    with _lock:
        if _failure:
            return
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        _failure.append(f"{fn.__name__}: {type(error).__name__}: {reason}")
    log.warning("MIMO: torch.compile failed, so the denoiser runs uncompiled (same output, eager speed): %s. "
                "On the CPU compiling needs a C++ compiler (g++); on an NVIDIA GPU it needs Triton "
                "(pip install triton). Turn compile off to skip the attempt.", _failure[0])
