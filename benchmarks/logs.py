"""A seeded synthetic prompt log, the shape of a served segmenter's traffic: LVIS names with modifiers and
relations, a Zipf-like head ("person" is much of the traffic) over a long tail, some lines in other case or
spacing (distinct lines that normalise to one prompt) and a few non-ASCII ones. About a quarter of the lines
are distinct. `python -m benchmarks.logs N OUT.txt` writes one; benchmarks call `write_log`. Its pool saturates
near 222,000 distinct prompts; `write_wide_log` (`--wide`) draws from ~150M (counts, colours, sizes, names,
places), so a 20M-line log holds about 5M distinct prompts.
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


# ---- a wide pool: millions of distinct prompts (the audit at log scale) --------------------------------
COUNTS = ["", "one ", "two ", "three ", "four ", "five ", "six ", "seven ", "eight ", "nine ", "ten ",
          "several ", "many ", "a few ", "a pair of ", "a group of "]  # fmt: skip
COLOURS = ["", "red ", "blue ", "green ", "yellow ", "black ", "white ", "brown ", "grey ", "orange ",
           "pink ", "purple ", "silver ", "golden ", "dark ", "pale "]  # fmt: skip
SIZES = ["", "small ", "large ", "tiny ", "huge ", "tall ", "short ", "long ", "round ", "flat ", "old ",
         "new ", "wooden ", "metal ", "plastic ", "striped ", "broken ", "shiny ", "wet ", "dirty "]  # fmt: skip
PLACES = ["", " on the table", " next to the car", " behind the man", " in the water", " on the left",
          " on the right", " near the window", " held by a child", " under the tree", " in the kitchen",
          " on the floor", " at the back", " in front of the house", " on the shelf", " in the sky",
          " beside the road", " on the bed", " in a box", " by the door", " at night", " in the snow",
          " on the grass", " in the corner"]  # fmt: skip


def wide_pool_size(n_names: int) -> int:
    return len(COUNTS) * len(COLOURS) * len(SIZES) * n_names * len(PLACES)


def write_wide_log(path: str | Path, n_lines: int, seed: int = 0) -> None:
    """n_lines of traffic over a pool of up to ~150M distinct prompts (counts, colours, sizes, LVIS names,
    places): half Zipf-like from the head, half uniform over a pool of n_lines * 3 // 10 prompts, so about
    a quarter of the lines are distinct (20M lines: about 5M distinct prompts), with the same case/spacing
    variants and non-ASCII lines as write_log. Vectorised with Arrow: tens of millions of lines in a minute."""
    import pyarrow as pa
    import pyarrow.compute as pc

    vocabulary = names()
    parts = [COUNTS, COLOURS, SIZES, vocabulary, PLACES]
    pool = max(1, min(n_lines * 3 // 10, wide_pool_size(len(vocabulary))))
    tables = [pa.array(p, pa.string()) for p in parts]
    rng = np.random.default_rng(seed)
    with open(path, "wb") as handle:
        for start in range(0, n_lines, CHUNK):
            k = min(CHUNK, n_lines - start)
            head = np.minimum(rng.zipf(1.3, k) - 1, pool - 1)
            tail = rng.integers(0, pool, k)
            ids = np.where(rng.random(k) < 0.5, head, (tail * 2_654_435_761) % pool)
            # mixed radix, the name fastest after nothing: the head (small ids) is bare names
            digits, rest = [], ids
            for p in (vocabulary, SIZES, COLOURS, COUNTS, PLACES):
                digits.append(rest % len(p))
                rest = rest // len(p)
            name, size, colour, count, place = (pa.array(d) for d in digits)
            columns = [tables[0].take(count), tables[1].take(colour), tables[2].take(size), tables[3].take(name),
                       tables[4].take(place)]  # fmt: skip
            lines = pc.binary_join_element_wise(*columns, pa.scalar("\n"), "")
            variant = rng.random(k)
            upper = pa.array(variant < 0.02)
            spaced = pa.array((variant >= 0.02) & (variant < 0.05))
            lines = pc.if_else(upper, pc.utf8_upper(lines), lines)
            lines = pc.if_else(spaced, pc.binary_join_element_wise("  ", pc.replace_substring(lines, " ", "  "), ""),
                               lines)  # fmt: skip
            accent = pa.array(variant > 0.999)
            lines = pc.if_else(accent, pc.replace_substring(lines, "\n", " café\n"), lines)
            offsets = np.frombuffer(lines.buffers()[1], np.int32, k + 1, lines.offset * 4)
            data = lines.buffers()[2]
            handle.write(memoryview(data)[offsets[0] : offsets[-1]])


if __name__ == "__main__":  # python -m benchmarks.logs N OUT.txt [--wide]
    (write_wide_log if "--wide" in sys.argv else write_log)(sys.argv[2], int(sys.argv[1]))
