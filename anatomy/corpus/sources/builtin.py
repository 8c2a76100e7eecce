"""Real prompt sets that ship inside an installed dependency (open_clip's ImageNet zero-shot metadata).

`builtin:imagenet-classes`: the 1,000 class names; `builtin:imagenet-prompts`: those names in the 80 OpenAI
templates (80,000 prompts), the embedded default corpus of the main job.
"""

from __future__ import annotations

from collections.abc import Iterator

from anatomy.corpus.records import PromptRecord, Skipped
from anatomy.corpus.sources import ReadOptions, SourceFile
from anatomy.errors import InputError

BUILTINS = ("imagenet-classes", "imagenet-prompts")


def read(src: SourceFile, options: ReadOptions) -> Iterator[PromptRecord | Skipped]:
    name = src.spec.removeprefix("builtin:")
    if name not in BUILTINS:
        raise InputError(f"unknown built-in corpus {src.spec!r}", f"choose one of: {', '.join(BUILTINS)}")
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    if name == "imagenet-classes":
        for i, cls in enumerate(IMAGENET_CLASSNAMES):
            yield PromptRecord(raw=cls, subset="imagenet-classes", ref=f"open_clip:IMAGENET_CLASSNAMES[{i}]")
        return
    for t, template in enumerate(OPENAI_IMAGENET_TEMPLATES):
        for i, cls in enumerate(IMAGENET_CLASSNAMES):
            yield PromptRecord(
                raw=template(cls),
                subset="imagenet-prompts",
                ref=f"open_clip:OPENAI_IMAGENET_TEMPLATES[{t}]({i})",
            )


def fingerprint(spec: str) -> str:
    """A stable identity for a built-in set: its name and the open_clip version it came from."""
    from importlib import metadata

    return f"{spec}@open_clip_torch=={metadata.version('open_clip_torch')}"
