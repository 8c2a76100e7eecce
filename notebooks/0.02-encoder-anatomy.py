# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 0.02 Encoder anatomy
#
# Per encoder of an audit: the positional table, the token-embedding spectrum and the intrinsic dimension
# of the outputs, with the paper's numbers beside ours. `ANATOMY_AUDIT_DIR` picks the audit directory.

# %%
import os
from pathlib import Path

import pandas as pd
from IPython.display import Image, display

from anatomy.analysis import ANALYSES
from anatomy.io import to_jsonable
from anatomy.report.collect import collect, collect_findings
from anatomy.report.render import flatten

AUDIT_DIR = Path(os.environ.get("ANATOMY_AUDIT_DIR", "../reports"))
record = collect(AUDIT_DIR)
[(e.spec, sorted(e.results), e.errors) for e in record.encoders]

# %% [markdown]
# ## Ours against the paper (the paper's numbers are for SAM3's 1024-wide teacher)

# %%
for enc in record.encoders:
    rows = [
        (r.measure, r.ours, r.paper) for n, res in enc.results.items() for r in ANALYSES[n].paper_rows(res)
    ]
    display(pd.DataFrame(rows, columns=["measure", enc.spec, "paper"]))

# %% [markdown]
# ## Intrinsic dimension per source

# %%
rows = {}
for enc in record.encoders:
    dims = enc.results.get("dims")
    if dims is None:
        continue
    for name, entry in {"overall": dims.overall, **dims.sources}.items():
        block = to_jsonable(entry)
        rows[(enc.spec, name)] = dict(flatten({k: block[k] for k in ("n_points", "twonn", "mle", "erank")}))
pd.DataFrame.from_dict(rows, orient="index")

# %% [markdown]
# ## Figures

# %%
for enc in record.encoders:
    for fig in (path for paths in enc.figures.values() for path in paths):
        print(fig)
        display(Image(filename=str(AUDIT_DIR / fig)))

# %% [markdown]
# ## Findings for the encoders

# %%
pd.DataFrame(
    [(f.section, f.mark, f.line()) for f in collect_findings(record) if f.section.startswith("encoder")],
    columns=["section", "mark", "finding"],
)
