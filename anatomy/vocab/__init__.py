"""Vocabulary specialisation: tokenizers that keep only the tokens a workload uses (exact on its words,
never unknown elsewhere), their saved form (vocab.json), and the long-tail risk of using them.

    clip.py       CLIP BPE over kept merges (SpecialisedClipTokenizer)
    wordpiece.py  WordPiece over kept pieces (WordPieceTokenizer; with every piece kept, the full one)
    store.py      Vocabulary, vocab.json save/load with consistency checks, specialise(vocab) -> tokenizer
    build.py      word index of a corpus, building from any subset of prompts, risk on unseen prompts
    held_out.py   held-out prompt sets (files or builtin:NAME) as distinct normalised prompts
    cli.py        `anatomy vocab`

Imports nothing heavy at package import (the CLI imports this package to register the command).
"""

IMAGENET = "builtin:imagenet-classes"  # the held-out set every vocab run measures
