"""Figures: `prepare_*` functions return tidy DataFrames (tested exactly), `draw_*` return Figures.

style.save_figure is the one savefig: Agg backend, fixed style, stripped metadata, so the same inputs give
the same bytes. Topic modules: tokens, representation, distill.
"""
