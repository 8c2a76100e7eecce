"""What a distillation run checks before its first expensive step (the teacher cache).

- the student: its config validated and its size computed from shapes alone (torch's meta device: no
  storage, no random init), and the memory that training it takes against what the device has;
- `--init SPEC`: the spec, its file and trained weights, and every tensor's shape against the student's,
  so a wrong source is refused before the teacher runs (its weights are kept for the copy after);
- `--resume`: the run's state.pt read and checked to belong to this run (anatomy.distill.rundir).

A hand-edited config of width 10^6 is one line naming the estimate and the machine's memory, not an
allocation of 197 GB.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from anatomy.errors import InputError, OptionError

log = logging.getLogger(__name__)

# fp32 weights, their gradients and AdamW's two moments: the floor of training memory (activations come on top)
TRAIN_BYTES_PER_PARAM = 16
# the projector's width is the teacher's, unknown before the teacher is loaded: left out of the estimate
# (width 1), so the estimate is a lower bound; the --init check never compares the projector (it is new)
ASSUMED_OUTPUT_DIM = 1
MAX_LAYERS = 512  # far beyond any text tower; more only builds Python objects for minutes
MAX_CONTEXT = 65_536  # far beyond any text encoder's positional table


@dataclass(frozen=True)
class StudentPlan:
    arch: dict  # StudentConfig fields (vocab size and output width as the run will resolve them)
    n_params: int
    train_bytes: int  # TRAIN_BYTES_PER_PARAM x parameters
    shapes: dict[str, tuple[int, ...]]  # the student's state-dict shapes (for --init)


def student_shapes(arch: dict, context: int) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes of a student config, built on the meta device (no memory, instant)."""
    import torch

    from anatomy.distill.config import student_config
    from anatomy.encoders.student import build_student

    cfg = student_config(arch, context)
    try:
        with torch.device("meta"):
            module = build_student(cfg)
    except (RuntimeError, ValueError, OverflowError, MemoryError) as error:  # shapes torch cannot represent
        why = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise InputError(f"student config {arch.get('architecture')}: cannot be built ({why})") from None
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def device_memory(device) -> tuple[int, str]:
    """(bytes, what they are) of the memory training on `device` draws from."""
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        props = torch.cuda.get_device_properties(device)
        return int(props.total_memory), f"{props.name}'s memory"
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no sysconf: no limit we can state
        return 0, "this machine's memory"
    return int(total), "this machine's memory"


def plan_student(student: str, context: int, vocab_size: int, output_dim: int | None, device) -> StudentPlan:
    """The student's config and size, refused (InputError) when training it cannot fit the device."""
    from anatomy.distill.config import MIN_CONTEXT, student_arch, student_config

    if context > MAX_CONTEXT:  # no text encoder has more positions; the teacher's own limit is checked later
        raise OptionError("--context", f"must be in [{MIN_CONTEXT}, {MAX_CONTEXT:,}], got {context:,}")
    _, arch = student_arch(student, vocab_size, output_dim or ASSUMED_OUTPUT_DIM, "clip")
    cfg = student_config(arch, context)  # validates every field (no tensors)
    if cfg.layers is not None and cfg.layers > MAX_LAYERS:
        raise InputError(
            f"student {student}: {cfg.layers:,} layers (at most {MAX_LAYERS} are supported)",
            "choose a student with fewer layers",
        )
    have, what = device_memory(device)
    # a lower bound from the config alone first, so an absurd width is refused before even a meta build
    if cfg.architecture == "custom":  # (the LiteText bodies have fixed, known sizes)
        _check_fits(student, rough_params(cfg), have, what, "at least ")
    shapes = student_shapes(arch, context)
    n_params = 0
    for shape in shapes.values():
        count = 1
        for d in shape:
            count *= d
        n_params += count
    _check_fits(student, n_params, have, what)
    need = n_params * TRAIN_BYTES_PER_PARAM
    log.debug("student %s: %d parameters, >= %.2f GiB to train", student, n_params, need / 2**30)
    return StudentPlan(arch, n_params, need, shapes)


def rough_params(cfg) -> int:
    """A lower bound of a custom (all-attention) student's parameters from its config: embedding table, the
    attention and MLP matrices of each layer, positions and projector (norms and biases left out)."""
    width, layers = int(cfg.width), int(cfg.layers)
    per_layer = (4 + 2 * int(cfg.mlp_ratio)) * width * width
    return (int(cfg.vocab_size) + int(cfg.context_length) + int(cfg.output_dim)) * width + layers * per_layer


def _check_fits(student: str, n_params: int, have: int, what: str, bound: str = "") -> None:
    need = n_params * TRAIN_BYTES_PER_PARAM
    if have and need > have:
        raise InputError(
            f"student {student}: {bound}{n_params:,} parameters need at least {need / 2**30:,.1f} GiB to "
            f"train (weights, gradients, AdamW state), more than {what} ({have / 2**30:,.1f} GiB)",
            "choose a smaller student (width, layers) or a device with more memory",
        )


def student_vocab_size(teacher: str, vocab) -> int:
    """The rows of the student's embedding table: the specialised vocabulary's, or the teacher tokenizer's."""
    if vocab is not None:
        return int(vocab.tokenizer.vocab_size)
    from anatomy.encoders.registry import load_tokenizer

    return int(load_tokenizer(teacher).vocab_size)


def preflight(cfg, vocab, dev, init: bool = True):
    """The student's config and size against the device, and the --init source against the student's shapes
    (its weights, ready to copy): all before the teacher cache. Returns the init plan, or None."""
    plan = plan_student(cfg.student, cfg.context, student_vocab_size(cfg.teacher, vocab), None, dev)
    if not (cfg.init and init):
        return None
    from anatomy.distill.init import plan_init

    return plan_init(cfg.init, plan.shapes, cfg.context)
