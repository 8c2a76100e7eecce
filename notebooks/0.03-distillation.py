# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 0.03 Distillation
#
# How a distilled student's agreement with its teacher grows during training, read from an `anatomy distill`
# run directory (`ANATOMY_DISTILL_RUN`; `make notebooks` trains a tiny one). Step 0 is the untrained student.

# %%
import json
import os
from pathlib import Path

import pandas as pd

from anatomy.io import read_json

RUN_DIR = Path(os.environ.get("ANATOMY_DISTILL_RUN", "../runs/student"))
config = read_json(RUN_DIR / "config.json")
metrics = pd.DataFrame(
    [json.loads(line) for line in (RUN_DIR / "metrics.jsonl").read_text().splitlines() if line]
)
{k: config[k] for k in ("teacher", "student", "context") if k in config}

# %% [markdown]
# ## Held-out agreement with the teacher against training step

# %%
columns = [c for c in ("eval_token_cosine", "eval_pooled_cosine", "eval_knn_overlap10") if c in metrics]
metrics.plot(x="step", y=columns, marker="o", grid=True)
metrics[["step", *columns]]

# %% [markdown]
# ## Gain over the untrained student (paper: mean per-token cosine 0.938 for its smallest student)

# %%
first, last = metrics.iloc[0], metrics.iloc[-1]
pd.DataFrame({"untrained": first[columns], "trained": last[columns], "gain": last[columns] - first[columns]})
