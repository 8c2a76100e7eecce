"""What a distillation run is: the paper-era recipes, DistillConfig (every option with its allowed range,
checked when the config is made, before any work) and `resolve`, which makes every setting concrete.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from anatomy.errors import InputError, OptionError
from anatomy.paper import STUDENT_CONTEXT

DTYPES = ("auto", "fp32", "bf16")
MIN_CONTEXT = 2  # SOT + EOT


@dataclass(frozen=True)
class Recipe:
    """Paper-era settings per student at context 16 (shared/spec/encoders.md, 'Distillation recipe')."""

    w_cos: float
    w_cons: float
    lr: float
    epochs: int
    warmup_epochs: int
    batch_size: int
    clip: float


RECIPES = {
    "s0": Recipe(2.0, 0.1, 5e-3, 100, 10, 128, 1.0),
    "s1": Recipe(1.5, 0.1, 3e-3, 80, 8, 128, 1.0),
    "l": Recipe(1.0, 0.05, 1e-3, 60, 5, 128, 2.0),
}
CUSTOM_RECIPE = RECIPES["s0"]  # a custom student is small; S0's settings are the nearest paper-era ones
LR_REFERENCE_BATCH = 512  # lr is given for this global batch and scaled linearly to the real one
BETAS = (0.9, 0.999)


@dataclass(frozen=True)
class DistillConfig:
    """What a distillation run is; None means 'the student's paper-era default'."""

    teacher: str = "minilm"
    student: str = "s0"  # s0 | s1 | l | path to a JSON config with at least layers, width, heads
    corpus: str = ""
    context: int = STUDENT_CONTEXT
    epochs: int | None = None
    steps: int | None = None  # overrides epochs
    warmup_steps: int | None = None  # default: the recipe's warm-up epochs, scaled to the run's length
    batch_size: int | None = None  # global batch (all ranks together)
    lr: float | None = None  # at global batch 512; scaled by batch / 512
    w_cos: float | None = None
    w_cons: float | None = None
    clip: float | None = None
    weight_decay: float = 0.05
    eval_every: int = 200
    save_every: int | None = None  # default: eval_every
    eval_size: int = 1000  # held-out prompts (capped at 10% of the corpus)
    limit: int | None = None  # use a seeded sample of this many distinct prompts
    seed: int = 0
    dtype: str = "auto"  # auto (bf16 autocast on GPU, fp32 on CPU) | fp32 | bf16
    log_every: int = 10
    vocab: str | None = None  # a vocabulary (DIR or vocab.json from `anatomy vocab`): a specialised student
    init: str | None = None  # an encoder spec whose pretrained text tower the student starts from

    def __post_init__(self):
        check_options(self)


# Settings that may differ between a run and its resumption (where it runs, not what it computes); the
# vocabulary's path may move: its identity is the fingerprint in student_arch, which must not change.
RUNTIME_ONLY = ("cache_dir", "vocab")


def student_arch(student: str, vocab_size: int, output_dim: int, tokenizer: str) -> tuple[str, dict]:
    """(recipe name, StudentConfig fields) for s0 | s1 | l | CONFIG.json.

    Vocabulary, output dimension and tokenizer follow the teacher unless the JSON config sets them.
    """
    from anatomy.io import read_json

    shared = {"vocab_size": vocab_size, "output_dim": output_dim, "tokenizer": tokenizer}
    if student in RECIPES:
        return student, {"architecture": f"litetext-{student}", **shared}
    path = Path(student)
    if path.suffix != ".json" or not path.is_file():
        raise InputError(f"student '{student}' is neither s0, s1, l nor an existing JSON config file")
    example = 'e.g. {"layers": 4, "width": 256, "heads": 4}'
    try:
        arch = read_json(path)
    except RecursionError:
        raise InputError(f"{path}: not a student config (JSON nested too deeply to read)", example) from None
    if not isinstance(arch, dict):
        raise InputError(f"{path}: a student config is a JSON object, not {type(arch).__name__}", example)
    missing = [k for k in ("layers", "width", "heads") if k not in arch]
    if missing:
        raise InputError(f"{path}: student config lacks {', '.join(missing)}", example)
    if "vocab" in arch:  # set by resolve from --vocab's fingerprint; a path here would reach the checkpoint
        raise InputError(
            f"{path}: a student config does not take vocab",
            "remove vocab from the student config and give the vocabulary with --vocab DIR",
        )
    arch = {"architecture": "custom", **shared, **arch}
    recipe = arch.pop("recipe", "custom")
    if recipe != "custom" and (not isinstance(recipe, str) or recipe not in RECIPES):
        raise InputError(
            f"{path}: unknown recipe {recipe!r}",
            f"use one of {', '.join(RECIPES)} or custom (or leave it out)",
        )
    return recipe, arch


def student_config(arch: dict, context: int):
    """The StudentConfig of a run: `arch` at the run's --context (a config's own context_length must agree)."""
    from anatomy.encoders.student import StudentConfig

    if "context_length" in arch and arch["context_length"] != context:
        raise OptionError(
            "--context",
            f"is {context}, but the student config sets context_length {arch['context_length']!r}",
            f"give --context {arch['context_length']!r} or leave context_length out of the student config",
        )
    return StudentConfig.from_dict({**arch, "context_length": context}, "student config")


def resolve(cfg: DistillConfig, n_train: int, world: int, cache_meta: dict) -> dict:
    """Every setting of the run made concrete, as written to config.json."""
    # the student shares the teacher's tokenizer: CLIP BPE by name, any other through the teacher's spec
    tokenizer = "clip" if cache_meta["tokenizer"] == "clip" else cfg.teacher
    recipe_name, arch = student_arch(cfg.student, cache_meta["vocab_size"], cache_meta["dim"], tokenizer)
    follows = {"output_dim": cache_meta["dim"], "tokenizer": tokenizer}
    if not cache_meta.get("vocab"):  # with --vocab, the check below names the vocabulary
        follows["vocab_size"] = cache_meta["vocab_size"]
    for key, want in follows.items():
        if arch[key] != want:  # the student learns the teacher's outputs on the teacher's tokens
            raise InputError(
                f"{cfg.student} sets {key} {arch[key]!r}, but the teacher {cfg.teacher} gives {want!r}",
                f"leave {key} out of the student config: it follows the teacher",
            )
    if cache_meta.get("vocab"):  # a specialised student (anatomy.distill.vocab_student.specialise_cache)
        if arch["vocab_size"] != cache_meta["vocab_size"]:
            raise InputError(
                f"{cfg.student} sets vocab_size {arch['vocab_size']}, but the vocabulary {cfg.vocab} keeps "
                f"{cache_meta['vocab_size']} tokens",
                "leave vocab_size out of the student config when training with --vocab",
            )
        arch["vocab"] = cache_meta["vocab"]
    student_config(arch, cfg.context)  # validate now, before any training
    recipe = RECIPES.get(recipe_name, CUSTOM_RECIPE)
    batch = cfg.batch_size or recipe.batch_size
    if batch % world:
        raise InputError(f"global batch {batch} is not divisible by the {world} processes")
    if batch > n_train:
        raise InputError(
            f"batch size {batch} exceeds the {n_train} training prompts", "use a smaller --batch-size"
        )
    steps_per_epoch = n_train // batch  # drop_last: every step sees a full global batch
    epochs = cfg.epochs or recipe.epochs
    total = cfg.steps or epochs * steps_per_epoch
    if cfg.warmup_steps is not None:
        warmup = cfg.warmup_steps
    else:  # the recipe's warm-up share of its own schedule
        warmup = round(total * recipe.warmup_epochs / recipe.epochs)
    base_lr = cfg.lr or recipe.lr
    resolved = {k: v for k, v in asdict(cfg).items()}
    resolved.update(
        student_arch=arch,
        recipe=recipe_name,
        batch_size=batch,
        epochs=total / steps_per_epoch,
        steps=total,
        steps_per_epoch=steps_per_epoch,
        warmup_steps=min(warmup, total),
        lr=base_lr,
        peak_lr=base_lr * batch / LR_REFERENCE_BATCH,
        w_cos=recipe.w_cos if cfg.w_cos is None else cfg.w_cos,
        w_cons=recipe.w_cons if cfg.w_cons is None else cfg.w_cons,
        clip=recipe.clip if cfg.clip is None else cfg.clip,
        save_every=cfg.save_every or cfg.eval_every,
        betas=list(BETAS),
        n_train=n_train,
    )
    return resolved


def lr_at(step: int, peak: float, warmup: int, total: int) -> float:
    """Linear warm-up to `peak` over `warmup` steps, then cosine decay to 0 at `total` (per step)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# option (DistillConfig field) -> (CLI spelling, lowest allowed value, whether the lowest is excluded, may be None)
_INT_RANGES = {
    "context": ("--context", MIN_CONTEXT, False),
    "epochs": ("--epochs", 1, True),
    "steps": ("--steps", 1, True),
    "warmup_steps": ("--warmup-steps", 0, True),
    "batch_size": ("--batch-size", 1, True),
    "eval_every": ("--eval-every", 1, False),
    "save_every": ("--save-every", 1, True),
    "eval_size": ("--eval-size", 1, False),
    "limit": ("--limit", 2, True),
    "seed": ("--seed", 0, False),
    "log_every": ("--log-every", 1, False),
}
_FLOAT_RANGES = {  # (option, lowest, lowest excluded, None allowed)
    "lr": ("--lr", 0.0, True, True),
    "w_cos": ("--w-cos", 0.0, False, True),
    "w_cons": ("--w-cons", 0.0, False, True),
    "clip": ("--clip", 0.0, False, True),
    "weight_decay": ("--weight-decay", 0.0, False, False),
}


def check_options(cfg) -> None:
    """Refuse any option outside its range with OptionError naming the option and the range."""
    for key, (option, low, optional) in _INT_RANGES.items():
        value = getattr(cfg, key)
        if value is None and optional:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise OptionError(option, f"must be an integer >= {low}, got {value!r}")
    for key, (option, minimum, exclusive, optional) in _FLOAT_RANGES.items():
        value = getattr(cfg, key)
        if value is None and optional:
            continue
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < minimum or (exclusive and value == minimum):
            bound = f"> {minimum:g}" if exclusive else f">= {minimum:g}"
            raise OptionError(option, f"must be a finite number {bound}, got {value!r}")
    if cfg.dtype not in DTYPES:
        raise OptionError("--dtype", f"must be one of {', '.join(DTYPES)}, got {cfg.dtype!r}")
    for key in ("init", "vocab"):  # given but empty: never a silent "train from scratch" or "no vocabulary"
        value = getattr(cfg, key, None)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise OptionError(
                f"--{key}", f"is empty ({value!r})", f"give a {'encoder spec' if key == 'init' else 'path'}, "
                f"or leave --{key} out to train {'from scratch' if key == 'init' else 'with the full vocabulary'}"
            )  # fmt: skip


def check_context(context: int, limit: int, who: str) -> None:
    """The context against the longest an encoder (teacher or student) takes."""
    if not MIN_CONTEXT <= context <= limit:
        raise OptionError("--context", f"must be in [{MIN_CONTEXT}, {limit}] for {who}, got {context}")
