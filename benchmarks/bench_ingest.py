"""Ingest speed and memory: all shared data, and generated 250,000 / 1,000,000-line text files.

Each ingest runs `anatomy ingest` in a fresh process; the baseline is a one-line ingest measured in the same
run (interpreter, imports, Parquet write). Linear scaling shows as a 1M/250k wall-time ratio near 4 and
memory above the baseline growing by about the same bytes per line.

Peak memory is the child's VmHWM (/proc), not ru_maxrss: Linux carries ru_maxrss over fork and exec, so a
child of a large parent (one that imported torch for another benchmark) would report the parent's size.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from benchmarks.common import run_measured, shared_data, size

SHARED_DATA = shared_data()
SIZES = (size(250_000, 500), size(1_000_000, 2_000))

_MODIFIERS = ["red", "small", "the", "a", "large", "white", "black", "wooden", "old", "left", "right",
              "near the", "behind the", "on top of", "next to the", "striped", "two", "broken", "shiny"]  # fmt: skip


def generate_prompts(path: Path, n: int, seed: int = 0) -> None:
    """n referring-expression-like lines over a 3,000-word made-up vocabulary (about 80% distinct at 1M)."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "ber", "dan", "gor", "pel", "wix", "zu"]
    words = sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(5000)})
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(n):
            k = rng.randint(1, 8)
            handle.write(
                " ".join(
                    rng.choice(_MODIFIERS) if rng.random() < 0.5 else rng.choice(words) for _ in range(k)
                )
            )
            handle.write("\n")


def shared_data_plan(d: Path) -> list[list[str]]:
    return [
        ["lvis", str(d / "lvis" / "lvis_v1_categories.json"), "--synonyms"],
        ["refcoco", *sorted(str(p) for p in (d / "refcoco").glob("*.csv"))],
        ["saco", str(d / "saco" / "toy_saco_veval_sav_test_gt.json")],
        ["rf100vl", str(d / "rf100vl" / "rf100v1_labels_names.json")],
        ["text", str(d / "coco" / "yoloworld_coco_class_texts.json"), str(d / "v3det" / "category_name_13204_v3det_2023_v1.txt")],
    ]  # fmt: skip


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one = tmp / "one.txt"
        one.write_text("white dog\n", encoding="utf-8")
        base_wall, base_mem = run_measured(["ingest", "text", str(one), "--out", str(tmp / "base.parquet")])
        print(
            f"baseline (1-line ingest: start-up, imports, write): {base_wall:6.2f} s  {base_mem:7.1f} MiB peak"
        )

        if (SHARED_DATA / "README.md").exists():
            out = tmp / "shared.parquet"
            total_wall, peak = 0.0, 0.0
            for args in shared_data_plan(SHARED_DATA):
                wall, mem = run_measured(["ingest", *args, "--out", str(out)])
                total_wall, peak = total_wall + wall, max(peak, mem)
                print(f"  shared {args[0]:8s}: {wall:6.2f} s  {mem:7.1f} MiB peak")
            print(f"all shared data (5 ingests, ~135k records): {total_wall:6.2f} s  {peak:7.1f} MiB peak  "
                  f"({total_wall / base_wall:.1f}x baseline wall)")  # fmt: skip
        else:
            print(f"all shared data: skipped ({SHARED_DATA} is absent)")

        results = {}
        for n in SIZES:
            path = tmp / f"gen_{n}.txt"
            generate_prompts(path, n)
            wall, mem = run_measured(["ingest", "text", str(path), "--out", str(tmp / f"gen_{n}.parquet")])
            results[n] = (wall, mem)
            per_row = (mem - base_mem) * 2**20 / n
            print(f"text {n:>9,} lines ({path.stat().st_size / 2**20:5.1f} MiB): {wall:6.2f} s  {mem:7.1f} MiB peak  "
                  f"{n / max(wall - base_wall, 1e-9):9,.0f} lines/s above baseline  {per_row:5.0f} B/line above baseline")  # fmt: skip
        (w1, m1), (w2, m2) = results[SIZES[0]], results[SIZES[1]]
        scale = SIZES[1] / SIZES[0]
        print(f"scaling {SIZES[1] // SIZES[0]}x lines: wall x{(w2 - base_wall) / (w1 - base_wall):.2f} above baseline "
              f"(linear = x{scale:.0f}), memory above baseline x{(m2 - base_mem) / max(m1 - base_mem, 1e-9):.2f}")  # fmt: skip
        print(
            f"1M-line peak {m2:.0f} MiB vs 1 GiB budget: {'OK' if m2 < 1024 else 'OVER'} ({m2 / 1024:.0%} of budget)"
        )
