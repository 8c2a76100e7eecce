"""A wrapper around anatomy.cost's measuring child for ONNX exports of specialised students.

anatomy.cost.measure.onnx_tokenizer rebuilds the CLIP or Hugging Face tokenizer an ONNX sidecar names, but not
the specialised vocabulary (`tokenizer.specialised`: FILE.onnx.vocab.json) that anatomy.distill.onnx_export
writes beside such a graph, so it feeds full-vocabulary ids to a smaller table and the measurement fails.
Until anatomy.cost reads it, `measure_child` runs the same measurement (anatomy.cost.measure.measure) in a
fresh process whose onnx_tokenizer reads that file; everything else is anatomy.cost's own code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from anatomy.errors import EncoderError


def measure_child(config: dict, timeout: float) -> dict[str, Any]:
    """anatomy.cost.compare.run_child, with this module as the child."""
    import anatomy

    root = str(Path(anatomy.__file__).resolve().parent.parent)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    )
    proc = subprocess.run([sys.executable, "-m", __name__, json.dumps(config)], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EncoderError(f"cost measurement of {config['spec']} ({config['runtime']}) failed: {last}")
    answer = json.loads(lines[-1])
    if "error" in answer:
        raise EncoderError(answer["error"], answer.get("hint"))
    return answer


def _main(argv: list[str]) -> None:
    import logging

    import anatomy.cost.measure as measure
    from anatomy.errors import AnatomyError

    original = measure.onnx_tokenizer

    def onnx_tokenizer(sidecar: dict, path: Path):
        specialised = sidecar["tokenizer"].get("specialised")
        if specialised:
            from anatomy.vocab.store import load_specialised

            return load_specialised(path.parent / specialised)
        return original(sidecar, path)

    measure.onnx_tokenizer = onnx_tokenizer
    logging.disable(logging.WARNING)
    try:
        answer = measure.measure(json.loads(argv[0]))
    except AnatomyError as error:
        answer = {"error": error.message, "hint": error.hint}
    print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1:])
