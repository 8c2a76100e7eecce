"""Figures of the representation analyses (positions, spectrum, dims, robustness, agreement).

Each `prepare_*` takes the results dict (as returned, or as read back from results/NAME.json) and returns a
tidy DataFrame; each `draw_*` turns that frame into a Figure. save_figure writes the PNG deterministically.
"""

from __future__ import annotations

import numpy as np

from anatomy.figures.style import new_figure, save_figure
from anatomy.io import to_jsonable

__all__ = ["save_figure"]


def _plain(result) -> dict:
    return to_jsonable(result)  # dataclasses and arrays -> the same plain values the JSON holds


# --------------------------------------------------------------------------------------- positions


def prepare_positions_heatmap(cosine: np.ndarray):
    import pandas as pd

    cosine = np.asarray(cosine)
    i, j = np.indices(cosine.shape)
    return pd.DataFrame({"row": i.ravel(), "col": j.ravel(), "cosine": cosine.ravel()})


def draw_positions_heatmap(cosine_or_frame):
    frame = (
        cosine_or_frame if hasattr(cosine_or_frame, "columns") else prepare_positions_heatmap(cosine_or_frame)
    )
    grid = frame.pivot(index="row", columns="col", values="cosine").to_numpy()
    fig, axes = new_figure(size=(4.8, 4.0))
    ax = axes[0, 0]
    image = ax.imshow(grid, cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
    ax.set(title="positional embeddings: cosine similarity", xlabel="position", ylabel="position")
    ax.grid(False)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def prepare_positions_blocks(result):
    import pandas as pd

    r = _plain(result)
    block, means = r["block"], r["block_means"]
    rows = [
        {"block_row": a, "block_col": b, "positions_row": f"{a * block}-{(a + 1) * block - 1}",
         "positions_col": f"{b * block}-{(b + 1) * block - 1}", "mean_cosine": means[a][b]}
        for a in range(len(means)) for b in range(len(means))
    ]  # fmt: skip
    return pd.DataFrame(rows)


def draw_positions_blocks(frame):
    n = int(frame["block_row"].max()) + 1
    grid = np.full((n, n), np.nan)
    grid[frame["block_row"], frame["block_col"]] = frame["mean_cosine"].astype(float)
    fig, axes = new_figure(size=(4.8, 4.0))
    ax = axes[0, 0]
    image = ax.imshow(grid, cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
    labels = frame.drop_duplicates("block_row").sort_values("block_row")["positions_row"].tolist()
    if n <= 16:
        for a in range(n):
            for b in range(n):
                ax.text(b, a, f"{grid[a, b]:.2f}", ha="center", va="center", fontsize=7, color="white")
        ax.set_xticks(range(n), labels, rotation=45, ha="right")
        ax.set_yticks(range(n), labels)
    ax.set(title="block means of positional cosine similarity")
    ax.grid(False)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def prepare_positions_pca(result):
    import pandas as pd

    curve = _plain(result)["pca"]["cumulative"]
    return pd.DataFrame({"component": np.arange(1, len(curve) + 1), "cumulative_variance": curve})


def draw_positions_pca(frame):
    fig, axes = new_figure()
    ax = axes[0, 0]
    ax.plot(frame["component"], frame["cumulative_variance"], marker=".", markersize=3)
    ax.axhline(0.9, color="grey", linestyle="--", linewidth=0.8)
    n90 = int(frame["component"][frame["cumulative_variance"] >= 0.9 - 1e-12].min())
    ax.axvline(n90, color="grey", linestyle=":", linewidth=0.8)
    ax.set(
        title=f"positional PCA: {n90} components for 90%", xlabel="components", ylabel="cumulative variance"
    )
    ax.set_xscale("log")
    return fig


# ---------------------------------------------------------------------------------------- spectrum


def prepare_spectrum(result):
    import pandas as pd

    r = _plain(result)
    frames = []
    for matrix in ("full", "used"):
        if matrix not in r:
            continue
        for centring in ("centred", "uncentred"):
            s = np.asarray(r[matrix]["singular_values"][centring], dtype=float)
            frames.append(pd.DataFrame({
                "matrix": matrix, "centring": centring, "index": np.arange(1, s.size + 1),
                "singular_value": s, "normalised": s / s[0],
            }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def draw_spectrum(frame):
    fig, axes = new_figure()
    ax = axes[0, 0]
    for (matrix, centring), group in frame.groupby(["matrix", "centring"], sort=True):
        style = "-" if centring == "centred" else "--"
        ax.plot(group["index"], group["normalised"], style, label=f"{matrix} vocabulary, {centring}")
    ax.set(title="token-embedding spectrum", xlabel="component", ylabel="s / s1")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    return fig


# -------------------------------------------------------------------------------------------- dims

ESTIMATORS = (
    ("twonn", "linear", "twonn_linear"),
    ("twonn", "closed_form", "twonn_closed_form"),
    ("mle", "harmonic", "mle_harmonic"),
    ("mle", "mean", "mle_mean"),
)


def prepare_dims(result):
    import pandas as pd

    r = _plain(result)
    groups = [("overall", r["overall"])] + sorted(r.get("sources", {}).items())
    rows = []
    for group, entry in groups:
        for family, variant, key in ESTIMATORS:
            spread = entry.get("spread", {}).get(key, {})
            rows.append({
                "group": group, "estimator": key, "value": entry[family][variant],
                "low": spread.get("low", np.nan), "high": spread.get("high", np.nan), "n_points": entry["n_points"],
            })  # fmt: skip
    return pd.DataFrame(rows)


def draw_dims(frame):
    fig, axes = new_figure(size=(6.4, 3.6))
    ax = axes[0, 0]
    groups = list(dict.fromkeys(frame["group"]))
    estimators = list(dict.fromkeys(frame["estimator"]))
    width = 0.8 / len(estimators)
    for e, name in enumerate(estimators):
        sub = frame[frame["estimator"] == name].set_index("group").loc[groups]
        x = np.arange(len(groups)) + e * width
        # a percentile interval need not contain the estimate (few draws): draw no bar below/above it then
        err = np.clip(np.vstack([sub["value"] - sub["low"], sub["high"] - sub["value"]]), 0, None)
        ax.bar(x, sub["value"], width, label=name)
        if np.isfinite(err).all():
            ax.errorbar(x, sub["value"], yerr=err, fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
    ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, groups)
    ax.set(title="intrinsic dimension (95% bootstrap intervals)", ylabel="dimension")
    ax.legend(fontsize=7)
    return fig


# -------------------------------------------------------------------------------------- robustness


def prepare_robustness(result):
    import pandas as pd

    rows = []
    for level in _plain(result)["levels"]:
        for stage in ("input", "logit", "output"):
            rows.append({"noise": level["noise"], "stage": stage, "error": level[f"{stage}_error"]})
    return pd.DataFrame(rows)


def draw_robustness(frame):
    fig, axes = new_figure()
    ax = axes[0, 0]
    stages = ["input", "logit", "output"]
    for noise, group in frame.groupby("noise", sort=True):
        values = group.set_index("stage").loc[stages, "error"]
        ax.plot(stages, values, marker="o", label=f"noise {noise:g}")
    ax.set(title="softmax error attenuation", ylabel="relative error")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    return fig


# --------------------------------------------------------------------------------------- agreement


def prepare_agreement(result):
    import pandas as pd

    r = _plain(result)
    rows = []
    for key in ("knn_overlap", "pooled_cosine", "token_cosine"):
        if r.get(key) is not None:
            label = f"knn_overlap@{r['k']}" if key == "knn_overlap" and "k" in r else key
            rows.append({"measure": label, **{s: r[key][s] for s in ("mean", "median", "p05", "min")}})
    return pd.DataFrame(rows, columns=["measure", "mean", "median", "p05", "min"])


def draw_agreement(frame):
    fig, axes = new_figure()
    ax = axes[0, 0]
    x = np.arange(len(frame))
    ax.bar(x - 0.2, frame["mean"], 0.4, label="mean")
    ax.bar(x + 0.2, frame["p05"], 0.4, label="5th percentile")
    ax.set_xticks(x, frame["measure"])
    ax.set(
        title="student vs teacher agreement",
        ylim=(min(0.0, float(frame["p05"].min()) if len(frame) else 0), 1.05),
    )
    ax.legend(fontsize=7)
    return fig
