"""The --device option: cpu, cuda, cuda:N or mps, refused (as a usage error) when this machine lacks it."""

from __future__ import annotations

import re

from anatomy.errors import OptionError

DEVICE_HELP = "use cpu, cuda, cuda:N or mps (default: cuda when available, else cpu)"


def check_device(device: str | None, option: str = "--device") -> str | None:
    """The device string, normalised, or OptionError naming the option; None stays None (the default)."""
    if device is None:
        return None
    text = device.strip().lower()
    match = re.fullmatch(r"cpu|mps|cuda(?::(\d+))?", text)
    if match is None:
        raise OptionError(option, f"'{device}' is not a device", DEVICE_HELP)
    if text == "cpu":
        return text
    import torch

    if text == "mps":
        if not torch.backends.mps.is_available():
            raise OptionError(option, "mps is not available on this machine", "use --device cpu")
        return text
    if not torch.cuda.is_available():
        raise OptionError(option, f"'{device}': CUDA is not available on this machine", "use --device cpu")
    count, index = torch.cuda.device_count(), int(match.group(1) or 0)
    if index >= count:
        raise OptionError(
            option,
            f"'{device}' does not exist",
            f"this machine has {count} GPU(s): cuda:0 .. cuda:{count - 1}",
        )
    return text
