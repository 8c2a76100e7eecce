"""The cost rows as a table: columns and cells (for the report's tables) and the same as aligned text lines."""

from __future__ import annotations

from typing import Any


def columns_and_cells(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per measured configuration; ratios against the first row in parentheses; '!' marks a row
    taken on a busy machine or a latency that did not settle (see the warnings)."""
    from anatomy.cost.compare import model_mib

    batches = [str(b) for b in sorted({int(b) for row in result["rows"] for b in row["texts_per_s"]})]
    columns = ["encoder", "ctx", "runtime", "threads", "params", "fp32 MiB", "file MiB", "model MiB",
               "peak MiB", "p50 ms", "p95 ms", "spread"]  # fmt: skip
    columns += [f"texts/s@{b}" for b in batches] + ["paper GPU t/s", "load"]
    cells = []
    for row in result["rows"]:
        r = row["ratios"]
        theirs = row.get("paper_texts_per_s")
        flag = "" if row.get("latency_reliable", True) else " !"
        load = row.get("load_before") or [None]
        cells.append([
            row["encoder"], str(row["context"]), row["runtime"], str(row.get("threads", "-")),
            f"{row['parameters']:,}" if row.get("parameters") is not None else "-",
            f"{row['weight_bytes']['fp32'] / 2**20:.0f}" if "weight_bytes" in row else "-",
            f"{row['file_bytes'] / 2**20:.1f}" if row.get("file_bytes") else "-",
            f"{model_mib(row):.0f} ({_x(r['model_mib'])})",
            f"{row['peak_batch_mib']:.0f} ({_x(r['peak_batch_mib'])})",
            f"{row['latency_ms_p50']:.2f} ({_x(r['latency_p50'])}){flag}",
            f"{row['latency_ms_p95']:.2f}",
            f"{row['latency_spread']:.0%}" if "latency_spread" in row else "-",
            *[f"{row['texts_per_s'][b]:.1f} ({_x(r['texts_per_s'].get(b))})" for b in batches],
            f"{theirs:.1f} ({_x(r.get('paper_texts_per_s'))})" if theirs else "-",
            ("-" if load[0] is None else f"{load[0]:.2f}") + (" !" if row.get("busy") else ""),
        ])  # fmt: skip
    return columns, cells


def caption(result: dict[str, Any]) -> str:
    m = result["machine"]
    return (
        f"ratios (x) against the first row; measured on {m['device_name']} ({m['cores_available']} cores, "
        f"{result['settings']['threads']} thread(s) per measurement, load average before each row); "
        f"paper: {result['paper']['device']}, {result['paper']['source']}"
    )


def table_lines(result: dict[str, Any]) -> list[str]:
    """The table as aligned plain text, the caption, then the failures and warnings."""
    columns, cells = columns_and_cells(result)
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in [columns, *cells]]  # fmt: skip
    lines.append(caption(result))
    lines += [f"not measured: {f['encoder']} @ {f['context'] or 'default'} ({f['runtime']}): {f['error']}"
              for f in result.get("failures", [])]  # fmt: skip
    lines += precision_notes(result)
    lines += [f"warning: {w}" for w in result.get("warnings", [])]
    return lines


def precision_notes(result: dict[str, Any]) -> list[str]:
    """For each int8 row: what its export left in fp32 (from its sidecar, anatomy.distill.onnx_weights)."""
    from anatomy.distill.onnx_weights import describe

    notes = []
    for row in result["rows"]:
        quantised = row.get("quantised")
        if isinstance(quantised, dict) and quantised.get("stays_fp32"):
            notes.append(
                f"{row['encoder']} @ {row['context']} ({row['runtime']}): {describe(quantised['stays_fp32'])}"
            )
    return notes


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"
