"""Hugging Face hub sources (SA-Co): snapshot the dataset repo's annotation files, then copy them into the
data folder and record their hashes.

huggingface_hub does the downloading and its own cache (HF_HOME / HF_HUB_CACHE), reads the token from
HF_TOKEN or `huggingface-cli login`, and with HF_HUB_OFFLINE=1 serves only what the cache already holds.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from anatomy.datasets.lock import Lock
from anatomy.datasets.registry import DataError, Source
from anatomy.datasets.sources import copy_verified
from anatomy.io import file_sha256


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def snapshot(source: Source) -> Path:
    """The local snapshot folder of source.repo_id holding at least the files source.patterns name."""
    try:
        import huggingface_hub
        from huggingface_hub import errors
    except ImportError:
        raise DataError(
            f"{source.name}: needs the huggingface_hub package", "pip install huggingface_hub"
        ) from None
    cache_dir = os.environ.get("HF_HUB_CACHE") or None
    offline = _offline()
    page = source.homepage
    try:
        folder = huggingface_hub.snapshot_download(
            source.repo_id,
            repo_type="dataset",
            allow_patterns=list(source.patterns),
            cache_dir=cache_dir,
            local_files_only=offline,
        )
    except errors.GatedRepoError:
        raise DataError(
            f"{source.name}: {source.repo_id} is gated and this account has not been granted access",
            f"accept the terms at {page} while logged in, then `huggingface-cli login` (or set HF_TOKEN)",
        ) from None
    except errors.RepositoryNotFoundError:
        raise DataError(
            f"{source.name}: {source.repo_id} not found or not visible without a login",
            f"log in (`huggingface-cli login` or HF_TOKEN=...) after accepting the terms at {page}",
        ) from None
    except errors.LocalEntryNotFoundError:
        where = "offline (HF_HUB_OFFLINE is set) and" if offline else "the hub cannot be reached and"
        raise DataError(
            f"{source.name}: {where} {source.repo_id} is not in the hub cache",
            "unset HF_HUB_OFFLINE on a machine with a network, or point HF_HUB_CACHE at a cache holding it",
        ) from None
    except errors.HfHubHTTPError as err:
        raise DataError(f"{source.name}: Hugging Face hub error ({str(err).splitlines()[0]})") from None
    return Path(folder)


def fetch_hub(source: Source, root: Path, lock: Lock) -> str:
    folder = snapshot(source)
    found = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and any(fnmatch.fnmatch(p.relative_to(folder).as_posix(), pat) for pat in source.patterns)
    )
    if not found:
        raise DataError(
            f"{source.name}: the {source.repo_id} snapshot has no file matching {', '.join(source.patterns)}",
            f"check the dataset's file list at {source.homepage}",
        )
    dest = root / source.dest
    files = {}
    for path in found:
        target = dest / path.name
        recorded = lock.entry(source.name).get("files", {}).get(target.relative_to(root).as_posix())
        if recorded and recorded["sha256"] != file_sha256(path):
            raise DataError(
                f"{source.name}: {path.name} in the hub snapshot differs from the hash recorded in "
                f"{lock.path.name}; nothing copied",
                f"the hub files changed; remove the {source.name!r} entry from {lock.path} to accept them",
            )
        meta = copy_verified(path, target)
        files[target.relative_to(root).as_posix()] = meta
    lock.record(source.name, None, files)
    return (
        f"{source.name}: {len(files)} file(s) from {source.repo_id} into {dest.relative_to(root)}, verified"
    )
