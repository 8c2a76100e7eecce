# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 0.01 Corpus exploration
#
# What the prompts of an audited corpus look like: sources, lengths, the context-window trade-off and the
# vocabulary. Reads an audit directory (`anatomy audit --out DIR`, or `reports/` from `make reports`);
# `ANATOMY_AUDIT_DIR` picks it (`make notebooks` points it at a small sample audit).

# %%
import os
from pathlib import Path

import pandas as pd

from anatomy.analysis import ANALYSES
from anatomy.corpus import load_corpus
from anatomy.io import to_jsonable
from anatomy.report.collect import collect

AUDIT_DIR = Path(os.environ.get("ANATOMY_AUDIT_DIR", "../reports"))
record = collect(AUDIT_DIR)
corpus = load_corpus(AUDIT_DIR / record.corpus["path"])
corpus.head()

# %% [markdown]
# ## Sources and subsets

# %%
pd.DataFrame(
    [(s, sub, n) for s, e in record.corpus["sources"].items() for sub, n in e["subsets"].items()],
    columns=["source", "subset", "rows"],
)

# %% [markdown]
# ## Token lengths per source (start and end tokens included)

# %%
tokens = record.analyses.results["tokens"]  # the typed result of the tokens analysis (results/tokens.json)
blocks = {"overall": tokens.overall, **tokens.sources}
lengths = {name: to_jsonable(b.length) for name, b in blocks.items()}
pd.DataFrame(lengths).T.drop(columns="histogram", errors="ignore")

# %% [markdown]
# ## The context window: density, padding, truncation and token loss against L

# %%
context = pd.DataFrame(to_jsonable(tokens.overall.context)).T
context.index = context.index.astype(int)
context.sort_index().plot(y=["padding", "truncation", "token_loss"], marker="o", logy=False, grid=True)
context.sort_index()

# %% [markdown]
# ## What the audit concludes about tokens

# %%
found = ANALYSES["tokens"].findings(tokens, "tokens")
pd.DataFrame([(f.mark, f.line()) for f in found], columns=["mark", "finding"])
