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

from anatomy.audit import collect
from anatomy.findings import collect as collect_findings
from anatomy.report.render import encoder_comparisons, flatten

AUDIT_DIR = Path(os.environ.get("ANATOMY_AUDIT_DIR", "../reports"))
record = collect(AUDIT_DIR)
[(e["spec"], sorted(e["results"]), e["errors"]) for e in record["encoders"]]

# %% [markdown]
# ## Ours against the paper (the paper's numbers are for SAM3's 1024-wide teacher)

# %%
for enc in record["encoders"]:
    display(pd.DataFrame(encoder_comparisons(enc["results"]), columns=["measure", enc["spec"], "paper"]))

# %% [markdown]
# ## Intrinsic dimension per source

# %%
rows = {}
for enc in record["encoders"]:
    dims = enc["results"].get("dims", {})
    for name, block in {"overall": dims.get("overall", {}), **dims.get("sources", {})}.items():
        rows[(enc["spec"], name)] = dict(
            flatten({k: block.get(k) for k in ("n_points", "twonn", "mle", "erank")})
        )
pd.DataFrame.from_dict(rows, orient="index")

# %% [markdown]
# ## Figures

# %%
for enc in record["encoders"]:
    for fig in enc["figures"]:
        print(fig)
        display(Image(filename=str(AUDIT_DIR / fig)))

# %% [markdown]
# ## Findings for the encoders

# %%
pd.DataFrame(
    [(f.section, f.mark, f.line()) for f in collect_findings(record) if f.section.startswith("encoder")],
    columns=["section", "mark", "finding"],
)
