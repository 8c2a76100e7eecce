"""A distillation run directory: refusing to overwrite a run, resuming one, metrics rows, the training figure.

RUN_DIR/config.json  RUN_DIR/metrics.jsonl  RUN_DIR/train.log  RUN_DIR/checkpoints/  RUN_DIR/figures/
RUN_DIR/vocab.json (a specialised run)
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from anatomy.distill.config import RUNTIME_ONLY
from anatomy.errors import InputError
from anatomy.io import atomic_path

log = logging.getLogger(__name__)


CONFIG, METRICS, LOG, CHECKPOINTS, STATE = (
    "config.json",
    "metrics.jsonl",
    "train.log",
    "checkpoints",
    "state.pt",
)
STUDENT_FILES = ("model.safetensors", "config.json", "vocab.json")


def check_run_dir(run_dir: Path, resume: bool) -> dict | None:
    """The stored config of a run being resumed; refuses to overwrite a run without --resume.

    A run counts as started once it has saved a step (checkpoints/state.pt): a config.json left by a run that
    failed before that (a bad teacher, a killed process) blocks neither a corrected rerun nor --resume.
    """
    config = run_dir / CONFIG
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
    if (run_dir / CHECKPOINTS / STATE).exists():
        raise InputError(
            f"{run_dir} already holds a run", "pass --resume to continue it, or choose another --out"
        )
    if config.exists():
        log.warning("%s: the run here stopped before its first checkpoint; starting it afresh", run_dir)
        for name in (CONFIG, METRICS):
            (run_dir / name).unlink(missing_ok=True)
    return None


def clean_run_dir(run_dir: Path) -> list[Path]:
    """Remove temporary files a killed writer left in the run directory and its checkpoints."""
    from anatomy.encoders.checkpoints import clean_temporaries

    ckpt = run_dir / CHECKPOINTS
    removed = clean_temporaries(run_dir, (CONFIG, METRICS, "vocab.json"))
    removed += clean_temporaries(ckpt, (STATE,))
    for name in ("latest", "best"):
        removed += clean_temporaries(ckpt / name, STUDENT_FILES)
    return removed


def compare_settings(stored: dict, resolved: dict, run_dir: Path) -> None:
    changed = sorted(k for k in resolved if k not in RUNTIME_ONLY and stored.get(k) != resolved[k])
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
