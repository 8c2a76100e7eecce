"""A small SAM3-layout teacher written as the official checkpoint, for tests that need a real (random) encoder."""

from __future__ import annotations

from pathlib import Path


def tiny_sam3_teacher(folder: Path, layers: int = 1, mlp_width: int = 128, seed: int = 0) -> str:
    """Write a seeded width-64 SAM3 text tower to FOLDER/sam3.pt; returns its encoder spec."""
    import torch

    from anatomy.encoders.checkpoints import save_state_dict
    from anatomy.encoders.sam3 import Sam3Config, Sam3Text, official_state_dict

    torch.manual_seed(seed)
    module = Sam3Text(Sam3Config(width=64, layers=layers, mlp_width=mlp_width))
    path = Path(folder) / "sam3.pt"
    save_state_dict(official_state_dict(module), path)
    return f"sam3:{path}"
