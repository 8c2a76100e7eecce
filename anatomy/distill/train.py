"""`anatomy distill`: one readable training loop that distils a teacher's per-token outputs into a student.

    RUN_DIR/config.json        the resolved configuration (every default filled in)
    RUN_DIR/metrics.jsonl      one row per evaluation on the held-out prompts (step 0 = untrained student)
    RUN_DIR/train.log          loss and learning rate as training goes (no timings: identical runs, identical log)
    RUN_DIR/timings.jsonl      measured throughput per logged step (the one file identical runs write differently)
    RUN_DIR/checkpoints/       latest.* and best.* (loadable as student:PATH) and state.pt (exact resume)
    RUN_DIR/vocab.json         with --vocab: the vocabulary (also inside latest/ and best/, which load alone)

Everything random is a pure function of (seed, step): the data order of an epoch comes from (seed, epoch)
and the word shuffles of a step from (seed, step), so a resumed run sees exactly the batches an
uninterrupted one would. Under torchrun each rank takes its slice of the same global batch, and DDP's
gradient averaging makes the update equal to the single-process one. The same run writes the same bytes.

Everything that can be checked is checked before the teacher cache (anatomy.distill.preflight): the
student's size against the device's memory, the --init source's shapes, the --resume state.

The recipe and options live in anatomy.distill.config, evaluation in .evaluate, the run directory in
.rundir and the torchrun plumbing in .parallel; the names below are re-exported for callers.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from anatomy.distill.config import (  # noqa: F401  (re-exported)
    BETAS,
    CUSTOM_RECIPE,
    LR_REFERENCE_BATCH,
    RECIPES,
    RUNTIME_ONLY,
    DistillConfig,
    Recipe,
    check_context,
    lr_at,
    resolve,
    student_arch,
    student_config,
)
from anatomy.distill.evaluate import KNN_K, evaluate, knn_min_points, knn_overlap  # noqa: F401  (re-exported)
from anatomy.distill.parallel import Dist, barrier, broadcast, dist_setup, global_mean, safe
from anatomy.distill.preflight import preflight
from anatomy.distill.rundir import (  # noqa: F401  (read_metrics re-exported)
    TIMINGS,
    append_line,
    check_run_dir,
    clean_run_dir,
    compare_settings,
    discard_run,
    read_metrics,
    read_resume_state,
    restore_state,
    run_identity,
    truncate_metrics,
)
from anatomy.encoders.family import ContextError
from anatomy.errors import AnatomyError, InputError

if TYPE_CHECKING:
    import torch

    from anatomy.distill.data import TeacherCache

log = logging.getLogger(__name__)


def param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices, none on 1-D parameters (norms, scales) and biases."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or name.endswith("bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def batch_rows(train_idx: np.ndarray, step: int, steps_per_epoch: int, batch: int, seed: int) -> np.ndarray:
    """The global batch of `step`: epoch e's order is a permutation drawn from (seed, e)."""
    epoch, pos = divmod(step, steps_per_epoch)
    order = np.random.default_rng([seed, 1, epoch]).permutation(len(train_idx))
    return train_idx[order[pos * batch : (pos + 1) * batch]]


def _load_cache(cfg: DistillConfig, cache_dir: Path, dist: Dist, teacher, progress) -> TeacherCache:
    """Rank 0 computes or checks the teacher cache; the other ranks read the files it names."""
    from anatomy.distill import data

    paths: tuple[Path, Path] | AnatomyError | None = None  # rank 0's error travels to every rank
    if dist.main:
        try:
            prompts, corpus_sha = data.load_prompts(cfg.corpus, cfg.limit, cfg.seed)
            cache = data.teacher_cache(
                teacher or cfg.teacher,  # a spec is loaded only if the cache must be computed
                prompts,
                cfg.context,
                cache_dir,
                corpus_sha256=corpus_sha,
                progress=progress,
            )
            paths = data.cache_paths(cache_dir, cache.meta["key"])
        except ContextError as error:  # the context is an option: refuse it as one, with the teacher's range
            paths = _context_option_error(cfg, error)
        except AnatomyError as error:
            paths = error
    files: tuple[Path, Path] = broadcast(dist, paths)  # rank 0's error is raised here, on every rank
    return cache if dist.main else data.read_cache(*files)


def _context_option_error(cfg: DistillConfig, error) -> AnatomyError:
    try:
        check_context(cfg.context, error.limit, f"teacher {cfg.teacher}")
    except AnatomyError as option_error:
        return option_error
    return error


def _new_student(arch: dict, context: int, seed: int):
    """A freshly initialised student (the same weights on every rank: the seed fixes them)."""
    import torch

    from anatomy.encoders.student import build_student

    torch.manual_seed(seed)
    module = build_student(student_config(arch, context))
    # the stored-but-unused projection_layer gets no gradient: freeze it (DDP requires every trained
    # parameter to receive one, and AdamW's weight decay would otherwise shrink it for nothing)
    unused = getattr(getattr(module, "encoder", None), "projection_layer", None)
    if unused is not None:
        unused.requires_grad_(False)
    return module


def _save_student(module, resolved: dict, path: Path, meta: dict, vocab_json: bytes | None = None) -> None:
    from anatomy.encoders.student import save_student

    cfg = student_config(resolved["student_arch"], resolved["context"])
    save_student(
        module, cfg, path, provenance={"teacher": resolved["teacher"], **meta}, vocab_json=vocab_json
    )


def _vocabulary(cfg: DistillConfig):
    """With --vocab, the run's vocabulary, checked against the teacher's tokenizer before any teacher work."""
    if not cfg.vocab:
        return None
    from anatomy.distill.vocab_student import load_for_run

    return load_for_run(cfg.vocab, cfg.teacher)


def _specialise(cfg: DistillConfig, cache, vocab):
    """With a vocabulary: (the cache in the specialised ids, the vocabulary's bytes); else (cache, None).

    Each prompt's alignment needs the cached ids, so it is checked here, after the cache: a refused run
    keeps its teacher cache, which the corrected rerun reuses."""
    if vocab is None:
        return cache, None
    from anatomy.distill.vocab_student import specialise_cache

    return specialise_cache(cache, vocab, cfg.corpus), vocab.vocab_json


def _autocast(dev, dtype: str):
    import contextlib

    import torch

    if dtype == "bf16" or (dtype == "auto" and dev.type == "cuda"):
        return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)
    if dtype not in ("auto", "fp32"):
        raise InputError(f"unknown dtype '{dtype}'", "use auto, fp32 or bf16")
    return contextlib.nullcontext()


def forward_loss(model, b, rows: slice, weights, dev, dtype: str):
    """The loss of the batch rows `rows` (this rank's slice); with consistency, the prompts and their
    word-shuffled copies go through the student in one forward pass."""
    import torch

    from anatomy.distill.losses import distill_loss

    ids, valid, shuffled = b.ids[rows], b.valid[rows], None
    n = ids.shape[0]
    if weights.w_cons:
        ids, valid = torch.cat([ids, b.shuffled_ids[rows]]), torch.cat([valid, b.shuffled_valid[rows]])
    with _autocast(dev, dtype):
        out = model(ids, valid)
    if weights.w_cons:
        out, shuffled = out[:n], (out[n:], valid[n:])
    return distill_loss(out, b.targets[rows], b.valid[rows], weights, shuffled)


def update(module, optimizer, loss, clip: float) -> None:
    """Backward, clip the gradient norm (after DDP's all-reduce), step."""
    import torch

    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
    optimizer.step()


StepCallback = Callable[[int, int, float, float], None]  # (step done, total, loss, texts per second)


def distill(
    cfg: DistillConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    restart: bool = False,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    teacher=None,
    on_step: StepCallback | None = None,
    on_cache: Callable[[int, int], None] | None = None,
    stop_after: int | None = None,
    figures: bool = False,
) -> dict:
    """Train a student; returns the resolved config and the last evaluation. See the module docstring.

    With `figures`, rank 0 also draws the held-out curves into RUN_DIR/figures/training.png.
    `restart` trains again from step 0 in a folder that holds a run (its files are replaced when training
    starts, so a run refused before that keeps the old one).

    `teacher` may be a TextEncoder object (tests); otherwise cfg.teacher is resolved by the registry.
    `stop_after` ends the process's work after that many steps of this call (for benchmarks), as if killed.
    """
    import torch

    from anatomy.distill import data
    from anatomy.distill.losses import LossWeights
    from anatomy.encoders.checkpoints import save_torch
    from anatomy.encoders.device import check_device
    from anatomy.io import atomic_path, write_json

    run_dir = Path(run_dir)
    dist, dev = dist_setup(check_device(device))
    stored = broadcast(dist, safe(lambda: check_run_dir(run_dir, resume, restart)))
    if dist.main:
        clean_run_dir(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    state_path, metrics_path, log_path = (
        ckpt_dir / "state.pt",
        run_dir / "metrics.jsonl",
        run_dir / "train.log",
    )
    # before any teacher work: the resume state, the vocabulary, the student's size and the --init source
    state = read_resume_state(run_dir, stored) if resume and stored is not None else None
    cache_dir = Path(cache_dir) if cache_dir else run_dir / "teacher_cache"
    vocab = _vocabulary(cfg)
    init_plan = preflight(cfg, vocab, dev, init=state is None)
    cache = _load_cache(cfg, cache_dir, dist, teacher, on_cache)
    cache, vocab_json = _specialise(cfg, cache, vocab)  # deterministic: every rank maps its own copy

    n = len(cache.prompts)
    eval_size = min(cfg.eval_size, max(1, n // 10))
    train_idx, eval_idx = data.split_heldout(n, eval_size, cfg.seed)
    resolved = resolve(cfg, len(train_idx), dist.world, cache.meta)
    resolved.update(n_eval=len(eval_idx), teacher_cache=cache.meta["key"], cache_dir=str(cache_dir))
    if stored is not None:
        compare_settings(stored, resolved, run_dir)

    module = _new_student(resolved["student_arch"], cfg.context, cfg.seed)
    if init_plan is not None:  # start from a pretrained tower (checked before the cache); the run records it
        from anatomy.distill.init import apply_init

        resolved["init_notes"] = apply_init(init_plan, module)
        del init_plan
    elif cfg.init and stored is not None:  # a resumed run keeps the record of where it started
        resolved["init_notes"] = stored.get("init_notes")
    module = module.to(dev)
    module.train()
    optimizer = torch.optim.AdamW(param_groups(module, cfg.weight_decay), lr=resolved["peak_lr"], betas=BETAS)
    start, best = 0, -math.inf
    identity = run_identity(resolved)
    if state is not None:
        restore_state(state, state_path, module, optimizer)
        start, best = state["step"], state["best"]
        del state
    if dist.main:
        if restart:
            discard_run(run_dir)  # only now: a --restart refused above keeps the old run
        write_json(run_dir / "config.json", resolved)
        if vocab_json is not None:  # the run's record of its vocabulary (each checkpoint has its own copy)
            with atomic_path(run_dir / "vocab.json") as tmp:
                tmp.write_bytes(vocab_json)
        truncate_metrics(metrics_path, start)
        truncate_metrics(run_dir / TIMINGS, start + 1)
        append_line(
            log_path,
            f"{'resumed at' if start else 'started'} step {start} of {resolved['steps']} "
            f"({dist.world} process(es), device {dev}, {n} prompts, {len(eval_idx)} held out)",
        )
        if len(eval_idx) < knn_min_points(KNN_K):  # metrics.jsonl then holds eval_knn_overlap10: null
            append_line(log_path, f"kNN@{KNN_K} overlap not measured: {len(eval_idx)} held-out prompts, it needs "
                                  f"{knn_min_points(KNN_K)} (raise --eval-size or the corpus)")  # fmt: skip
    model = module
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(module, device_ids=[dev.index] if dev.type == "cuda" else None)

    weights = LossWeights(resolved["w_cos"], resolved["w_cons"])
    total, batch, local = resolved["steps"], resolved["batch_size"], resolved["batch_size"] // dist.world
    last_eval: dict = {}

    def run_eval(step: int) -> None:
        nonlocal best, last_eval
        if not dist.main:
            return
        last_eval = {"step": step, **evaluate(module, cache, eval_idx, dev)}
        append_line(metrics_path, json.dumps(last_eval))
        if last_eval["eval_token_cosine"] > best:
            best = last_eval["eval_token_cosine"]
            _save_student(module, resolved, ckpt_dir / "best", {"step": step, **last_eval}, vocab_json)

    def save(step: int) -> None:
        if not dist.main:
            return
        _save_student(module, resolved, ckpt_dir / "latest", {"step": step}, vocab_json)
        state = {
            "model": module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "best": best,
            "torch_rng": torch.get_rng_state(),
            "run": identity,  # --resume refuses a state.pt of another run
        }
        with atomic_path(state_path) as tmp:  # through a handle: the same state gives the same bytes
            save_torch(state, tmp)

    train_seconds, seen, loss_value = 0.0, 0, float("nan")  # throughput counts training steps only
    for step in range(start, total):
        if step % cfg.eval_every == 0:
            run_eval(step)
        tick = time.perf_counter()
        lr = lr_at(step, resolved["peak_lr"], resolved["warmup_steps"], total)
        for group in optimizer.param_groups:
            group["lr"] = lr
        rows = batch_rows(train_idx, step, resolved["steps_per_epoch"], batch, cfg.seed)
        shuffle_rng = np.random.default_rng([cfg.seed, 2, step]) if weights.w_cons else None
        b = data.make_batch(cache, rows, dev, shuffle_rng)  # the global batch; this rank takes its slice
        mine = slice(dist.rank * local, (dist.rank + 1) * local)
        loss, parts = forward_loss(model, b, mine, weights, dev, cfg.dtype)
        loss_value = global_mean(dist, loss.detach())
        if not math.isfinite(loss_value):
            raise AnatomyError(
                f"training loss became {loss_value} at step {step} (lr {lr:.3g}); the run stopped there",
                f"lower --lr or --clip, or resume from the last checkpoint in {ckpt_dir}",
            )
        update(module, optimizer, loss, resolved["clip"])
        seen += batch
        done = step + 1
        train_seconds += time.perf_counter() - tick
        rate = seen / max(train_seconds, 1e-9)
        if on_step and dist.main:
            on_step(done, total, loss_value, rate)
        if dist.main and (done % cfg.log_every == 0 or done == total):
            detail = " ".join(f"{k} {v:.5f}" for k, v in parts.items())
            append_line(log_path, f"step {done} loss {loss_value:.5f} ({detail}) lr {lr:.3g}")
            timing = {"step": done, "train_seconds": round(train_seconds, 3), "texts_per_s": round(rate, 1)}
            append_line(run_dir / TIMINGS, json.dumps(timing))
        if done % resolved["save_every"] == 0 or done == total:
            save(done)
        if stop_after is not None and done - start >= stop_after:
            return {"config": resolved, "eval": last_eval, "texts_per_s": rate, "stopped_at": done}
    if not last_eval or last_eval["step"] != total:
        run_eval(total)
    if figures and dist.main:
        from anatomy.distill.rundir import training_figure

        training_figure(run_dir)
    barrier(dist)
    return {"config": resolved, "eval": last_eval, "best_token_cosine": best, "loss": loss_value}
