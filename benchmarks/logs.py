"""A seeded synthetic prompt log, the shape of a served segmenter's traffic: LVIS names with modifiers and
relations, a Zipf-like head ("person" is much of the traffic) over a long tail, some lines in other case or
spacing (distinct lines that normalise to one prompt) and a few non-ASCII ones. About a quarter of the lines
are distinct. `python -m benchmarks.logs N OUT.txt` writes one; benchmarks call `write_log`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import shared_data

MODIFIERS = ["", "red", "small", "the", "a", "large", "white", "black", "wooden", "old", "left", "right",
             "striped", "two", "broken", "shiny", "blue", "green", "tall", "the little"]  # fmt: skip
RELATIONS = ["", "on the table", "next to the car", "behind the man", "in the water", "on the left",
             "near the window", "held by a child", "under the tree"]  # fmt: skip
CHUNK = 1_000_000  # lines generated and written at a time


def names() -> list[str]:
    """LVIS category names from the shared data, else open_clip's ImageNet class names."""
    path = shared_data() / "lvis" / "lvis_v1_categories.json"
    if path.exists():
        return [c["name"].replace("_", " ") for c in json.loads(path.read_text(encoding="utf-8"))]
    from anatomy.corpus.sources.builtin import zero_shot_metadata

    return list(zero_shot_metadata().IMAGENET_CLASSNAMES)


def prompt_of(ids: np.ndarray, vocabulary: list[str]) -> list[str]:
    """The distinct prompt behind each id (mixed radix: modifier, name, relation)."""
    m = ids % len(MODIFIERS)
    n = (ids // len(MODIFIERS)) % len(vocabulary)
    r = (ids // (len(MODIFIERS) * len(vocabulary))) % len(RELATIONS)
    return [
        " ".join(p for p in (MODIFIERS[a], vocabulary[b], RELATIONS[c]) if p)
        for a, b, c in zip(m.tolist(), n.tolist(), r.tolist(), strict=True)
    ]


def write_log(path: str | Path, n_lines: int, seed: int = 0) -> None:
    """n_lines of traffic: half drawn Zipf-like from the head, half uniformly over n_lines // 4 prompts."""
    vocabulary = names()
    pool = max(1, min(n_lines * 3 // 10, len(MODIFIERS) * len(vocabulary) * len(RELATIONS)))
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for start in range(0, n_lines, CHUNK):
            k = min(CHUNK, n_lines - start)
            head = np.minimum(rng.zipf(1.3, k) - 1, pool - 1)
            tail = rng.integers(0, pool, k)
            ids = np.where(rng.random(k) < 0.5, head, (tail * 2_654_435_761) % pool)
            lines = prompt_of(ids, vocabulary)
            variant = rng.random(k)
            for i in np.flatnonzero(variant < 0.05).tolist():  # other case or spacing: same prompt
                lines[i] = lines[i].upper() if variant[i] < 0.02 else "  " + lines[i].replace(" ", "  ")
            for i in np.flatnonzero(variant > 0.999).tolist():  # a few non-ASCII lines
                lines[i] = lines[i] + " café"
            handle.write("\n".join(lines))
            handle.write("\n")


if __name__ == "__main__":
    write_log(sys.argv[2], int(sys.argv[1]))
