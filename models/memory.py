"""Memory: giving a model's memory back after a one-off use (long videos: no model outlives its step),
and refusing a call that cannot fit before it starts (estimate vs the host memory available)."""

import gc

import torch


def release(model: torch.nn.Module) -> None:
    """Move ``model`` off the GPU and return the cached memory. The caller drops its own reference."""
    on_cuda = next(model.parameters()).device.type == "cuda"
    model.to("cpu")
    gc.collect()
    if on_cuda:
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- fitting a call in memory

GIB = 2**30
HOST_HEADROOM = 0.9  # share of the available host memory a call may plan for (the OS, ComfyUI, caches)


class NotEnoughMemoryError(MemoryError):
    """A call refused before it starts: the message has the estimate, the limit and what to change."""


def host_available_bytes() -> int | None:
    """Host memory available to new allocations now (psutil, else /proc/meminfo); None when unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # psutil missing (ComfyUI ships it) or unusable
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def check_fits(need: int, available: int | None, what: str, fix: str, where: str = "host memory (RAM)",
               headroom: float = HOST_HEADROOM) -> None:
    """Refuse ``what`` when ``need`` bytes exceed ``headroom`` x ``available`` (None: not known, allowed)."""
    if available is None:
        return
    limit = int(available * headroom)
    if need > limit:
        raise NotEnoughMemoryError(f"{what} needs about {gib(need)} of {where}, but only {gib(limit)} can be used "
                                   f"({gib(available)} available). Refused before starting, instead of swapping "
                                   f"or being killed: {fix}")


def check_host(need: int, what: str, fix: str) -> None:
    """``check_fits`` against the host memory available now."""
    check_fits(need, host_available_bytes(), what, fix)
