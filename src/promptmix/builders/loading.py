"""Loading datasets by reference (a local folder or a Hub id): the one loader every stage uses.

``datasets`` 5 keys the Arrow cache of a *local* folder on the folder's base name and its README
``configs`` only, so two folders called ``real`` (or one rewritten by another tool) would share a
stale cache. Folders promptmix writes have fingerprinted shard names, which avoids it; for every
other folder :func:`local_cache_dir` gives a cache folder keyed by the folder's path and its
files' sizes and modification times.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from .. import schema
from ..errors import InputError
from ..utils.model_source import is_local_ref


def local_cache_dir(ref: str | os.PathLike) -> str | None:
    """A ``datasets`` cache folder for a local dataset folder, keyed by its path and files; ``None`` for Hub ids."""
    import datasets

    root = Path(ref).expanduser()
    if not root.is_dir():
        return None
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    stamp = [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    key = hashlib.sha256(json.dumps([str(root.resolve()), stamp]).encode()).hexdigest()[:16]
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "promptmix-local" / key)


def load_source(ref: str | os.PathLike, revision: str | None = None, *, name: str | None = None,
                what: str = "dataset", streaming: bool = False, columns: list[str] | None = None):
    """``datasets.load_dataset`` of a local folder (with :func:`local_cache_dir`) or a Hub id.

    ``streaming``: ``IterableDataset`` s read shard by shard, nothing cached whole (a save_to_disk folder is
    read as usual: it is on this disk already). ``columns``: read only these (Parquet column projection).

    Raises :class:`InputError` naming ``ref`` when the folder does not exist or loading fails.
    """
    import datasets

    ref = str(ref)
    path = Path(ref).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{what} {ref!r}: is a file; expected a dataset folder (README.md + data/*.parquet) "
                             "or a Hub dataset id")
        if (path / "state.json").is_file() and (path / "dataset_info.json").is_file():
            # one Dataset written by Dataset.save_to_disk, which load_dataset refuses: it is the train split
            try:
                return datasets.DatasetDict({"train": datasets.load_from_disk(str(path))})
            except Exception as exc:
                raise InputError(f"{what} {ref!r}: the save_to_disk folder could not be read ({type(exc).__name__}: "
                                 f"{exc})") from None
        try:
            if streaming:
                return datasets.load_dataset(str(path), name=name, streaming=True,
                                             **({"columns": columns} if columns else {}))
            return datasets.load_dataset(str(path), name=name, cache_dir=local_cache_dir(path))
        except Exception as exc:
            raise InputError(f"{what} {ref!r}: the folder could not be read as a dataset ({type(exc).__name__}: "
                             f"{exc}); expected a folder written by `promptmix real ...`, another Hub-layout folder (data/*.parquet) or "
                             "one written by save_to_disk") from None
    if is_local_ref(ref):
        raise InputError(f"{what} {ref!r}: no such folder; expected a folder written by `promptmix real ...` "
                         "or a Hub dataset id (owner/name)")
    try:
        return datasets.load_dataset(ref, name=name, revision=revision, streaming=streaming,
                                     **({"columns": columns} if columns else {}))
    except Exception as exc:
        from ..utils.model_source import network_failure, ways_out

        network = network_failure(exc)
        offline = any(os.environ.get(v, "") not in ("", "0") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
        hint = ""
        if network and not offline:
            hint = f"; the Hugging Face Hub could not be reached ({network}). " + ways_out(ref, revision,
                                                                                         repo_type="dataset")
        elif offline:
            hint = ". " + ways_out(ref, revision, repo_type="dataset", offline=True)
        raise InputError(f"{what} {ref!r} (revision {revision or 'main'}): not a local folder, and loading it "
                         f"from the Hub failed ({type(exc).__name__}: {exc}){hint}") from None


def load_real(ref: str, revision: str | None = None):
    """The splits of a real dataset (a folder written by ``promptmix real ...`` or a Hub id) as a DatasetDict.

    Raises :class:`InputError` naming ``ref`` when it is missing, unreadable or has no ``train`` split.
    """
    import datasets

    loaded = load_source(ref, revision, what="real dataset")
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    if "train" not in loaded:
        raise InputError(f"real dataset {str(ref)!r}: expected splits train, validation, test; found "
                         f"{sorted(loaded)}")
    return loaded


def task_of(features: Mapping[str, Any] | Any) -> str:
    """The task of a real dataset from its features (or a Dataset / DatasetDict): counting, depth or classification.

    ``points`` -> counting; ``depth`` -> depth; ``label`` -> classification. Otherwise :class:`InputError`.
    """
    import datasets

    if isinstance(features, datasets.DatasetDict):
        features = next(iter(features.values())).features
    elif isinstance(features, (datasets.Dataset, datasets.IterableDataset)):
        features = features.features
    columns = set(features)
    from ..tasks import TASKS

    for task in TASKS.values():
        if task.marker_column in columns:
            return task.name
    raise InputError(f"cannot tell the task of a dataset with columns {sorted(columns)}: expected {schema.POINTS!r} "
                     f"(counting), {schema.DEPTH!r} (depth) or {schema.LABEL!r} (classification)")
