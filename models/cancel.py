"""Cancel points inside network forwards: a long forward (a denoiser window on the CPU, a depth chunk,
a SAM 2 frame) can be stopped between two layers instead of only between calls.

``checks_between_layers(check)`` installs one forward pre-hook for every ``nn.Module`` call while the
``with`` block runs (torch's module-wide hook, removed in ``finally``, so nothing outlives the call);
the hook calls ``check()`` at most every ``interval`` seconds, and ``check`` raises to cancel. The
hook holds no tensor, so a cancelled run leaves no reference to its tensors behind. TorchScript
modules (NLF) run without Python hooks: their loops check between batches."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

from torch.nn.modules import module as _module

INTERVAL = 0.1  # seconds between two checks at most (a cancel is seen well within a second)


@contextmanager
def checks_between_layers(check: Callable[[], None], interval: float = INTERVAL):
    """Call ``check()`` before module forwards (at most every ``interval`` s) in this thread, inside the block."""
    owner = threading.get_ident()
    last = [time.monotonic()]

    def hook(module, args):
        if threading.get_ident() != owner:  # another thread's networks are not this call's to cancel
            return None
        now = time.monotonic()
        if now - last[0] >= interval:
            last[0] = now
            check()
        return None

    handle = _module.register_module_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()
