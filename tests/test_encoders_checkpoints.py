"""Strict checkpoint loading: every conversion reported, every mismatch an error naming the keys."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from anatomy.encoders.checkpoints import (
    find_prefix,
    load_strict,
    read_state_dict,
    resize_positions,
    save_state_dict,
    take_prefix,
)
from anatomy.errors import CheckpointError


class Tiny(nn.Module):
    def __init__(self, positions: int = 8):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.pos = nn.Parameter(torch.zeros(positions, 4))
        self.proj = nn.Linear(4, 3)


def weights(positions: int = 8, dtype=torch.float32) -> dict:
    torch.manual_seed(0)
    return {k: torch.randn_like(v).to(dtype) for k, v in Tiny(positions).state_dict().items()}


def test_wrapped_prefixed_bf16_checkpoint_loads_and_reports(tmp_path):
    state = weights(dtype=torch.bfloat16)
    torch.save(
        {"model": {"text." + k: v for k, v in state.items()} | {"vision.w": torch.zeros(1)}, "epoch": 3},
        tmp_path / "ckpt.pt",
    )
    raw, notes = read_state_dict(tmp_path / "ckpt.pt")
    assert notes == ["unwrapped {'model': ...}"]
    prefix = find_prefix(raw, "embed.weight")
    assert prefix == "text."
    module = Tiny()
    report = load_strict(module, take_prefix(raw, prefix, notes), source="ckpt.pt", notes=notes)
    assert report.notes == [
        "unwrapped {'model': ...}",
        "stripped key prefix 'text.'",
        "ignored 1 keys outside 'text.' (other parts of the model)",
        "converted 4 tensors bfloat16 -> float32",
    ]
    assert report.n_tensors == 4 and report.n_parameters == 10 * 4 + 8 * 4 + 4 * 3 + 3
    assert torch.equal(module.proj.weight, state["proj.weight"].float())


def test_mismatches_are_listed_and_nothing_is_loaded():
    state = weights()
    del state["proj.bias"]
    state["extra.weight"] = torch.zeros(2)
    state["embed.weight"] = torch.zeros(11, 4)
    module = Tiny()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        load_strict(module, state, source="bad.pt")
    message = str(info.value)
    assert "1 missing [proj.bias]" in message
    assert "1 unexpected [extra.weight]" in message
    assert "1 mis-shaped [embed.weight: checkpoint [11, 4] vs model [10, 4]]" in message
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())  # no partial load


def test_positional_table_of_another_length_is_resized_and_reported():
    state = weights(positions=16)
    module = Tiny(positions=8)
    report = load_strict(module, state, source="s", resize={"pos": resize_positions})
    assert "resized pos from 16 to 8 positions by linear interpolation" in report.notes
    # independent reference: bilinear (align_corners=False) on the [1, 1, T, D] LiteText layout
    expected = F.interpolate(state["pos"][None, None], size=(8, 4), mode="bilinear", align_corners=False)[
        0, 0
    ]
    torch.testing.assert_close(module.pos.data, expected)
    # without a resize rule the same difference is an error
    with pytest.raises(CheckpointError, match="pos: checkpoint \\[16, 4\\] vs model \\[8, 4\\]"):
        load_strict(Tiny(8), state, source="s")


def test_resize_keeps_the_litetext_layout():
    table = torch.arange(2 * 3, dtype=torch.float32).reshape(1, 1, 2, 3)
    out = resize_positions(table, 4)
    assert out.shape == (1, 1, 4, 3)
    # known answer for align_corners=False: 2 -> 4 samples at 0, 0.25, 0.75, 1 of the way (clamped ends)
    torch.testing.assert_close(out[0, 0, :, 0], torch.tensor([0.0, 0.75, 2.25, 3.0]))


@pytest.mark.parametrize("name", ["w.safetensors", "w.pth"])
def test_save_and_read_round_trip(tmp_path, name):
    state = weights()
    state["tied"] = state["embed.weight"]  # shared storage must still save
    save_state_dict(state, tmp_path / name)
    back, notes = read_state_dict(tmp_path / name)
    assert notes == [] and set(back) == set(state)
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_unreadable_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        read_state_dict(tmp_path / "nope.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="junk.safetensors: not a readable safetensors file"):
        read_state_dict(tmp_path / "junk.safetensors")
    torch.save({"config": {"a": 1}}, tmp_path / "cfg.pt")
    with pytest.raises(CheckpointError, match="no tensor dictionary found"):
        read_state_dict(tmp_path / "cfg.pt")


def test_meta_module_takes_the_checkpoint_tensors(tmp_path):
    """A module built on the meta device (no init) is filled from the file; same values as a normal load."""
    state = weights(dtype=torch.bfloat16)
    torch.save(state, tmp_path / "w.pt")
    raw, notes = read_state_dict(tmp_path / "w.pt")
    with torch.device("meta"):
        module = Tiny()
    report = load_strict(module, raw, source="w.pt", notes=notes)
    assert not any(p.is_meta for p in module.parameters())
    assert report.notes == ["converted 4 tensors bfloat16 -> float32"]
    assert all(torch.equal(module.state_dict()[k], v.float()) for k, v in state.items())
