"""Representation anatomy: pure functions on arrays returning dataclasses (spectrum, positional,
intrinsic_dim, robustness, agreement); run.py holds the pipelines behind the commands."""
