"""The model half of the pipeline, each a stage body over library functions: one distillation per candidate
(anatomy.distill.train, resumed exactly after a kill), its outputs on every prompt set (the bill compares them
to the teacher's), its exports (anatomy.distill.export) with their outputs on the test split, and the cost of
the teacher and of every artefact (anatomy.specialise.costing).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from anatomy.errors import AnatomyError
from anatomy.specialise.data_stages import CACHE, TEST_SET, TRAIN_CORPUS, encode_set, prompt_sets
from anatomy.specialise.plan import Candidate, SpecialiseConfig
from anatomy.specialise.stages import StageRun

log = logging.getLogger(__name__)

RUN = "run"  # the distillation run directory inside a distill stage
EVAL_EVERY_SHARE = 4  # validation evaluations per run (besides step 0)
EXPORT_FILES = {"onnx": "student.onnx", "int8": "student.int8.onnx", "litetext": "student.litetext.pt",
                "open_clip": "open_clip", "hf": "hf"}  # fmt: skip
ONNX_FORMATS = ("onnx", "int8")


def student_path(folder: Path) -> Path:
    """The checkpoint a distill stage ships: the best one on validation."""
    return folder / RUN / "checkpoints" / "best"


def distill_stage(run: StageRun, cfg: SpecialiseConfig, cand: Candidate) -> dict:
    import torch

    from anatomy.distill.train import DistillConfig, distill
    from anatomy.io import write_json

    student = cand.body
    if cand.arch is not None:
        student = str(write_json(run.folder / "student.json", cand.arch))
    steps = run.params["steps"]
    use_vocab = run.summaries["vocab"]["use"]
    dcfg = DistillConfig(
        teacher=cfg.teacher, student=student or "", corpus=str(run.inputs["split"] / TRAIN_CORPUS),
        context=run.params["context"], steps=steps, batch_size=run.params["batch_size"],
        eval_every=max(1, steps // EVAL_EVERY_SHARE), seed=cfg.seed,
        vocab=str(run.inputs["vocab"]) if use_vocab else None,
    )  # fmt: skip
    run_dir = run.folder / RUN
    resume = (run_dir / "checkpoints" / "state.pt").exists()
    result = distill(
        dcfg, run_dir, resume=resume, device=cfg.device, cache_dir=run.inputs["teacher"] / CACHE,
        on_step=lambda done, total, _loss, _rate: run.progress(done / total),
    )  # fmt: skip
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return {"candidate": cand.name, "steps": result["config"]["steps"], "device": device,
            "best_token_cosine": result["best_token_cosine"], "vocab": use_vocab, "resumed": resume}  # fmt: skip


def evaluate_stage(run: StageRun, cfg: SpecialiseConfig) -> dict:
    """The shipped student's outputs on every prompt set (as the teacher's were stored)."""
    from safetensors.numpy import save_file

    from anatomy.encoders.registry import load

    encoder = load(f"student:{student_path(run.inputs['distill'])}", device=cfg.device)
    sets = prompt_sets(run.inputs["split"], cfg.held_out)
    for i, (label, (texts, _)) in enumerate(sets.items()):
        save_file(encode_set(encoder, texts), str(run.folder / f"{label}.safetensors"))
        run.progress((i + 1) / len(sets))
    return {"sets": {k: len(v[0]) for k, v in sets.items()}}


def export_stage(run: StageRun, cfg: SpecialiseConfig) -> dict:
    """Each requested format; a format this student cannot take (e.g. LiteText for a custom body) is recorded
    with the library's reason. ONNX files are also run on the test split (their own quality in the bill)."""
    from anatomy.distill.export import export

    done: dict[str, dict] = {}
    source = run.inputs["distill"] / RUN
    for i, fmt in enumerate(cfg.exports):
        out = run.folder / EXPORT_FILES.get(fmt, fmt)
        try:
            summary = export(source, fmt, out, "best")
        except AnatomyError as error:
            log.warning("export %s: %s", fmt, error.message)
            done[fmt] = {"error": error.message}
            continue
        done[fmt] = {"file": out.name, "notes": summary.get("notes", [])}
        if fmt in ONNX_FORMATS:
            _onnx_outputs(out, run)
        run.progress((i + 1) / len(cfg.exports))
    return {"exports": done}


def _onnx_outputs(path: Path, run: StageRun) -> None:
    """Pooled outputs of an ONNX export on the test prompts, tokenized as the export's sidecar says."""
    import numpy as np
    from safetensors.numpy import save_file

    from anatomy.distill.onnx_export import run_session, session
    from anatomy.encoders.registry import load

    student = load(
        f"student:{student_path(run.inputs['distill'])}", device="cpu"
    )  # its tokenizer and context
    texts = prompt_sets(run.inputs["split"], ())[TEST_SET][0]
    ids, valid = student.tokenize(texts)
    sess = session(path)
    pooled = np.concatenate(
        [run_session(sess, ids[s : s + 64], valid[s : s + 64])[1] for s in range(0, len(ids), 64)]
    )
    save_file(
        {"pooled": pooled.astype(np.float32)}, str(path.with_name(path.name + f".{TEST_SET}.safetensors"))
    )


def cost_stage(run: StageRun, cfg: SpecialiseConfig, names: list[str]) -> dict:
    """The teacher (torch) at the students' context, then at its own, and per candidate its student (torch)
    and every ONNX export, one fresh process per row (anatomy.cost); rows are labelled (candidate, runtime)
    for the bill. The first row is the baseline of every ratio, so students are compared with the teacher
    doing the same work (same context); the teacher's own-context row shows what the shorter context saves.
    A teacher that cannot run at the students' context is measured at its own only (the bill says so)."""
    from anatomy.io import write_json
    from anatomy.specialise.costing import measure_cost

    context = int(run.params["context"])
    rows: list[tuple[str, str, Any]] = [
        ("teacher", "torch", (cfg.teacher, context)),
        ("teacher", "torch", cfg.teacher),
    ]
    for name in names:
        rows.append((name, "torch", f"student:{student_path(run.inputs[f'distill-{name}'])}"))
        exports = run.summaries[f"export-{name}"]["exports"]
        for fmt in ONNX_FORMATS:
            if fmt in exports and "file" in exports[fmt]:
                rows.append((name, fmt, str(run.inputs[f"export-{name}"] / exports[fmt]["file"])))
    measured = measure_cost([spec for _, _, spec in rows], cfg, run.folder, optional=1,
                            progress=lambda i: run.progress(i / len(rows)))  # fmt: skip
    notes = []
    if measured["failures"]:  # the teacher at the students' context (the only row allowed to fail)
        rows = rows[1:]
        notes.append(f"the teacher could not run at context {context} ({measured['failures'][0]['error']}): "
                     "it is measured at its own context only, so the ratios include the context's saving")  # fmt: skip
    labelled = [
        {"candidate": c, "runtime": r, **m} for (c, r, _), m in zip(rows, measured["rows"], strict=True)
    ]
    if not measured["failures"] and labelled[0]["context_length"] == labelled[1]["context_length"]:
        del labelled[1]  # the teacher's own context is the students': one row
    write_json(run.folder / "cost.json", {**measured, "rows": labelled, "notes": notes})
    return {"rows": len(labelled)}
