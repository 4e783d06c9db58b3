"""Giving a model's memory back after a one-off use (long videos: no model outlives its step)."""

import gc

import torch


def release(model: torch.nn.Module) -> None:
    """Move ``model`` off the GPU and return the cached memory. The caller drops its own reference."""
    on_cuda = next(model.parameters()).device.type == "cuda"
    model.to("cpu")
    gc.collect()
    if on_cuda:
        torch.cuda.empty_cache()
