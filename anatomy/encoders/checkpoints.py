"""Strict checkpoint loading shared by every encoder, the students and distillation.

Upstream loaders have shipped silent partial loads (`strict=False`), so here every difference between a
checkpoint and the module it is loaded into is either converted and REPORTED (a wrapping {"model": ...},
a key prefix, a dtype, a positional table of another length) or it is an error that lists the missing,
unexpected and mis-shaped keys.

    state, notes = read_state_dict(path)              # .pt / .pth / .bin / .safetensors, unwrapped
    state = take_prefix(state, prefix, notes)          # keep one sub-model's keys, prefix removed
    report = load_strict(module, state, source=path, notes=notes,
                         resize={"positional_embedding": resize_positions})
    report.notes -> ["unwrapped {'model': ...}", "converted 391 tensors bfloat16 -> float32", ...]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from anatomy.errors import CheckpointError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Wrappers that training scripts put around the weights; the first one present is unwrapped.
WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "module")
MAX_LISTED = 12  # keys named per category in an error message; the rest are counted


@dataclass
class LoadReport:
    """What load_strict did: the source, how many tensors went in, and every conversion made."""

    source: str
    n_tensors: int
    n_parameters: int
    notes: list[str] = field(default_factory=list)


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Tensors of a checkpoint file as {key: tensor} on CPU, unwrapped, with notes on what was unwrapped."""
    import torch

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found", "check the path in the encoder spec")
    notes: list[str] = []
    raw: object  # whatever the file holds: a tensor dict, maybe wrapped, or something else entirely
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            raw = load_file(str(path), device="cpu")
        except Exception as error:  # safetensors raises its own error types for corrupt headers
            raise CheckpointError(
                f"{path}: not a readable safetensors file, truncated or corrupt ({error})"
            ) from None
    else:
        raw = _torch_load(path)
    while isinstance(raw, Mapping) and not _is_tensor_dict(raw):
        wrapper = next((k for k in WRAPPER_KEYS if isinstance(raw.get(k), Mapping)), None)
        if wrapper is None:
            raise CheckpointError(
                f"{path}: no tensor dictionary found (top-level keys: {sorted(map(str, raw))[:MAX_LISTED]})",
                f"expected the weights at the top level or under one of {list(WRAPPER_KEYS)}",
            )
        notes.append(f"unwrapped {{'{wrapper}': ...}}")
        raw = raw[wrapper]
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: holds a {type(raw).__name__}, not a dictionary of tensors")
    state = {str(k): v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    dropped = len(raw) - len(state)
    if dropped:
        notes.append(f"ignored {dropped} non-tensor entries")
    return state, notes


TORCH_HINT = "give a .pt/.pth/.bin file written by torch.save, or a .safetensors file"


def torch_file_kind(path: Path) -> str:
    """'zip' (torch.save's format), 'pickle' (torch's legacy format) or 'other', from the first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"  # a pickle protocol marker: torch.save(..., _use_new_zipfile_serialization=False)
    return "other"


def _torch_load(path: Path, weights_only: bool = True):
    """torch.load with one-line errors: not a checkpoint, truncated/corrupt, or refused by weights_only."""
    import zipfile

    import torch

    try:
        kind = torch_file_kind(path)
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read ({error.strerror or error})") from None
    if kind == "other":
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint (neither a torch.save archive nor a pickle)", TORCH_HINT
        )
    if kind == "zip" and not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path}: truncated or corrupt PyTorch checkpoint (its zip directory is missing)",
            "the file was cut short (a killed copy or download?): write or download it again",
        )
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=kind == "zip")
        except RuntimeError:
            if kind != "zip":
                raise
            return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as error:  # pickle, zip and torch errors alike: one line, never torch's advice text
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if weights_only and "weights_only" in str(error):
            raise CheckpointError(
                f"{path}: holds Python objects other than tensors and plain containers; not loaded",
                "only weights are loaded (weights_only=True); re-save the state_dict alone",
            ) from None
        raise CheckpointError(
            f"{path}: corrupt PyTorch checkpoint ({type(error).__name__}: {first})"
        ) from None


def load_torch_state(path: str | Path):
    """A full torch.save payload we wrote ourselves (a distill run's state.pt) on CPU, with one-line errors."""
    return _torch_load(Path(path), weights_only=False)


def _is_tensor_dict(obj: Mapping) -> bool:
    import torch

    return any(isinstance(v, torch.Tensor) for v in obj.values())


def find_prefix(keys: Iterable[str], suffix: str) -> str | None:
    """The prefix before `suffix` in the shortest key ending with it (None when no key does)."""
    hits = sorted((k for k in keys if k == suffix or k.endswith("." + suffix)), key=len)
    return hits[0][: len(hits[0]) - len(suffix)] if hits else None


def take_prefix(state: Mapping[str, torch.Tensor], prefix: str, notes: list[str] | None = None) -> dict:
    """The keys under `prefix` with it removed; other keys (e.g. a vision tower) are counted in notes."""
    if not prefix:
        return dict(state)
    kept = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if notes is not None:
        notes.append(f"stripped key prefix '{prefix}'")
        if len(state) > len(kept):
            notes.append(
                f"ignored {len(state) - len(kept)} keys outside '{prefix}' (other parts of the model)"
            )
    return kept


def resize_positions(table: torch.Tensor, length: int) -> torch.Tensor:
    """A positional table resized along its length axis by linear interpolation (align_corners=False).

    Accepts [T, D] or [1, 1, T, D] (LiteText); bilinear interpolation of [1, 1, T, D] to (L, D) is exactly
    linear interpolation along T, which is what this computes, so both layouts give the same rows.
    """
    import torch.nn.functional as F

    shape = table.shape
    rows = table.reshape(shape[-2], shape[-1]).float()
    resized = F.interpolate(rows.T.unsqueeze(0), size=length, mode="linear", align_corners=False)[0].T
    return resized.reshape(*shape[:-2], length, shape[-1]).to(table.dtype)


def load_strict(
    module: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str | Path,
    notes: list[str] | None = None,
    resize: Mapping[str, Callable[[torch.Tensor, int], torch.Tensor]] | None = None,
    ignore: Iterable[str] = (),
) -> LoadReport:
    """Copy `state` into `module`, all or nothing.

    - every key of module.state_dict() must be present with the same shape, and no other key may be present
      (keys listed in `ignore`, e.g. derived buffers like `position_ids`, are dropped and reported);
    - a key named in `resize` whose shape differs only in its length axis (-2) is resized with the given
      function and reported, never sliced silently;
    - floating dtypes are converted to the module's dtype and the conversions reported;
    - a module built under `torch.device("meta")` receives the checkpoint tensors themselves (no copy).
    """
    notes = list(notes or [])
    resize = dict(resize or {})
    target = module.state_dict()
    state = dict(state)
    ignored = sorted(k for k in ignore if k in state and k not in target)
    for key in ignored:
        del state[key]
    if ignored:
        notes.append(f"ignored derived entries {ignored}")

    missing = sorted(k for k in target if k not in state)
    unexpected = sorted(k for k in state if k not in target)
    misshaped, ready = [], {}
    for key in sorted(k for k in target if k in state):
        want, have = target[key], state[key]
        tensor = have
        if tuple(have.shape) != tuple(want.shape):
            same_but_length = (
                key in resize
                and have.dim() == want.dim()
                and have.dim() >= 2
                and have.shape[:-2] == want.shape[:-2]
                and have.shape[-1] == want.shape[-1]
            )
            if not same_but_length:
                misshaped.append(f"{key}: checkpoint {list(have.shape)} vs model {list(want.shape)}")
                continue
            tensor = resize[key](have, want.shape[-2])
            notes.append(
                f"resized {key} from {have.shape[-2]} to {want.shape[-2]} positions by linear interpolation"
            )
        ready[key] = tensor
    if missing or unexpected or misshaped:
        raise CheckpointError(
            f"{source}: checkpoint does not match the {type(module).__name__} architecture: "
            + "; ".join(
                part
                for part in (
                    _listing("missing", missing),
                    _listing("unexpected", unexpected),
                    _listing("mis-shaped", misshaped),
                )
                if part
            ),
            "check that the spec names the right architecture (e.g. litetext-s1 vs litetext-l) and that the "
            "file is not truncated; nothing was loaded",
        )

    conversions: dict[tuple[str, str], int] = {}
    for key, tensor in ready.items():
        want = target[key]
        if tensor.dtype != want.dtype:
            if not (tensor.is_floating_point() and want.is_floating_point()):
                raise CheckpointError(
                    f"{source}: {key} has dtype {tensor.dtype}, the model expects {want.dtype}"
                )
            pair = (str(tensor.dtype).removeprefix("torch."), str(want.dtype).removeprefix("torch."))
            conversions[pair] = conversions.get(pair, 0) + 1
            ready[key] = tensor.to(want.dtype)
    for (src, dst), count in sorted(conversions.items()):
        notes.append(f"converted {count} tensors {src} -> {dst}")

    # A module built on the meta device (no memory, no random init) takes the checkpoint's tensors as they
    # are (assign): a memory-mapped .pt then loads without a copy.
    on_meta = any(t.is_meta for t in module.state_dict().values())
    module.load_state_dict(ready, strict=True, assign=on_meta)
    param_names = {name for name, _ in module.named_parameters()}
    n_params = sum(int(ready[k].numel()) for k in ready if k in param_names)
    for note in notes:
        log.info("%s: %s", source, note)
    return LoadReport(source=str(source), n_tensors=len(ready), n_parameters=n_params, notes=notes)


def _listing(label: str, keys: list[str]) -> str:
    if not keys:
        return ""
    shown = ", ".join(keys[:MAX_LISTED])
    more = f" (+{len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else ""
    return f"{len(keys)} {label} [{shown}{more}]"


def save_state_dict(
    state: Mapping[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
):
    """Write tensors atomically as .safetensors (contiguous copies) or a torch .pt/.pth file."""
    from anatomy.io import atomic_path

    path = Path(path)
    # clone: safetensors refuses tensors that share storage (tied weights, views of one buffer)
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(tensors, str(tmp), metadata=metadata)
        else:
            save_torch(tensors, tmp)
    return path


def save_torch(obj, path: str | Path) -> None:
    """torch.save through a file handle: the archive's root folder is then always 'archive', so the same
    object gives the same bytes whatever the (temporary) file name."""
    import torch

    with open(path, "wb") as handle:
        torch.save(obj, handle)


def clean_temporaries(directory: str | Path, names: Iterable[str]) -> list[Path]:
    """Remove the temporary files a killed atomic writer (anatomy.io) left beside `names` in `directory`.

    atomic_path writes '.STEM.XXXX.SUFFIX' and atomic_write '.NAME.XXXX.tmp'; returns what was removed.
    """
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for name in names:
        stem, suffix = Path(name).stem, Path(name).suffix
        for pattern in (f".{stem}.*{suffix}", f".{name}.*.tmp"):
            for stale in directory.glob(pattern):
                if stale.is_file() and stale.name != name:
                    stale.unlink(missing_ok=True)
                    removed.append(stale)
    for stale in removed:
        log.warning("%s: removed a temporary file left by an interrupted write", stale)
    return removed
