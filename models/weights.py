"""Reading weight files safely: safetensors, or torch pickles with ``weights_only=True`` (a model
file must never run code)."""

from pathlib import Path

import torch
from safetensors.torch import load_file

from .errors import MIMOInputError

WRAPPERS = ("state_dict", "module", "model")


class CheckpointError(MIMOInputError):
    """A model file that cannot be used where it was given; the message says what to do."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Model file not found: {path}")
    try:
        if path.suffix.lower() == ".safetensors":
            sd = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or truncated file, a pickle that wants to run code ...
        raise CheckpointError(f"Could not read {path.name} ({path}): {e}. Re-download the file.") from e
    unwrapped = True
    while unwrapped and isinstance(sd, dict):
        unwrapped = False
        for key in WRAPPERS:
            if isinstance(sd.get(key), dict):
                sd, unwrapped = sd[key], True
                break
    tensors = ({k: v for k, v in sd.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
               if isinstance(sd, dict) else {})
    if not tensors:
        raise CheckpointError(f"{path.name} ({path}) holds no weights (not a tensor state dict).")
    return tensors
