"""`anatomy distill`: one readable training loop that distils a teacher's per-token outputs into a student.

    RUN_DIR/config.json        the resolved configuration (every default filled in)
    RUN_DIR/metrics.jsonl      one row per evaluation on the held-out prompts (step 0 = untrained student)
    RUN_DIR/train.log          loss, learning rate and throughput as training goes
    RUN_DIR/checkpoints/       latest.* and best.* (loadable as student:PATH) and state.pt (exact resume)

Everything random is a pure function of (seed, step): the data order of an epoch comes from (seed, epoch)
and the word shuffles of a step from (seed, step), so a resumed run sees exactly the batches an
uninterrupted one would. Under torchrun each rank takes its slice of the same global batch, and DDP's
gradient averaging makes the update equal to the single-process one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anatomy.errors import AnatomyError, InputError
from anatomy.io import atomic_path, write_json

if TYPE_CHECKING:
    import torch

    from anatomy.distill.data import TeacherCache

log = logging.getLogger(__name__)


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
    context: int = 16
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


# Settings that may differ between a run and its resumption (where it runs, not what it computes).
RUNTIME_ONLY = ("cache_dir",)


def student_arch(student: str, vocab_size: int, output_dim: int, tokenizer: str) -> tuple[str, dict]:
    """(recipe name, StudentConfig fields) for s0 | s1 | l | CONFIG.json.

    Vocabulary, output dimension and tokenizer follow the teacher unless the JSON config sets them.
    """
    from anatomy.io import read_json

    shared = {"vocab_size": vocab_size, "output_dim": output_dim, "tokenizer": tokenizer}
    if student in RECIPES:
        return student, {"architecture": f"litetext-{student}", **shared}
    path = Path(student)
    if path.suffix != ".json" or not path.exists():
        raise InputError(f"student '{student}' is neither s0, s1, l nor an existing JSON config")
    arch = read_json(path)
    missing = [k for k in ("layers", "width", "heads") if k not in arch]
    if missing:
        raise InputError(
            f"{path}: student config lacks {', '.join(missing)}",
            'e.g. {"layers": 4, "width": 256, "heads": 4}',
        )
    arch = {"architecture": "custom", **shared, **arch}
    return arch.pop("recipe", "custom"), arch


def student_config(arch: dict, context: int):
    from anatomy.encoders.student import StudentConfig

    return StudentConfig.from_dict({**arch, "context_length": context}, "student config")


def resolve(cfg: DistillConfig, n_train: int, world: int, cache_meta: dict) -> dict:
    """Every setting of the run made concrete, as written to config.json."""
    # the student shares the teacher's tokenizer: CLIP BPE by name, any other through the teacher's spec
    tokenizer = "clip" if cache_meta["tokenizer"] == "clip" else cfg.teacher
    recipe_name, arch = student_arch(cfg.student, cache_meta["vocab_size"], cache_meta["dim"], tokenizer)
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


def param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices, none on 1-D parameters (norms, scales) and biases."""
    decay, no_decay = [], []
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


# ------------------------------------------------------------------------------------------ evaluation


def evaluate(
    module: torch.nn.Module, cache: TeacherCache, rows: np.ndarray, device, batch: int = 256
) -> dict:
    """Held-out agreement with the teacher at the training context.

    token cosine: mean over all valid tokens of cos(student, teacher); pooled cosine: mean over prompts of the
    cosine of masked-mean outputs; knn overlap@10: mean share of each prompt's 10 nearest held-out neighbours
    (cosine of pooled outputs) that student and teacher agree on.
    """
    import torch
    import torch.nn.functional as F

    from anatomy.distill.data import make_batch
    from anatomy.encoders.base import masked_mean

    was_training = module.training
    module.eval()
    cos_sum, n_tokens, pooled_s, pooled_t = 0.0, 0, [], []
    with torch.inference_mode():
        for start in range(0, len(rows), batch):
            b = make_batch(cache, rows[start : start + batch], device)
            out = module(b.ids, b.valid).float()
            cos = F.cosine_similarity(out, b.targets, dim=-1, eps=1e-8)
            cos_sum += float((cos * b.valid).sum())
            n_tokens += int(b.valid.sum())
            pooled_s.append(masked_mean(out, b.valid).cpu())
            pooled_t.append(masked_mean(b.targets, b.valid).cpu())
    module.train(was_training)
    ps, pt = torch.cat(pooled_s).double(), torch.cat(pooled_t).double()
    return {
        "eval_token_cosine": cos_sum / max(n_tokens, 1),
        "eval_pooled_cosine": float(F.cosine_similarity(ps, pt, dim=-1, eps=1e-12).mean()),
        "eval_knn_overlap10": knn_overlap(ps.numpy(), pt.numpy(), k=10),
    }


def knn_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean |kNN_a(i) ∩ kNN_b(i)| / k over points, neighbours by cosine, excluding the point itself."""
    n = len(a)
    k = min(k, n - 1)
    if k < 1:
        return float("nan")

    def neighbours(x):
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        sim = x @ x.T
        np.fill_diagonal(sim, -np.inf)
        return np.argpartition(-sim, k - 1, axis=1)[:, :k]

    na, nb = neighbours(a), neighbours(b)
    return float(np.mean([len(set(na[i]) & set(nb[i])) / k for i in range(n)]))


# ---------------------------------------------------------------------------------------------- the run


@dataclass
class Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _dist_setup(device: str | None) -> tuple[Dist, Any]:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK: join the process group (NCCL on GPUs, gloo on CPU)."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    dist = Dist(world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")))
    if device is None:
        device = f"cuda:{dist.local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if world > 1:
        import torch.distributed as td

        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not td.is_initialized():
            td.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dist, dev


def _barrier(dist: Dist) -> None:
    if dist.world > 1:
        import torch.distributed as td

        td.barrier()


def _broadcast(dist: Dist, obj):
    """Rank 0's value on every rank; an exception on rank 0 is re-raised everywhere (no rank hangs)."""
    if dist.world == 1:
        if isinstance(obj, BaseException):
            raise obj
        return obj
    import torch.distributed as td

    box = [obj if dist.main else None]
    td.broadcast_object_list(box, src=0)
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def _load_cache(cfg: DistillConfig, cache_dir: Path, dist: Dist, teacher, progress) -> TeacherCache:
    """Rank 0 computes or checks the teacher cache; the other ranks read the files it names."""
    from anatomy.distill import data

    paths = None
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
        except AnatomyError as error:
            paths = error
    paths = _broadcast(dist, paths)
    return cache if dist.main else data.read_cache(*paths)


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


def _save_student(module, resolved: dict, path: Path, meta: dict) -> None:
    from anatomy.encoders.student import save_student

    cfg = student_config(resolved["student_arch"], resolved["context"])
    save_student(module, cfg, path, provenance={"teacher": resolved["teacher"], **meta})


def _check_run_dir(run_dir: Path, resume: bool) -> dict | None:
    """The stored config of a run being resumed; refuses to overwrite a run without --resume."""
    config = run_dir / "config.json"
    if resume:
        if not config.exists():
            raise InputError(
                f"{run_dir}: nothing to resume (no config.json)", "start the run without --resume"
            )
        return json.loads(config.read_text(encoding="utf-8"))
    if config.exists():  # (a teacher cache alone, left by a run that failed to start, is no run)
        raise InputError(
            f"{run_dir} already holds a run", "pass --resume to continue it, or choose another --out"
        )
    return None


def _compare(stored: dict, resolved: dict, run_dir: Path) -> None:
    changed = sorted(k for k in resolved if k not in RUNTIME_ONLY and stored.get(k) != resolved[k])
    if changed:
        detail = ", ".join(f"{k}: {stored.get(k)!r} -> {resolved[k]!r}" for k in changed[:5])
        raise InputError(
            f"{run_dir}: --resume with different settings ({detail})", "resume with the run's own settings"
        )


def _truncate_metrics(path: Path, from_step: int) -> None:
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


def _append(path: Path, line: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


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
    device: str | None = None,
    cache_dir: str | Path | None = None,
    teacher=None,
    on_step: StepCallback | None = None,
    on_cache: Callable[[int, int], None] | None = None,
    stop_after: int | None = None,
) -> dict:
    """Train a student; returns the resolved config and the last evaluation. See the module docstring.

    `teacher` may be a TextEncoder object (tests); otherwise cfg.teacher is resolved by the registry.
    `stop_after` ends the process's work after that many steps of this call (for benchmarks), as if killed.
    """
    import torch

    from anatomy.distill import data
    from anatomy.distill.losses import LossWeights

    run_dir = Path(run_dir)
    dist, dev = _dist_setup(device)
    stored = _broadcast(dist, _safe(lambda: _check_run_dir(run_dir, resume)))
    cache_dir = Path(cache_dir) if cache_dir else run_dir / "teacher_cache"
    cache = _load_cache(cfg, cache_dir, dist, teacher, on_cache)

    n = len(cache.prompts)
    eval_size = min(cfg.eval_size, max(1, n // 10))
    train_idx, eval_idx = data.split_heldout(n, eval_size, cfg.seed)
    resolved = resolve(cfg, len(train_idx), dist.world, cache.meta)
    resolved.update(n_eval=len(eval_idx), teacher_cache=cache.meta["key"], cache_dir=str(cache_dir))
    if stored is not None:
        _compare(stored, resolved, run_dir)

    ckpt_dir = run_dir / "checkpoints"
    state_path, metrics_path, log_path = (
        ckpt_dir / "state.pt",
        run_dir / "metrics.jsonl",
        run_dir / "train.log",
    )
    module = _new_student(resolved["student_arch"], cfg.context, cfg.seed).to(dev)
    module.train()
    optimizer = torch.optim.AdamW(param_groups(module, cfg.weight_decay), lr=resolved["peak_lr"], betas=BETAS)
    start, best = 0, -math.inf
    if resume and state_path.exists():
        state = torch.load(state_path, map_location=dev, weights_only=False)
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, best = state["step"], state["best"]
        torch.set_rng_state(state["torch_rng"])
    if dist.main:
        write_json(run_dir / "config.json", resolved)
        _truncate_metrics(metrics_path, start)
        _append(
            log_path,
            f"{'resumed at' if start else 'started'} step {start} of {resolved['steps']} "
            f"({dist.world} process(es), device {dev}, {n} prompts, {len(eval_idx)} held out)",
        )
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
        _append(metrics_path, json.dumps(last_eval))
        if last_eval["eval_token_cosine"] > best:
            best = last_eval["eval_token_cosine"]
            _save_student(module, resolved, ckpt_dir / "best", {"step": step, **last_eval})

    def save(step: int) -> None:
        if not dist.main:
            return
        _save_student(module, resolved, ckpt_dir / "latest", {"step": step})
        state = {
            "model": module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "best": best,
            "torch_rng": torch.get_rng_state(),
        }
        with atomic_path(state_path) as tmp:
            torch.save(state, tmp)

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
        loss_value = _global_mean(dist, loss.detach())
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
            _append(log_path, f"step {done} loss {loss_value:.5f} ({detail}) lr {lr:.3g} texts/s {rate:.1f}")
        if done % resolved["save_every"] == 0 or done == total:
            save(done)
        if stop_after is not None and done - start >= stop_after:
            return {"config": resolved, "eval": last_eval, "texts_per_s": rate, "stopped_at": done}
    if not last_eval or last_eval["step"] != total:
        run_eval(total)
    _barrier(dist)
    return {"config": resolved, "eval": last_eval, "best_token_cosine": best, "loss": loss_value}


def _safe(fn):
    """fn()'s value, or the AnatomyError it raised (so rank 0 can hand it to every rank)."""
    try:
        return fn()
    except AnatomyError as error:
        return error


def _global_mean(dist: Dist, value) -> float:
    if dist.world > 1:
        import torch.distributed as td

        value = value.clone()
        td.all_reduce(value)  # SUM (gloo has no AVG)
        value = value / dist.world
    return float(value)
