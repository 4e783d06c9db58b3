"""Reading weight files safely: safetensors, or torch pickles with ``weights_only=True`` (a model
file must never run code)."""

import pickle
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from .errors import MIMOInputError

WRAPPERS = ("state_dict", "module", "model")


class CheckpointError(MIMOInputError):
    """A model file that cannot be used where it was given; the message says what to do."""


def check_not_empty(path: Path) -> None:
    """A CheckpointError for a 0-byte file (an interrupted download or copy), before any reader sees it."""
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path.name} ({path}) is empty (0 bytes): the download or copy did not finish. "
                              "Re-download the file.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Model file not found: {path}")
    check_not_empty(path)
    try:
        if path.suffix.lower() == ".safetensors":
            sd = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only: a pickle that asks for code, or damaged bytes
        match = re.search(r"GLOBAL (\S+)", str(e))
        if match is None:
            raise CheckpointError(f"Could not read {path.name} ({path}): it is damaged or not a model file (not a "
                                  "torch checkpoint nor .safetensors). Re-download the file.") from e
        raise CheckpointError(f"Could not read {path.name} ({path}): refusing to load it, it holds pickled Python "
                              f"objects (code), not only weights (it asks for {match.group(1)}). MIMO never runs "
                              "code from a model file: get the file from its official site, or a .safetensors "
                              "version of it.") from None
    except Exception as e:  # corrupt or truncated file ...
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
