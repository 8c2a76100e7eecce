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
    metadata = zero_shot_metadata()
    classes, templates = metadata.IMAGENET_CLASSNAMES, metadata.OPENAI_IMAGENET_TEMPLATES

    if name == "imagenet-classes":
        for i, cls in enumerate(classes):
            yield PromptRecord(raw=cls, subset="imagenet-classes", ref=f"open_clip:IMAGENET_CLASSNAMES[{i}]")
        return
    for t, template in enumerate(templates):
        for i, cls in enumerate(classes):
            yield PromptRecord(
                raw=template(cls),
                subset="imagenet-prompts",
                ref=f"open_clip:OPENAI_IMAGENET_TEMPLATES[{t}]({i})",
            )


def zero_shot_metadata():
    """open_clip's zero_shot_metadata module, loaded from its file without importing open_clip itself (which
    imports torch and torchvision: seconds and about 1 GB for two lists)."""
    import importlib.util
    from pathlib import Path

    package = importlib.util.find_spec("open_clip")
    for folder in list(package.submodule_search_locations or []) if package else []:
        path = Path(folder) / "zero_shot_metadata.py"
        spec = importlib.util.spec_from_file_location("_anatomy_zero_shot_metadata", path)
        if path.is_file() and spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise InputError("open_clip_torch is not installed: no ImageNet class names", "run `make install`")


def fingerprint(spec: str) -> str:
    """A stable identity for a built-in set: its name and the open_clip version it came from."""
    from importlib import metadata

    return f"{spec}@open_clip_torch=={metadata.version('open_clip_torch')}"
