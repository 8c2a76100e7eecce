"""A distillation run directory: refusing to overwrite a run, resuming one, metrics rows, the training figure.

RUN_DIR/config.json  RUN_DIR/metrics.jsonl  RUN_DIR/train.log  RUN_DIR/checkpoints/  RUN_DIR/figures/
RUN_DIR/vocab.json (a specialised run)  RUN_DIR/timings.jsonl (measured: the only file two identical runs
write differently)

--resume trusts nothing: a missing state.pt beside saved checkpoints, a damaged one or one of another run
(its `run` identity is the hash of the run's config) is refused in one line before any teacher work;
--restart is the explicit way to train again from step 0 in the same folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from anatomy.distill.config import RUNTIME_ONLY
from anatomy.errors import AnatomyError, InputError, OptionError
from anatomy.io import atomic_path

log = logging.getLogger(__name__)


CONFIG, METRICS, LOG, CHECKPOINTS, STATE = (
    "config.json",
    "metrics.jsonl",
    "train.log",
    "checkpoints",
    "state.pt",
)
TIMINGS = "timings.jsonl"
STUDENT_FILES = ("model.safetensors", "config.json", "vocab.json")
STATE_KEYS = ("model", "optimizer", "step", "best", "torch_rng")
RESTART_HINT = (
    "restore the run's state.pt, or pass --restart to train again from step 0 in this folder "
    "(its checkpoints are replaced), or choose another --out"
)


def check_run_dir(run_dir: Path, resume: bool, restart: bool = False) -> dict | None:
    """The stored config of a run being resumed; refuses to overwrite a run without --resume.

    A run counts as started once it has saved a step (checkpoints/state.pt): a config.json left by a run that
    failed before that (a bad teacher, a killed process) blocks neither a corrected rerun nor --resume.
    """
    config = run_dir / CONFIG
    if resume and restart:
        raise OptionError("--restart", "cannot be combined with --resume", "pass one of them")
    if restart:
        return None  # the old run is discarded only when the new one starts (discard_run)
    if resume:
        if not config.exists():
            raise InputError(
                f"{run_dir}: nothing to resume (no config.json)", "start the run without --resume"
            )
        try:
            return json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise InputError(
                f"{config}: unreadable run config ({error})", "start a new run in another --out"
            ) from None
    if (run_dir / CHECKPOINTS / STATE).exists() or saved_step(run_dir) is not None:
        raise InputError(
            f"{run_dir} already holds a run",
            "pass --resume to continue it, --restart to train again from step 0, or choose another --out",
        )
    if config.exists():
        log.warning("%s: the run here stopped before its first checkpoint; starting it afresh", run_dir)
        for name in (CONFIG, METRICS):
            (run_dir / name).unlink(missing_ok=True)
    return None


def saved_step(run_dir: Path) -> int | None:
    """The step of the run's saved checkpoints (latest or best), or None when it saved none."""
    steps = []
    for name in ("latest", "best"):
        path = run_dir / CHECKPOINTS / name / "config.json"
        if not path.exists():
            continue
        try:
            step = json.loads(path.read_text(encoding="utf-8")).get("provenance", {}).get("step", 0)
        except (OSError, ValueError, AttributeError):
            step = 0  # a checkpoint is there even if its record is damaged
        steps.append(step if isinstance(step, int) else 0)
    return max(steps) if steps else None


def run_identity(config: dict) -> str:
    """What makes a run this run: the hash of its config (settings that may move between machines left out)."""
    plain = json.loads(json.dumps(config, default=str))
    kept = {k: v for k, v in plain.items() if k not in RUNTIME_ONLY}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def read_resume_state(run_dir: Path, stored: dict) -> dict[str, Any] | None:
    """The state.pt a --resume continues from, checked; None when the run saved nothing yet (start at 0).

    Refused in one line: a missing state.pt beside saved checkpoints (resuming would restart at step 0 and
    overwrite them), a damaged file, one of another run (its identity differs from this run's config).
    """
    from anatomy.encoders.checkpoints import load_torch_state

    path = run_dir / CHECKPOINTS / STATE
    if not path.exists():
        step = saved_step(run_dir)
        if step is None:
            return None
        raise InputError(
            f"{path}: missing, but the run saved checkpoints (step {step}); resuming would restart at step 0 "
            "and overwrite them",
            RESTART_HINT,
        )
    try:
        state = load_torch_state(path)  # a truncated or corrupt file: one line naming it
    except AnatomyError as error:
        raise InputError(error.message, RESTART_HINT) from None
    if not isinstance(state, dict) or any(k not in state for k in STATE_KEYS):
        raise InputError(f"{path}: not a distill state (expected {', '.join(STATE_KEYS)})", RESTART_HINT)
    want = run_identity(stored)
    if state.get("run", want) != want:
        raise InputError(
            f"{path}: belongs to another run (identity {state['run']}, this run's config is {want})",
            RESTART_HINT,
        )
    step = state["step"]
    if not isinstance(step, int) or isinstance(step, bool) or not 0 < step <= int(stored.get("steps", step)):
        raise InputError(
            f"{path}: step {step!r} is not a step of this run (1..{stored.get('steps')})", RESTART_HINT
        )
    return state


def restore_state(state: dict, path: Path, module, optimizer) -> None:
    """Load a checked state.pt into the module and optimizer; a mismatch is one line naming the file."""
    import torch

    try:
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        why = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise InputError(f"{path}: does not fit this run's student ({why})", RESTART_HINT) from None


def discard_run(run_dir: Path) -> None:
    """--restart: remove the files of the run in run_dir (its teacher cache and anything else stay)."""
    for name in (CONFIG, METRICS, LOG, TIMINGS, "vocab.json"):
        (run_dir / name).unlink(missing_ok=True)
    (run_dir / CHECKPOINTS / STATE).unlink(missing_ok=True)
    for name in ("latest", "best"):
        for file in STUDENT_FILES:
            (run_dir / CHECKPOINTS / name / file).unlink(missing_ok=True)
    (run_dir / "figures" / "training.png").unlink(missing_ok=True)


def clean_run_dir(run_dir: Path) -> list[Path]:
    """Remove temporary files a killed writer left in the run directory and its checkpoints."""
    from anatomy.encoders.checkpoints import clean_temporaries

    ckpt = run_dir / CHECKPOINTS
    removed = clean_temporaries(run_dir, (CONFIG, METRICS, "vocab.json"))
    removed += clean_temporaries(ckpt, (STATE,))
    for name in ("latest", "best"):
        removed += clean_temporaries(ckpt / name, STUDENT_FILES)
    return removed


# Settings that name a file whose content the run records by identity: the corpus's prompts are in the
# teacher cache's key, a student JSON's content is student_arch. The same file given by another path (another
# relative spelling, another working directory) is the same run.
PATH_SETTINGS = {"corpus": "teacher_cache", "student": "student_arch"}


def _same_file(a: Any, b: Any) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, TypeError, ValueError):
        return False


def _same_setting(key: str, stored: dict, resolved: dict) -> bool:
    old, new = stored.get(key), resolved[key]
    if old == new:
        return True
    identity = PATH_SETTINGS.get(key)
    if identity is None or not isinstance(old, str) or not isinstance(new, str):
        return False
    if identity in resolved and stored.get(identity) == resolved[identity]:
        return True  # the content that matters is the same (checked under its own key too)
    return _same_file(old, new)


def compare_settings(stored: dict, resolved: dict, run_dir: Path) -> None:
    changed = sorted(k for k in resolved if k not in RUNTIME_ONLY and not _same_setting(k, stored, resolved))
    if changed:
        detail = ", ".join(f"{k}: {stored.get(k)!r} -> {resolved[k]!r}" for k in changed[:5])
        raise InputError(
            f"{run_dir}: --resume with different settings ({detail})", "resume with the run's own settings"
        )


def truncate_metrics(path: Path, from_step: int) -> None:
    """Drop evaluation rows at or after `from_step` (written after the checkpoint the run resumes from)."""
    if not path.exists():
        return
    rows = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = [r for r in rows if json.loads(r)["step"] < from_step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(r + "\n" for r in kept), encoding="utf-8")


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The evaluation rows of a run (metrics.jsonl)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise InputError(f"{path}: not found", "is this a run directory written by anatomy distill?")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def append_line(path: Path, line: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def training_figure(run_dir: str | Path) -> Path:
    """Draw the held-out curves of a run into RUN_DIR/figures/training.png; returns its path."""
    from anatomy.figures.distill import draw_training_curves, prepare_training_curves
    from anatomy.figures.style import save_figure

    run_dir = Path(run_dir)
    path = run_dir / "figures" / "training.png"
    frame = prepare_training_curves({run_dir.name: read_metrics(run_dir)})
    save_figure(draw_training_curves(frame), path)
    return path
