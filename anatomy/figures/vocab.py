"""Vocabulary-specialisation figures: the min-count trade-off curve and the long-tail risk per held-out set."""

from __future__ import annotations

from anatomy.figures.style import new_figure


def prepare_curve(result):
    """Columns min_count, kept, changed_share, fallback_token_share, inflation_mean: one row per min-count."""
    import pandas as pd

    return pd.DataFrame(
        [
            (c.min_count, c.kept, c.changed_share, c.fallback_token_share, c.inflation_mean)
            for c in result.curve
        ],
        columns=["min_count", "kept", "changed_share", "fallback_token_share", "inflation_mean"],
    )


def draw_curve(table):
    fig, axes = new_figure(size=(6.0, 3.6))
    ax = axes[0, 0]
    ax.plot(table["kept"], table["changed_share"], marker="o")
    for _, row in table.iterrows():
        ax.annotate(f"N={int(row['min_count'])}", (row["kept"], row["changed_share"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")  # fmt: skip
    ax.set_xlabel("kept tokens")
    ax.set_ylabel("unseen prompts that change (k-fold)")
    ax.set_title("Vocabulary size against long-tail change rate (--min-count N)")
    return fig


def prepare_risk(result):
    """Columns label, kind, changed_share, fallback_token_share, inflation_mean: one row per held-out set."""
    import pandas as pd

    risks = result.leave_one_source_out + ([result.k_fold] if result.k_fold else []) + result.held_out
    return pd.DataFrame(
        [(r.label, r.kind, r.changed_share, r.fallback_token_share, r.inflation_mean) for r in risks],
        columns=["label", "kind", "changed_share", "fallback_token_share", "inflation_mean"],
    )


def draw_risk(table):
    fig, axes = new_figure(size=(6.4, 3.6))
    ax = axes[0, 0]
    y = range(len(table))
    ax.barh(list(y), table["changed_share"], label="prompts that change")
    ax.barh(list(y), table["fallback_token_share"], height=0.4, label="tokens from the fallback")
    ax.set_yticks(list(y), [f"{r.label} ({r.kind})" for r in table.itertuples()], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("share")
    ax.set_title("Long-tail risk of the specialised vocabulary")
    ax.legend(fontsize=7)
    return fig
