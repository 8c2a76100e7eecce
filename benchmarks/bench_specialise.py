"""`anatomy specialise` wall time against the same stages run as separate commands.

One small job (the 1,000 built-in ImageNet class names, minilm teacher, one 2x64 student, 40 steps, ONNX
export, cost with 5 timed calls): first the pipeline in one process (per-stage seconds from its manifests),
then the chain a person would type: ingest, tokens, vocab, distill --vocab, agreement (the evaluation),
export, cost, each a fresh process that loads the stack (and the teacher) again. The pipeline should not be
slower: the teacher is loaded once and each prompt is embedded once. A rerun of the pipeline (every stage
reused after verification) is timed too.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from benchmarks.common import run_measured

STEPS = "40"
STUDENT = {"layers": 2, "width": 64, "heads": 2}


def main() -> None:
    import torch

    from anatomy.specialise.pipeline import run_specialise
    from anatomy.specialise.plan import SpecialiseConfig

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="bench-specialise-") as tmp:
        root = Path(tmp)
        student = root / "student.json"
        student.write_text(json.dumps(STUDENT), encoding="utf-8")
        cfg = SpecialiseConfig(inputs=("builtin:imagenet-classes",), teacher="minilm", students=(str(student),),
                               steps=int(STEPS), exports=("onnx",), cost_repeats=5, device="cpu")  # fmt: skip
        start = time.perf_counter()
        result = run_specialise(cfg, root / "pipeline")
        pipeline = time.perf_counter() - start
        start = time.perf_counter()
        run_specialise(cfg, root / "pipeline")
        rerun = time.perf_counter() - start
        print(f"pipeline: {pipeline:.1f} s in one process; rerun with every stage reused: {rerun:.1f} s")
        for o in result.outcomes:
            print(f"  {o.name:<22}{o.seconds:>7.1f} s")

        use_vocab = next(o for o in result.outcomes if o.name == "vocab").manifest["summary"]["use"]
        c = root / "chain"
        corpus = str(c / "corpus.parquet")
        run = str(c / "run")
        onnx = str(c / "student.onnx")
        steps = {
            "ingest": ["ingest", "builtin", "builtin:imagenet-classes", "--out", corpus],
            "tokens": ["tokens", "--corpus", corpus, "--tokenizer", "minilm", "--out", str(c)],
            "vocab": ["vocab", "--corpus", corpus, "--tokenizer", "minilm", "--out", str(c / "vocab")],
            "distill": ["distill", "--teacher", "minilm", "--student", str(student), "--corpus", corpus,
                        "--out", run, "--steps", STEPS, "--batch-size", "64", "--device", "cpu", "-q",
                        *(["--vocab", str(c / "vocab")] if use_vocab else [])],
            "agreement": ["agreement", "--teacher", "minilm", "--student", f"student:{run}/checkpoints/best",
                          "--corpus", corpus, "--out", str(c / "pair"), "--sample", "100", "-q"],
            "export": ["export", run, "--format", "onnx", "--out", onnx],
            "cost": ["cost", "-e", "minilm", "-e", f"student:{run}/checkpoints/best", "-e", onnx,
                     "--repeats", "5", "--out", str(c / "cost")],
        }  # fmt: skip
        chain = 0.0
        for name, args in steps.items():
            wall, rss = run_measured(args)
            chain += wall
            print(f"  separate process {name:<10}{wall:>7.1f} s  peak {rss:,.0f} MiB")
        print(f"separate commands: {chain:.1f} s; pipeline: {pipeline:.1f} s; ratio separate / pipeline "
              f"{chain / pipeline:.2f}x")  # fmt: skip
