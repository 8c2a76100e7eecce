"""The bill: a view over the stage outputs, recomputed on every run (it copies nothing it cannot recompute).

Quality is computed here from the stored outputs of the teacher (reference stage) and of each student
(evaluate stage) and ONNX export (export stage); risk from the token ids stored beside them; cost from the
cost stage's measurements; every stage's key, parameters and input hashes from its manifest. Fields holding
measured timings are listed in MEASURED: a rerun changes them and nothing else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anatomy.specialise.data_stages import TEST_SET
from anatomy.specialise.model_stages import ONNX_FORMATS
from anatomy.specialise.plan import SpecialiseConfig
from anatomy.specialise.stages import Outcome, Store

SCHEMA_VERSION = 1
KNN_K = 10  # the k of every knn_overlap10 figure, as anatomy.distill.evaluate.KNN_K (never shrunk)
# Bill fields that are measured wall-clock timings or memory (they differ between runs of the same inputs).
MEASURED = ("timings", "cost", "machine", "train_seconds", "cost_notes")


@dataclass
class Quality:
    prompts: int
    pooled_cosine: float
    token_cosine: float | None  # over prompts tokenized as the teacher does (positions valid in both)
    knn_overlap10: float | None  # kNN@10 (k never shrunk); None below knn_min_points(10) = 21 prompts


@dataclass
class Risk:
    prompts: int
    changed_share: float  # tokenized differently from the teacher's tokenizer (specialised vocabulary)
    truncated_share: float  # longer than the chosen context


@dataclass
class Export:
    format: str
    file: str | None
    bytes: int | None
    test_pooled_cosine: float | None  # ONNX files, run on the test split
    error: str | None = None
    stays_fp32: str | None = None  # int8: what its sidecar says stays fp32 (anatomy.distill.onnx_weights)


@dataclass
class Cost:
    runtime: str
    latency_ms_p50: float
    latency_ms_p95: float
    texts_per_s: dict[str, float]
    peak_batch_mib: float
    model_mib: float
    ratios: dict[str, Any]  # against the teacher (torch) at the students' context, from anatomy.cost
    context: int | None = None  # the context this row ran at
    threads: int | None = None  # intra-op threads of the measuring process (fixed, recorded)
    latency_reliable: bool = True  # False: the batch-1 spread never came under max_spread (see cost_notes)
    latency_spread: float | None = None  # interquartile range / median of the batch-1 times
    load_before: list[float] | None = None  # the machine's 1/5/15-min load average before the row
    busy: bool = False  # other work held the cores while measuring (see cost_notes)


@dataclass
class Row:
    name: str
    role: str  # teacher | student
    context: int | None
    vocab_size: int | None
    parameters: int | None
    components: dict[str, int]
    weight_bytes_fp32: int | None
    quality: dict[str, Quality] = field(default_factory=dict)  # prompt set -> quality against the teacher
    per_source: dict[str, Quality] = field(default_factory=dict)  # test split, by source
    risk: dict[str, Risk] = field(default_factory=dict)
    exports: list[Export] = field(default_factory=list)
    cost: list[Cost] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)  # steps, device, train_seconds (measured)


@dataclass
class Bill:
    schema_version: int
    config: dict[str, Any]
    context: dict[str, Any]
    vocab: dict[str, Any]
    split: dict[str, Any]
    teacher: Row
    candidates: list[Row]
    recommendation: Any  # anatomy.specialise.recommend.Recommendation
    stages: dict[str, dict[str, Any]]  # name -> key, params, needs (digests), files (sha256)
    timings: dict[str, float]  # stage -> seconds of the run that built it (measured)
    machine: dict[str, Any]  # measured on
    training_plan: dict[str, Any] = field(default_factory=dict)  # how the steps were chosen (--budget's rate)
    cost_notes: list[str] = field(default_factory=list)  # busy machine, unsettled latencies, teacher context

    def to_json(self) -> dict[str, Any]:
        from anatomy.io import to_jsonable

        return to_jsonable(dataclasses.asdict(self))


# ------------------------------------------------------------------------------------------- metrics


def load_set(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def aligned(ref: dict, stu: dict) -> np.ndarray:
    """Per prompt: the student's tokens (in base-tokenizer ids) equal the teacher's."""
    ro, so = ref["offsets"], stu["offsets"]
    return np.asarray([np.array_equal(ref["ids"][ro[i] : ro[i + 1]], stu["ids"][so[i] : so[i + 1]])
                       for i in range(len(ro) - 1)], dtype=bool)  # fmt: skip


def truncated(ref: dict, context: int) -> np.ndarray:
    return np.diff(ref["offsets"]) + 2 > context


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    denom = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.sum(a * b, axis=-1) / np.where(denom == 0, np.inf, denom)


def quality(ref: dict, stu_pooled: np.ndarray, rows: np.ndarray, stu: dict | None = None) -> Quality:
    """Agreement with the teacher on the prompts `rows` (token cosine needs the student's per-token outputs)."""
    from anatomy.distill.evaluate import knn_min_points
    from anatomy.metrics.similarity import knn_overlap

    pooled = float(_cosines(ref["pooled"][rows], stu_pooled[rows]).mean())
    token = None
    if stu is not None:
        ok = rows[aligned(ref, stu)[rows]]
        both = ref["mask"][ok] & stu["mask"][ok]
        if both.any():
            token = float(_cosines(ref["tokens"][ok][both], stu["tokens"][ok][both]).mean())
    knn = None  # as check and distill: k is never shrunk, a set too small for kNN@10 is not measured
    if len(rows) >= knn_min_points(KNN_K):
        knn = float(knn_overlap(ref["pooled"][rows], stu_pooled[rows], KNN_K).mean())
    return Quality(len(rows), pooled, token, knn)


# ------------------------------------------------------------------------------------------- assembly


def _row_cost(rows: list[dict], candidate: str) -> list[Cost]:
    return [Cost(r["runtime"], r["latency_ms_p50"], r["latency_ms_p95"], r["texts_per_s"], r["peak_batch_mib"],
                 r["rss_loaded_mib"] - r["rss_runtime_mib"], r["ratios"], r.get("context_length"), r.get("threads"),
                 r.get("latency_reliable", True), r.get("latency_spread"), r.get("load_before"),
                 bool(r.get("busy")))
            for r in rows if r["candidate"] == candidate]  # fmt: skip


def _torch(rows: list[dict], candidate: str) -> dict:
    return next(r for r in rows if r["candidate"] == candidate and r["runtime"] == "torch")


def build_bill(out_dir: Path, cfg: SpecialiseConfig, names: list[str], outcomes: list[Outcome]) -> Bill:
    from anatomy.io import read_json
    from anatomy.specialise.recommend import Constraints, recommend

    store = Store(out_dir)
    man = {o.name: o.manifest for o in outcomes}
    folder = store.folder
    context = man["teacher"]["params"]["context"]
    cost = read_json(folder("cost") / "cost.json")
    split = read_json(folder("split") / "split.json")
    sources: dict[str, list[int]] = {}
    for i, t in enumerate(split["test"]):
        for s in t["sources"]:
            sources.setdefault(s, []).append(i)
    sets = list(man["reference"]["summary"]["sets"])
    refs = {s: load_set(folder("reference") / f"{s}.safetensors") for s in sets}
    t_cost = [r for r in cost["rows"] if r["candidate"] == "teacher" and r["runtime"] == "torch"][
        -1
    ]  # own ctx
    vocab = man["vocab"]["summary"]
    teacher = Row(cfg.teacher, "teacher", t_cost["context_length"], vocab.get("original_size"),
                  t_cost["parameters"], t_cost["components"], 4 * t_cost["parameters"],
                  cost=_row_cost(cost["rows"], "teacher"))  # fmt: skip
    rows = []
    for name in names:
        tc = _torch(cost["rows"], name)
        config = read_json(folder(f"distill-{name}") / "run" / "config.json")
        arch = config["student_arch"]
        row = Row(name, "student", context, arch["vocab_size"], tc["parameters"], tc["components"],
                  4 * tc["parameters"], cost=_row_cost(cost["rows"], name),
                  training={"steps": config["steps"], "batch_size": config["batch_size"],
                            "device": man[f"distill-{name}"]["summary"]["device"],
                            "train_seconds": man[f"distill-{name}"]["seconds"]})  # fmt: skip
        for s in sets:
            stu = load_set(folder(f"evaluate-{name}") / f"{s}.safetensors")
            every = np.arange(len(refs[s]["pooled"]))
            row.quality[s] = quality(refs[s], stu["pooled"], every, stu)
            row.risk[s] = Risk(len(every), float((~aligned(refs[s], stu)).mean()),
                               float(truncated(refs[s], context).mean()))  # fmt: skip
            if s == TEST_SET:
                for source, idx in sorted(sources.items()):
                    row.per_source[source] = quality(refs[s], stu["pooled"], np.asarray(idx), stu)
        exports = man[f"export-{name}"]["summary"]["exports"]
        for fmt, info in exports.items():
            path = folder(f"export-{name}") / info["file"] if "file" in info else None
            size = _size(path) if path is not None else None
            q = None
            if fmt in ONNX_FORMATS and path is not None:
                pooled = load_set(path.with_name(path.name + f".{TEST_SET}.safetensors"))["pooled"]
                q = float(_cosines(refs[TEST_SET]["pooled"], pooled).mean())
            row.exports.append(Export(fmt, info.get("file"), size, q, info.get("error"), _stays_fp32(path)))
        rows.append(row)
    constraints = Constraints(cfg.max_quality_drop, cfg.max_params, cfg.max_latency_ms)
    stages = {
        o.name: {k: o.manifest[k] for k in ("key", "params", "needs", "files", "digest")} for o in outcomes
    }
    return Bill(
        SCHEMA_VERSION, _config(cfg), _context_record(cfg, man), vocab,
        {k: split[k] for k in ("seed", "test_share", "limit", "n_train", "n_test")}, teacher, rows,
        recommend(rows, constraints), stages, {o.name: o.manifest["seconds"] for o in outcomes}, cost["machine"],
        _training_plan(cfg, len(names)), [*cost.get("notes", []), *cost.get("warnings", [])],
    )  # fmt: skip


def _stays_fp32(path: Path | None) -> str | None:
    """What an int8 export's sidecar says stays fp32 (None for other formats)."""
    from anatomy.distill.onnx_sidecar import sidecar_path
    from anatomy.distill.onnx_weights import describe
    from anatomy.io import read_json

    if path is None or path.suffix != ".onnx" or not sidecar_path(path).is_file():
        return None
    quantised = read_json(sidecar_path(path)).get("quantised")
    return describe(quantised.get("stays_fp32")) or None if isinstance(quantised, dict) else None


def _training_plan(cfg: SpecialiseConfig, n_candidates: int) -> dict[str, Any]:
    from anatomy.specialise.plan import ASSUMED_STEPS_PER_S, steps_for

    how = "--steps" if cfg.steps is not None else "--budget" if cfg.budget is not None else "default"
    plan: dict[str, Any] = {"steps": steps_for(cfg, n_candidates), "how": how}
    if how == "--budget":
        plan.update(
            budget_minutes=cfg.budget, assumed_steps_per_s=ASSUMED_STEPS_PER_S, candidates=n_candidates
        )
    return plan


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _context_record(cfg: SpecialiseConfig, man: dict) -> dict:
    tokens = man["tokens"]["summary"]
    chosen = man["teacher"]["params"]["context"]
    how = "given (--context)" if cfg.fixed_context is not None else "auto"
    return {"L": chosen, "how": how, "recommended": tokens["recommended_context"], "rule": tokens["rule"],
            "truncation": tokens["truncation"], "padding": tokens["padding"]}  # fmt: skip


def _config(cfg: SpecialiseConfig) -> dict:
    from anatomy.report.collect import display

    data = dataclasses.asdict(cfg)
    data["inputs"] = [display(i) for i in cfg.inputs]
    data["held_out"] = [display(h) for h in cfg.held_out]
    data["students"] = [display(s) for s in cfg.students]
    return data


def write_bill(out_dir: Path, cfg: SpecialiseConfig, names: list[str], outcomes: list[Outcome]) -> Bill:
    """bill.json, bill.md, index.html and the Pareto figure, each written atomically."""
    from anatomy.io import write_json
    from anatomy.specialise.render import write_views

    bill = build_bill(out_dir, cfg, names, outcomes)
    write_json(out_dir / "bill.json", bill.to_json())
    write_views(out_dir, bill)
    return bill
