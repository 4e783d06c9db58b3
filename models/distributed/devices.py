"""The device list of the window-parallel sampler: 'auto' (one device, as without Ray) or a comma list."""

from ..errors import MIMOInputError


class DeviceListError(MIMOInputError):
    """A device list that cannot be used."""


def parse_devices(spec: str | None, cuda_count: int | None = None) -> list[str] | None:
    """'auto' / '' -> None (the single-device sampler); 'cuda:0,cuda:1' or 'cpu,cpu' -> the list, one
    worker per entry (an entry may repeat: two workers on one device). ``cuda_count``: CUDA devices
    visible here (default: torch's count)."""
    text = (spec or "").strip().lower()
    if text in ("", "auto"):
        return None
    items = [s.strip() for s in text.split(",")]
    if any(not s for s in items):
        raise DeviceListError(f"devices {spec!r} has an empty entry: write e.g. 'cuda:0,cuda:1' or 'cpu,cpu' "
                              "(or 'auto' for one device).")
    if cuda_count is None:
        import torch

        cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    out = []
    for item in items:
        if item == "cpu":
            out.append("cpu")
            continue
        kind, _, index = item.partition(":")
        if kind != "cuda" or not index.isdigit():
            raise DeviceListError(f"Unknown device {item!r} in devices {spec!r}: use 'cpu' or 'cuda:N' "
                                  "(N counted from 0), separated by commas, or 'auto'.")
        if int(index) >= cuda_count:
            have = "no CUDA device is available" if cuda_count == 0 else \
                f"this machine has {cuda_count} CUDA device{'s' if cuda_count > 1 else ''} (cuda:0 to cuda:{cuda_count - 1})"
            raise DeviceListError(f"Device {item!r} in devices {spec!r} does not exist: {have}.")
        out.append(f"cuda:{int(index)}")
    kinds = {d.split(":")[0] for d in out}
    if len(kinds) > 1:
        raise DeviceListError(f"devices {spec!r} mixes the CPU and CUDA devices: every step waits for the slowest "
                              "worker, so the CPU would hold the GPUs back. List devices of one kind.")
    return out
