"""The `anatomy` command: one Typer app, thin commands that parse options, call one library function and print.

Commands live in the modules beside this one (corpus, encoders, distill, audit); one command per registered
analysis is generated in analyses.py. Heavy libraries are imported inside the commands, so `anatomy --help`
stays instant.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from anatomy.cli import analyses, audit, check, corpus, cost, distill, encoders, specialise
from anatomy.cli.common import err, guarded
from anatomy.cli.data import app as data_app

app = typer.Typer(
    cls=cost.Group,  # `anatomy cost -e ...`, the older form, reaches `anatomy cost-table`
    name="anatomy",
    help="Audit how much of a text encoder a prompt workload really uses, and distill smaller students.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_time=False, show_path=False, markup=False)],
        force=True,
    )


# in pipeline order: fetch datasets (data), build a corpus, look at encoders, the analyses, train students, audit and report
app.command("ingest")(guarded(corpus.ingest_cmd))
app.command("corpus")(guarded(corpus.corpus_cmd))
app.command("encoders")(guarded(encoders.encoders_cmd))
app.command("embed")(guarded(encoders.embed_cmd))
app.command("analyses")(guarded(encoders.analyses_cmd))
analyses.register(app)
app.command("distill")(guarded(distill.distill_cmd))
app.command("export")(guarded(distill.export_cmd))
app.command("ablate")(guarded(distill.ablate_cmd))
cost.register(app)
app.command("audit")(guarded(audit.audit_cmd))
app.command("report")(guarded(audit.report_cmd))
app.command("check")(guarded(check.check_cmd))
app.command("specialise")(guarded(specialise.specialise_cmd))
app.add_typer(data_app, name="data")
