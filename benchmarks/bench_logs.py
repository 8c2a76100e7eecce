"""Prompt logs at scale: `anatomy ingest` (the DuckDB engine) against a plain DuckDB and a plain polars
aggregation of the same file, and `anatomy audit -a tokens -a vocab` on the 10M-line corpus.

Logs from benchmarks/logs.py (seeded): 1M and 10M lines; 100M lines (about 2.1 GiB) only with
BENCH_LOGS_100M=1 (=only: that size alone). The generator's pool of distinct prompts saturates near 222,000
normalised prompts, so the larger logs test lines, not distinct prompts. The ingest runs with
--memory-limit 1GiB. The plain aggregations are what an engineer would write by hand: the same
normalisation for ASCII ("collapse spaces, strip, lowercase"), GROUP BY, count, written to Parquet; "duck2" is
the same query written as the ingest runs it (group the raw lines, normalise each distinct line once, group
again). The ingest also keeps the first raw text and line of each prompt, normalises non-ASCII lines with
Python's normalize(), counts skips and long prompts, and writes the corpus with its manifest. Every command
runs in a fresh process (the ingest is the `anatomy` CLI, whose start-up alone is 0.3-0.7 s); peak memory is
that process's VmHWM. Ratios are within one run (the machine is shared: the load average is printed).
Targets (issue 22): ingest within 1.5x of the plain engine aggregation; peak under 2 GiB at 100M lines;
the audit at 10M lines in minutes.

Measured by the lead on a quiet machine (2 cores, load 0.4-1.6; 2026-12-05, `python -m benchmarks logs`,
100M with BENCH_LOGS_100M=only):
  lines distinct | plain DuckDB   | duck2  | polars         | anatomy ingest | x DuckDB x duck2 x polars
  1M     197,786 |  0.7 s 128 MiB |  0.5 s | 0.5 s  189 MiB |  1.0 s 237 MiB |  1.43    1.92    2.07
  10M    222,300 |  3.6 s 212 MiB |  2.4 s | 1.6 s  754 MiB |  2.7 s 304 MiB |  0.74    1.11    1.68
  100M   265,014 | 33.6 s 240 MiB | 20.9 s | 15.9 s 2736 MiB | 18.5 s 396 MiB |  0.55    0.89    1.17
The Python reader at 1M: 6.6 s (6.6x the engine); `audit -a tokens -a vocab` on the 10M corpus: 4.5 s, 391 MiB.
Earlier, under load (2 cores shared by ~6 engineers; load averages in brackets):
  lines distinct | plain DuckDB   | duck2  | polars        | anatomy ingest | x DuckDB x duck2 x polars
  1M     197,786 |  2.5 s 129 MiB |  2.2 s | 1.7 s 195 MiB |  3.4 s 252 MiB |  1.39    1.58    1.97  (4.9-5.5)
  10M    222,300 | 17.4 s 211 MiB | 13.2 s | 8.2 s 607 MiB |  8.3 s 336 MiB |  0.48    0.63    1.02  (4.9-5.5)
  an earlier run (load 5.6): 1M 1.8 s / 2.4 s = 1.30x, 10M 12.2 s / 6.6 s = 0.54x; by hand at load 2.4,
  1M: plain 0.67 s, ingest 0.90 s (1.35x), of which 0.2-0.3 s is the CLI's start-up (it imports the
  analyses' registry and numpy to build its commands).
The round before (normalising every line, then grouping; a second full scan for the CR count): 1M 7.9 s vs
3.5 s = 2.26x, 10M 58.9 s vs 50.1 s = 1.18x, 100M 96.1 s / 496 MiB vs 94.3 s = 1.02x (load 6-14).
The Python reader at 1M: 19.3 s, 280 MiB (5.7x the engine); at 100M it read the whole file into memory (2.3
GiB RSS after 15 minutes) and was stopped. `audit -a tokens -a vocab` on the 10M corpus: 16.8 s, 409 MiB.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import TINY, run_measured, size
from benchmarks.logs import write_log

SIZES = [size(1_000_000, 2_000), size(10_000_000, 5_000)]
AUDIT_AT: int | None = SIZES[1]
if os.environ.get("BENCH_LOGS_100M") in ("1", "only") and not TINY:
    SIZES.append(100_000_000)
    if os.environ["BENCH_LOGS_100M"] == "only":
        SIZES, AUDIT_AT = SIZES[-1:], None
MEMORY_LIMIT = "1GiB"  # the ingest's --memory-limit at every size

_HWM = "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"
DUCKDB_PLAIN = """
import sys, duckdb
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute(f'''COPY (SELECT p AS prompt, count(*) AS count FROM (
  SELECT lower(trim(regexp_replace(coalesce(line, ''), ' {{2,}}', ' ', 'g'))) AS p
  FROM read_csv('{sys.argv[1]}', columns={{'line': 'VARCHAR'}}, delim='\\x1f', quote='', escape='',
                header=false, auto_detect=false, new_line='\\\\n')) WHERE p <> '' GROUP BY p)
  TO '{sys.argv[2]}' (FORMAT parquet, COMPRESSION zstd)''')
print(con.execute(f"SELECT count(*) FROM '{sys.argv[2]}'").fetchone()[0])
"""
# the same aggregation written as the ingest runs it: group the raw lines, normalise each distinct line once
DUCKDB_DISTINCT_FIRST = """
import sys, duckdb
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute(f'''COPY (SELECT p AS prompt, sum(c) AS count FROM (
  SELECT lower(trim(regexp_replace(line, ' {{2,}}', ' ', 'g'))) AS p, c FROM (
    SELECT coalesce(line, '') AS line, count(*) AS c
    FROM read_csv('{sys.argv[1]}', columns={{'line': 'VARCHAR'}}, delim='\\x1f', quote='', escape='',
                  header=false, auto_detect=false, new_line='\\\\n') GROUP BY line)) WHERE p <> '' GROUP BY p)
  TO '{sys.argv[2]}' (FORMAT parquet, COMPRESSION zstd)''')
print(con.execute(f"SELECT count(*) FROM '{sys.argv[2]}'").fetchone()[0])
"""
POLARS_PLAIN = """
import sys, polars as pl
line = pl.col("line").fill_null("").str.replace_all(" {2,}", " ").str.strip_chars(" ").str.to_lowercase()
(pl.scan_csv(sys.argv[1], has_header=False, separator="\\x1f", quote_char=None, new_columns=["line"],
             schema_overrides={"line": pl.String})
   .select(line.alias("prompt")).filter(pl.col("prompt") != "").group_by("prompt").len("count")
   .sink_parquet(sys.argv[2], compression="zstd"))
print(pl.scan_parquet(sys.argv[2]).select(pl.len()).collect().item())
"""


def run_script(code: str, *args: str) -> tuple[float, float, str]:
    """Run a Python snippet in a fresh process: (wall seconds, peak RSS MiB, its first output line)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code + "\n" + _HWM, *args],
                          capture_output=True, text=True, check=False)  # fmt: skip
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-2000:]}")
    lines = proc.stdout.split()
    return wall, int(lines[-1]) / 1024, lines[0]


def main() -> None:
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2 cores shared)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-logs-", dir=os.environ.get("BENCH_LOGS_DIR")) as tmp:
        for n in SIZES:
            log = Path(tmp) / f"log_{n}.txt"
            write_log(log, n)
            mib = log.stat().st_size / 2**20
            corpus = Path(tmp) / f"corpus_{n}.parquet"
            dw, dm, dn = run_script(DUCKDB_PLAIN, str(log), f"{tmp}/duck_{n}.parquet")
            fw, _, fn = run_script(DUCKDB_DISTINCT_FIRST, str(log), f"{tmp}/duck2_{n}.parquet")
            assert fn == dn, (fn, dn)  # the same prompts, however the query is written
            pw, pm, pn = run_script(POLARS_PLAIN, str(log), f"{tmp}/polars_{n}.parquet")
            iw, im = run_measured(
                [
                    "ingest",
                    "text",
                    str(log),
                    "--out",
                    str(corpus),
                    "--engine",
                    "duckdb",
                    "--memory-limit",
                    MEMORY_LIMIT,
                ]
            )
            distinct = _distinct(corpus)
            rows.append((n, mib, distinct, dn, dw, dm, fw, pw, pm, iw, im))
            if n == SIZES[0] and n <= 10_000_000:  # the Python reader, for reference, at the smallest size
                yw, ym = run_measured(
                    ["ingest", "text", str(log), "--out", f"{tmp}/py.parquet", "--engine", "python"]
                )
                print(f"python reader at {n:,} lines: {yw:.1f} s, {ym:,.0f} MiB ({yw / iw:.1f}x the engine)")
            if n == AUDIT_AT:
                aw, am = run_measured(
                    ["audit", str(corpus), "-a", "tokens", "-a", "vocab", "-q", "--out", f"{tmp}/audit"]
                )
                print(
                    f"audit -a tokens -a vocab on the {n:,}-line corpus ({distinct:,} prompts): {aw:.1f} s, {am:,.0f} MiB"
                )
            for path in (log, corpus):
                path.unlink()
        print(f"{'lines':>12}{'MiB':>7}{'distinct':>10}{'duckdb s':>9}{'MiB':>7}{'duck2 s':>8}{'polars s':>9}"
              f"{'MiB':>7}{'ingest s':>9}{'MiB':>7}{'x duckdb':>9}{'x duck2':>8}{'x polars':>9}")  # fmt: skip
        for n, mib, distinct, dn, dw, dm, fw, pw, pm, iw, im in rows:
            check = "" if str(distinct) == dn else f"  (plain duckdb: {dn} prompts, ASCII rule only)"
            print(f"{n:>12,}{mib:>7.0f}{distinct:>10,}{dw:>9.1f}{dm:>7.0f}{fw:>8.1f}{pw:>9.1f}{pm:>7.0f}"
                  f"{iw:>9.1f}{im:>7.0f}{iw / dw:>9.2f}{iw / fw:>8.2f}{iw / pw:>9.2f}{check}")  # fmt: skip
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


def _distinct(corpus: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(corpus).num_rows


if __name__ == "__main__":
    main()
