"""Distillation: a teacher's per-token outputs cached once (data), the losses of the LiteText recipe
(losses), one training loop (train), export to the LiteText and open_clip layouts (export) and the
paper's loss and context ablations on a small budget (ablate)."""
