"""The bill's readable views: bill.md and a self-contained index.html (the report's renderer), and the Pareto
figure. Everything shown comes from the Bill; measured timings are marked as such."""

from __future__ import annotations

from pathlib import Path

from anatomy.analysis.base import Table
from anatomy.distill.evaluate import knn_min_points
from anatomy.report.render import Section, to_html, to_markdown
from anatomy.specialise.bill import KNN_K
from anatomy.specialise.data_stages import TEST_SET

FIGURE = "figures/pareto.png"
TITLE = "Specialised student: the bill"


def _f(value, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def _x(ratio) -> str:
    return "–" if ratio is None else f"{ratio:.3g}x"


def _mib(n) -> str:
    return "–" if n is None else f"{n / 2**20:.2f}"


def summary_table(bill) -> Table:
    """One row per candidate and runtime plus the teacher: the bill at a glance."""
    shown = sorted(
        {max(c.texts_per_s, key=int) for row in [bill.teacher, *bill.candidates] for c in row.cost}, key=int
    )  # the largest batch each row measured: the one its throughput cell shows
    at = f"@{shown[0]}" if len(shown) == 1 else "@largest batch"
    cols = ["encoder", "runtime", "context", "vocab", "params", "MiB shipped", f"{TEST_SET} pooled cos",
            f"{TEST_SET} token cos", "kNN@10", "p50 ms (x teacher)", "p95 ms", f"texts/s {at} (x)", "peak MiB (x)"]  # fmt: skip
    rows = []
    for row in [bill.teacher, *bill.candidates]:
        test = row.quality.get(TEST_SET)
        exports = {e.format: e for e in row.exports}
        for c in row.cost:
            shipped = row.weight_bytes_fp32 if c.runtime == "torch" else exports[c.runtime].bytes
            torch_row = c.runtime == "torch"
            if test is None:  # the teacher against itself
                pooled, token, knn = 1.0, 1.0, 1.0
            elif torch_row:
                pooled, token, knn = test.pooled_cosine, test.token_cosine, test.knn_overlap10
            else:  # an export: its own pooled outputs on the test split (per-token and kNN: the torch row's)
                pooled, token, knn = exports[c.runtime].test_pooled_cosine, None, None
            big = max(c.texts_per_s, key=int)
            flag = "" if c.latency_reliable else " !"  # did not settle: see the cost notes
            rows.append([
                row.name, c.runtime, str(c.context or row.context), _f(row.vocab_size, ","), _f(row.parameters, ","),
                _mib(shipped), _f(pooled, ".4f"), _f(token, ".4f"), _f(knn),
                f"{c.latency_ms_p50:.2f} ({_x(c.ratios.get('latency_p50'))}){flag}", f"{c.latency_ms_p95:.2f}",
                f"{c.texts_per_s[big]:,.0f} ({_x(c.ratios['texts_per_s'].get(big))})"
                + ("" if len(shown) == 1 else f" @{big}"),
                f"{c.peak_batch_mib:.0f} ({_x(c.ratios.get('peak_batch_mib'))})",
            ])  # fmt: skip
    return Table(
        cols,
        rows,
        "Quality against the teacher, size and measured cost (ratios to the teacher, torch, at the "
        "students' context; '!': a latency that did not settle)",
    )


def quality_tables(bill) -> list[Table]:
    sets = list(bill.candidates[0].quality) if bill.candidates else []
    by_set = Table(["candidate", "set", "prompts", "pooled cos", "token cos", "kNN@10", "tokenized differently",
                    "truncated"],
                   [[r.name, s, f"{r.quality[s].prompts:,}", _f(r.quality[s].pooled_cosine), _f(r.quality[s].token_cosine),
                     _f(r.quality[s].knn_overlap10), f"{r.risk[s].changed_share:.1%}", f"{r.risk[s].truncated_share:.1%}"]
                    for r in bill.candidates for s in sets],
                   "Quality and tokenization risk per prompt set (test split and each held-out set)")  # fmt: skip
    sources = sorted({s for r in bill.candidates for s in r.per_source})
    per_source = Table(["source", "prompts", *[f"{r.name} pooled / token cos" for r in bill.candidates]],
                       [[s, f"{bill.candidates[0].per_source[s].prompts:,}",
                         *[f"{_f(r.per_source[s].pooled_cosine)} / {_f(r.per_source[s].token_cosine)}"
                           for r in bill.candidates]] for s in sources],
                       "Per-source quality on the test split")  # fmt: skip
    return [by_set, per_source]


def detail_tables(bill) -> list[Table]:
    comps = ["token_embedding", "positional", "transformer", "projection"]
    params = Table(["encoder", *comps, "total"],
                   [[r.name, *[f"{r.components.get(c, 0):,}" for c in comps], _f(r.parameters, ",")]
                    for r in [bill.teacher, *bill.candidates]], "Parameters by component")  # fmt: skip
    exports = Table(["candidate", "format", "file", "bytes", "test pooled cos", "note"],
                    [[r.name, e.format, e.file or "–", _f(e.bytes, ","), _f(e.test_pooled_cosine),
                      e.error or e.stays_fp32 or ""]
                     for r in bill.candidates for e in r.exports], "Exports")  # fmt: skip
    training = Table(["candidate", "steps", "batch", "device", "wall s (measured)"],
                     [[r.name, str(r.training["steps"]), str(r.training["batch_size"]), r.training["device"],
                       f"{r.training['train_seconds']:.1f}"] for r in bill.candidates], "Training cost")  # fmt: skip
    options = Table(["candidate", "runtime", "params", "MiB", "p50 ms", "quality drop", "misses"],
                    [[o.candidate, o.runtime, f"{o.parameters:,}", _mib(o.bytes), f"{o.latency_ms_p50:.2f}",
                      f"{o.quality_drop:.4f}", "; ".join(o.misses) or "meets all"]
                     for o in bill.recommendation.options], "Every option against the constraints")  # fmt: skip
    stages = Table(["stage", "key", "wall s (measured)", "inputs"],
                   [[name, s["key"][:12], f"{bill.timings[name]:.1f}",
                     ", ".join(f"{k} {v[:12]}" for k, v in {**s["needs"], **s["files"]}.items())]
                    for name, s in bill.stages.items()], "Stages (keys from parameters and input hashes)")  # fmt: skip
    return [params, exports, training, options, stages]


def sections(bill) -> list[Section]:
    rec = bill.recommendation
    if rec.candidate is None:
        head = ["No candidate meets the constraints: nothing is recommended. " + rec.reason]
    else:
        head = [f"Recommended: {rec.candidate} ({rec.runtime}). {rec.reason}."]
    head.append(f"Constraints: {_constraints(rec.constraints)}.")
    head += [f"Watch: {w}" for w in rec.watch] or ["Watch: nothing stands out."]
    ctx, voc = bill.context, bill.vocab
    setup = [
        f"Teacher {bill.teacher.name}; student context {ctx['L']} ({ctx['how']}; the tokens analysis recommends "
        f"{ctx['recommended']}, which cuts {_f(ctx['truncation'], '.1%')} of corpus prompts); "
        f"{_teacher_contexts(bill, ctx['L'])}",
        _training_line(bill),
        f"Vocabulary: {'specialised' if voc['use'] else 'the teacher’s full vocabulary'} — {voc['reason']}.",
        f"Split by prompt (seed {bill.split['seed']}): {bill.split['n_train']:,} train (the distillation holds "
        f"out its own validation from them), {bill.split['n_test']:,} test.",
        "Quality is agreement with the teacher at the chosen context: pooled cosine over every prompt, per-token "
        "cosine over prompts the student tokenizes as the teacher does, kNN@10 overlap of pooled outputs (k "
        f"never shrunk: a set of fewer than {knn_min_points(KNN_K)} prompts has none, '–'). Latency, "
        "throughput, memory and wall times are measured on "
        f"{bill.machine.get('device_name', '?')} ({bill.machine.get('cores_available', '?')} cores, "
        f"{_threads(bill)}) and differ between runs; everything else is recomputed identically.",
        *knn_notes(bill),
        *[f"Cost: {note}" for note in bill.cost_notes],
    ]
    return [
        Section("Recommendation", head),
        Section("The bill", setup, [summary_table(bill)], [FIGURE]),
        Section("Quality and risk", [], quality_tables(bill)),
        Section("Details", [], detail_tables(bill)),
    ]


def knn_notes(bill) -> list[str]:
    """A line per prompt set too small for kNN@10 (its figure left out, as check and distill leave it out)."""
    need = knn_min_points(KNN_K)
    small = {s: q.prompts for r in bill.candidates for s, q in r.quality.items() if q.prompts < need}
    return [f"kNN@{KNN_K} not measured on {s}: {n:,} prompts, it needs at least {need} (on fewer the overlap is "
            "high whatever the student does)." for s, n in small.items()]  # fmt: skip


def _teacher_contexts(bill, students: int) -> str:
    """Which contexts the teacher was measured at, and what the students' shorter context saves it."""
    own = [c for c in bill.teacher.cost if c.runtime == "torch"]
    at = {c.context: c for c in own}
    if students in at and len(at) > 1:
        mine, theirs = at[students], next(c for c in own if c.context != students)
        return (f"the teacher is measured at the students' context {students} (the baseline of every ratio: like "
                f"with like) and at its own {theirs.context} (p50 {theirs.latency_ms_p50:.2f} ms against "
                f"{mine.latency_ms_p50:.2f} ms: what the shorter context alone saves).")  # fmt: skip
    if students in at:
        return (
            f"the teacher's own context is the students' ({students}): every ratio compares like with like."
        )
    return (f"the teacher is measured at its own context only ({', '.join(str(c) for c in at)}): the ratios "
            "include the context's saving (see the cost notes).")  # fmt: skip


def batch_note(bill) -> str | None:
    """A note when --batch-size was larger than the prompts the distillation trains on and was clamped."""
    asked = bill.config.get("batch_size")
    used = sorted({r.training.get("batch_size") for r in bill.candidates} - {None})
    if asked is None or not used or max(used) >= asked:
        return None
    return (
        f"batch size {'/'.join(map(str, used))}: --batch-size {asked} was clamped to the "
        f"{max(used)} prompts the distillation trains on (the train split less its validation)"
    )


def _training_line(bill) -> str:
    plan = bill.training_plan
    note = batch_note(bill)
    tail = f" Note: {note}." if note else ""
    if plan.get("how") == "--budget":
        return (f"Training: {plan['steps']:,} steps per candidate from --budget {plan['budget_minutes']:g} min at an "
                f"assumed {plan['assumed_steps_per_s']:g} steps/s (not measured) shared by {plan['candidates']} "
                f"candidate(s); the measured wall time of each is in the training table.{tail}")  # fmt: skip
    if plan:
        return f"Training: {plan['steps']:,} steps per candidate ({plan['how']}).{tail}"
    return f"Training: see the training table.{tail}"


def _threads(bill) -> str:
    costs = [c for r in [bill.teacher, *bill.candidates] for c in r.cost]
    threads = sorted({c.threads for c in costs if c.threads is not None})
    loads = [c.load_before[0] for c in costs if c.load_before]
    text = f"{'/'.join(map(str, threads)) or '?'} thread(s) per measuring process"
    return text + (f", 1-min load average before a row up to {max(loads):.2f}" if loads else "")


def _constraints(c) -> str:
    parts = []
    if c.max_quality_drop is not None:
        parts.append(f"quality drop ≤ {c.max_quality_drop:g}")
    if c.max_params is not None:
        parts.append(f"parameters ≤ {c.max_params:,}")
    if c.max_latency_ms is not None:
        parts.append(f"p50 ≤ {c.max_latency_ms:g} ms")
    return ", ".join(parts) or "none given"


def write_views(out_dir: Path, bill) -> None:
    from anatomy.figures.style import save_figure
    from anatomy.io import write_text
    from anatomy.specialise.figure import draw_pareto, prepare_pareto

    t = next((c for c in bill.teacher.cost if c.runtime == "torch"), None)
    fig = draw_pareto(prepare_pareto(bill.recommendation.options), t.latency_ms_p50 if t else None,
                      bill.teacher.parameters)  # fmt: skip
    save_figure(fig, out_dir / FIGURE)
    secs = sections(bill)
    write_text(out_dir / "bill.md", to_markdown(TITLE, secs))
    write_text(out_dir / "index.html", to_html(TITLE, secs, out_dir))
