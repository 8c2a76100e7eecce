"""What a `specialise` run is: SpecialiseConfig (every option, range-checked before any work) and the
candidate students it trains.

The default ladder suits the teacher: for `minilm` (384-d, small) two custom students far smaller than it,
for the CLIP-family teachers the LiteText bodies S0 and S1.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anatomy.errors import InputError, OptionError

DEFAULT_INPUT = "builtin:imagenet-prompts"
DEFAULT_STEPS = 400
# --budget MINUTES becomes steps at this assumed rate (a small student at batch 64 on two CPU cores), shared
# equally by the candidates, at least MIN_BUDGET_STEPS each. It is not measured: a larger student, batch or
# context, or a faster machine, trains at another rate; the bill states the rate and the measured wall time.
ASSUMED_STEPS_PER_S = 4.0
MIN_BUDGET_STEPS = 10
# Distinct prompts the train split needs (the distillation holds out its own validation from them).
MIN_TRAIN_PROMPTS = 20
DEFAULT_EXPORTS = ("onnx", "int8")
BODIES = ("s0", "s1", "l")
# The default ladder when the teacher is minilm: two custom students (what `anatomy distill` takes as JSON).
MINILM_LADDER = {
    "mini-2x128": {"layers": 2, "width": 128, "heads": 2},
    "mini-4x192": {"layers": 4, "width": 192, "heads": 4},
}
OTHER_LADDER = ("s0", "s1")


@dataclass(frozen=True)
class Candidate:
    name: str  # a folder-safe label: s0, mini-2x128, or the JSON file's stem
    body: str | None  # s0 | s1 | l, or None for a custom architecture
    arch: dict[str, Any] | None  # the custom architecture (layers, width, heads, ...), None for a body

    def as_param(self) -> dict[str, Any]:
        return {"name": self.name, "body": self.body, "arch": self.arch}


@dataclass(frozen=True)
class SpecialiseConfig:
    inputs: tuple[str, ...] = ()  # raw prompt files / builtin:NAME, or one corpus .parquet
    teacher: str = "minilm"
    students: tuple[str, ...] = ()  # s0|s1|l|CONFIG.json; empty: the default ladder for the teacher
    source: str | None = None
    context: str = "auto"  # auto | an integer
    vocab: str = "auto"  # auto | full
    held_out: tuple[str, ...] = ()
    steps: int | None = None  # per candidate (default DEFAULT_STEPS unless --budget)
    budget: float | None = None  # minutes of distillation for all candidates together
    batch_size: int = 64
    device: str | None = None
    exports: tuple[str, ...] = DEFAULT_EXPORTS
    max_quality_drop: float | None = None
    max_params: int | None = None
    max_latency_ms: float | None = None
    limit: int | None = None  # a seeded sample of this many distinct prompts
    test_share: float = 0.1
    seed: int = 0
    threads: int | None = None  # torch threads here and in each cost process (None: torch's default)
    cost_repeats: int = 20  # batch-1 calls timed per cost row
    cost_batches: tuple[int, ...] = (1, 64)

    def __post_init__(self):
        check(self)

    @property
    def fixed_context(self) -> int | None:
        return None if self.context == "auto" else int(self.context)


def n_test_for(n: int, test_share: float) -> int:
    """Prompts the split puts in the test set out of n distinct prompts (at least one)."""
    return max(1, round(n * test_share))


def min_prompts(test_share: float) -> int:
    """The fewest distinct prompts that leave MIN_TRAIN_PROMPTS for training after the test split: the least
    --limit that works (22 at the default test share of 0.1)."""
    n = MIN_TRAIN_PROMPTS + 1
    while n - n_test_for(n, test_share) < MIN_TRAIN_PROMPTS:
        n += 1
    return n


def _positive(option: str, value, integer: bool, low: float = 0.0, inclusive: bool = False) -> None:
    if value is None:
        return
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value >= low if inclusive else value > low)
    if not ok:
        bound = f">= {low:g}" if inclusive else f"> {low:g}"
        raise OptionError(option, f"must be {'an integer' if integer else 'a number'} {bound}, got {value!r}")


def check(cfg: SpecialiseConfig) -> None:
    """Every option against its range (OptionError: a usage error, exit 2), before any work."""
    from anatomy.distill.export import FORMATS

    if cfg.context != "auto":
        if not str(cfg.context).isdigit() or not 2 <= int(cfg.context) <= 4096:
            raise OptionError("--context", f"must be auto or an integer in [2, 4096], got {cfg.context!r}")
    if cfg.vocab not in ("auto", "full"):
        raise OptionError("--vocab", f"must be auto or full, got {cfg.vocab!r}")
    if cfg.steps is not None and cfg.budget is not None:
        raise OptionError("--budget", "give either --steps or --budget, not both")
    _positive("--steps", cfg.steps, True)
    _positive("--budget", cfg.budget, False)
    _positive("--batch-size", cfg.batch_size, True)
    _positive("--max-quality-drop", cfg.max_quality_drop, False, 0.0, inclusive=True)
    _positive("--max-params", cfg.max_params, True)
    _positive("--max-latency-ms", cfg.max_latency_ms, False)
    _positive("--seed", cfg.seed, True, 0, inclusive=True)
    _positive("--cost-repeats", cfg.cost_repeats, True, 2, inclusive=True)
    _positive("--threads", cfg.threads, True)
    if not 0.0 < cfg.test_share < 0.5:
        raise OptionError("--test-share", f"must be in (0, 0.5), got {cfg.test_share!r}")
    _positive("--limit", cfg.limit, True, min_prompts(cfg.test_share), inclusive=True)
    unknown = [f for f in cfg.exports if f not in FORMATS]
    if unknown:
        raise OptionError(
            "--export", f"unknown format {', '.join(unknown)}; choose from {', '.join(FORMATS)}"
        )
    if len(set(cfg.exports)) != len(cfg.exports):
        raise OptionError("--export", "a format is named twice")


def candidates(cfg: SpecialiseConfig) -> list[Candidate]:
    """The students to train: as given, else the default ladder for the teacher. Names are unique."""
    if not cfg.students:
        if cfg.teacher == "minilm":
            return [Candidate(name, None, dict(arch)) for name, arch in MINILM_LADDER.items()]
        return [Candidate(body, body, None) for body in OTHER_LADDER]
    out: list[Candidate] = []
    for spec in cfg.students:
        if spec in BODIES:
            out.append(Candidate(spec, spec, None))
            continue
        path = Path(spec)
        if path.suffix != ".json":  # a usage error (exit 2), naming the choices
            raise OptionError("--student", f"{spec!r} is none of {', '.join(BODIES)} nor a CONFIG.json file",
                              f"choose {', '.join(BODIES)}, or give a JSON student config (layers, width, heads)")  # fmt: skip
        if not path.is_file():
            raise InputError(f"--student {spec}: no such JSON config file", "check the path")
        try:
            arch = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputError(f"{path}: not a readable JSON student config ({error})") from None
        missing = [k for k in ("layers", "width", "heads") if not isinstance(arch, dict) or k not in arch]
        if missing:
            raise InputError(
                f"{path}: student config lacks {', '.join(missing)}",
                'e.g. {"layers": 4, "width": 256, "heads": 4}',
            )
        out.append(Candidate("".join(c if c.isalnum() or c in "-_" else "_" for c in path.stem), None, arch))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise InputError("two candidate students share a name", "give each JSON config its own file name")
    return out


def check_inputs(cfg: SpecialiseConfig) -> list[str]:
    """The inputs (default: the built-in prompts); missing files and held-out files fail here, before DIR is
    touched."""
    inputs = list(cfg.inputs) or [DEFAULT_INPUT]
    for spec in [*inputs, *cfg.held_out]:
        if spec.startswith("builtin:") or spec == "-":
            continue
        if not Path(spec).exists():
            raise InputError(f"{spec}: no such file or directory", "check the path")
    if "-" in cfg.held_out:
        raise InputError("--held-out -: held-out sets must be files", "save the prompts to a file first")
    for spec in cfg.held_out:
        if not spec.startswith("builtin:") and not Path(spec).is_file():
            raise InputError(
                f"--held-out {spec}: a directory, not a prompt file", "give one file per held-out set"
            )
    names = [Path(h).name for h in cfg.held_out]
    if len(set(names)) != len(names):
        raise InputError("two --held-out files share a name", "rename one: the bill labels sets by file name")
    return inputs


def check_teacher(spec: str) -> None:
    """The teacher spec parses, is trained, and a local weights path it names is there (before DIR is
    touched): an unknown family, a bare architecture or a missing checkpoint fails in one line."""
    from anatomy.encoders.family import family_of
    from anatomy.encoders.registry import fingerprint_path

    parsed, path = fingerprint_path(spec)
    if not family_of(parsed).is_trained(parsed):
        raise InputError(f"teacher {spec}: an untrained architecture (random weights)",
                         "give a trained teacher, e.g. minilm or sam3:PATH")  # fmt: skip
    given = spec.partition(":")[2]
    if path is not None and given and Path(given) == Path(path) and not Path(path).exists():
        raise InputError(f"teacher {spec}: {path} not found", "check the checkpoint path")


def batch_for(cfg: SpecialiseConfig, n_split_train: int) -> int:
    """The distillation batch: --batch-size, clamped to the prompts the distillation trains on (the train split
    less the validation it holds out, as anatomy.distill.train does), which are known only once the corpus is
    split; the bill notes a clamped batch. (`anatomy distill`, given its corpus directly, refuses instead.)"""
    from anatomy.distill.config import DistillConfig

    held = min(DistillConfig.eval_size, max(1, n_split_train // 10))
    return max(1, min(cfg.batch_size, n_split_train - held))


def steps_for(cfg: SpecialiseConfig, n_candidates: int) -> int:
    """--steps, else --budget minutes shared by the candidates at an assumed rate (ASSUMED_STEPS_PER_S, not
    measured: the bill says so beside the measured wall time), else the default."""
    if cfg.steps is not None:
        return cfg.steps
    if cfg.budget is not None:
        return max(MIN_BUDGET_STEPS, int(cfg.budget * 60 * ASSUMED_STEPS_PER_S / n_candidates))
    return DEFAULT_STEPS
