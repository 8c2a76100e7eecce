"""`anatomy audit` on a prompt log of 20M lines (about 5M distinct prompts) with the default encoder (minilm)
and analyses: wall time and peak memory per stage, in a fresh process.

Log: benchmarks/logs.py's wide pool (seeded; about a quarter of the lines distinct), ingested with
`anatomy ingest text LOG --engine duckdb` in its own process. The audit then runs on the corpus in a
fresh process; each stage's peak is that process's VmHWM, reset at the stage's start (/proc/self/clear_refs),
so a stage's peak is its own (issue 24 measured about 2,900 B per distinct prompt, 14.9 GiB, at 20M before).

Named baselines in the same run: the ingest of the same log, and the same audit on a log 100x smaller
(fixed costs: imports, the encoder, the embedding-table SVD, samples); "growth" per stage is the peak above
that smaller run's, divided by the added distinct prompts (B/prompt). BENCH_AUDIT_SCALE_LINES=N sets the
size (default 20,000,000; a tiny run: 20,000). The machine is shared: the load average is printed.

Measured by the lead on a quiet machine (2 cores, load 1.3-1.6; 2026-12-05), after HFTokenizer.encode began
calling the Rust tokenizer directly (spectrum 137.5 s -> 52.2 s):
  200,000 lines, 49,955 distinct: ingest (baseline) 0.6 s, 149 MiB; audit 14.7 s, peak 1,406 MiB
  20M lines, 4,925,619 distinct: ingest (baseline) 11.3 s, 2,399 MiB; audit 130.1 s, peak 2,299 MiB
  stage at 20M: ingest 0.8 s / 751 MiB, tokens 10.9 / 1,347, vocab 42.6 / 2,299, load minilm 2.8 / 1,500,
  positions 0.5 / 1,503, spectrum 52.2 / 1,208, dims 8.4 / 1,853, robustness 5.6 / 1,941, report 3.6 / 1,941;
  audit peak growth 893 MiB = 192 B per added distinct prompt; audit / ingest: wall 11.49x, peak 0.96x.
Earlier (2 cores shared with ~6 engineers, load average 2.3 at the start, 5.6 at the end):
  200,000 lines, 49,955 distinct: ingest (baseline) 1.9 s, 229 MiB; audit 64.2 s, peak 1,343 MiB
  20M lines, 4,925,619 distinct: ingest (baseline) 49.2 s, 3,227 MiB; audit 403.0 s, peak 2,313 MiB
  stage at 20M          wall s  peak MiB  at start  growth MiB  B/prompt
  ingest (corpus check)    1.7       754       511         140        30
  tokens                  22.1     1,434       733         702       151
  vocab                   64.8     2,313       706       1,585       341
  load minilm              4.1     1,584     1,559         628       135
  positions minilm         1.1     1,520     1,513         544       117
  spectrum minilm        244.7     1,655     1,520         466       100
  dims minilm             34.5     1,859     1,200         629       135
  robustness minilm       18.7     1,912     1,318         569       122
  report                   6.5     1,912         -         569       122
  audit peak growth 971 MiB = 209 B per added distinct prompt (issue 24 before this change: 618 s, 14.9 GiB,
  about 2,900 B per prompt); audit / ingest of the same log: wall 8.18x, peak 0.72x.
"at start" above the previous stage's peak minus its own transient is memory the allocators keep (Arrow's
pool, glibc arenas), not live data. spectrum's time is the encoder tokenizer run over every row for the ids
the corpus uses (memory bounded by its batch).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import run_measured, size
from benchmarks.logs import write_wide_log

LINES = int(os.environ.get("BENCH_AUDIT_SCALE_LINES") or size(20_000_000, 20_000))

# Runs the audit in-process and prints one JSON line per stage: wall, peak (VmHWM reset at the stage's
# start) and resident memory at its start, all in MiB.
_CHILD = """
import json, sys, time
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
def reset():
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
import torch
torch.set_num_threads(2)
from anatomy.audit import AuditConfig, run_audit
now = {}
def say(message):
    if message.endswith(" ..."):
        reset()
        now.update(start=time.perf_counter(), rss=status("VmRSS:"))
    elif message.endswith(" s") and ": " in message and "start" in now:
        stage = message.rsplit(": ", 1)[0]
        print(json.dumps({"stage": stage, "wall": time.perf_counter() - now.pop("start"),
                          "peak": status("VmHWM:"), "start": now["rss"]}), flush=True)
reset()
start = time.perf_counter()
result = run_audit(AuditConfig(inputs=(sys.argv[1],)), sys.argv[2], say)
print(json.dumps({"stage": "report", "wall": result.timings.get("report", 0.0), "peak": status("VmHWM:"),
                  "start": None}), flush=True)
fails = [f.line() for f in result.findings if f.mark == "fail"]
print(json.dumps({"total": time.perf_counter() - start, "fails": fails}), flush=True)
"""


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def measure(lines: int, tmp: Path) -> dict:
    """Write a log of `lines`, ingest it (its own process), audit the corpus (a fresh process)."""
    import pyarrow.parquet as pq

    log, corpus = tmp / f"log{lines}.txt", tmp / f"corpus{lines}.parquet"
    write_wide_log(log, lines)
    ingest = run_measured(["ingest", "text", str(log), "--out", str(corpus), "--engine", "duckdb"])
    log.unlink()
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(corpus), str(tmp / f"audit{lines}")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"audit failed:\n{proc.stderr[-3000:]}")
    rows = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    stages = {x["stage"]: x for x in rows if "stage" in x}
    return {"lines": lines, "distinct": pq.ParquetFile(corpus).metadata.num_rows, "ingest": ingest,
            "stages": stages, "wall": wall, "peak": max(x["peak"] for x in stages.values()), "end": rows[-1]}  # fmt: skip


def main() -> None:
    print(f"load average at start: {_load()}")
    with tempfile.TemporaryDirectory(prefix="bench-audit-scale-") as tmp:
        small = measure(max(LINES // 100, 2_000), Path(tmp))
        big = measure(LINES, Path(tmp))
    added = big["distinct"] - small["distinct"]
    for run in (small, big):
        wall, mib = run["ingest"]
        print(f"{run['lines']:>11,} lines, {run['distinct']:,} distinct prompts: ingest (baseline) {wall:.1f} s, "
              f"peak {mib:,.0f} MiB; audit {run['wall']:.1f} s, peak {run['peak']:,.0f} MiB")  # fmt: skip
    print(f"stages at {big['lines']:,} lines; 'growth' is the peak minus the same stage's at {small['lines']:,}, "
          f"per added distinct prompt in B/prompt")  # fmt: skip
    print(f"{'stage':<22}{'wall s':>8}{'peak MiB':>10}{'at start':>10}{'growth MiB':>12}{'B/prompt':>10}")
    for stage, x in big["stages"].items():
        grown = x["peak"] - small["stages"].get(stage, x)["peak"]
        at = f"{x['start']:,.0f}" if x["start"] is not None else "-"
        print(f"{stage:<22}{x['wall']:>8.1f}{x['peak']:>10,.0f}{at:>10}{grown:>12,.0f}"
              f"{grown * 2**20 / max(added, 1):>10,.0f}")  # fmt: skip
    grown = big["peak"] - small["peak"]
    print(f"audit peak growth: {grown:,.0f} MiB for {added:,} more distinct prompts = "
          f"{grown * 2**20 / max(added, 1):,.0f} B per prompt (issue 24 before: about 2,900)")  # fmt: skip
    wall, mib = big["ingest"]
    print(f"audit / ingest of the same log: wall {big['wall'] / wall:.2f}x, peak {big['peak'] / mib:.2f}x")
    for run in (small, big):
        if run["end"].get("fails"):
            print(f"failed findings at {run['lines']:,} lines: " + "; ".join(run["end"]["fails"]))
    print(f"load average at end: {_load()}")


if __name__ == "__main__":
    main()
