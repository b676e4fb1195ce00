"""The layout of a published dataset repository, built in a local folder.

::

    README.md                          the dataset card (YAML header: license, configs, dataset_info, ...)
    provenance.json                    the run manifest (every stage's config, models, versions), the
                                       publication record, the version history and a SHA-256 of every file
    LICENSE.md                         only when the card's license is "other": both licenses that apply
    assets/samples.png                 real images beside fakes made from their prompts
    assets/quality.png                 quality-score histogram with the threshold (several annotators only)
    assets/distribution.png            counts / depth values / labels, real vs fake
    assets/prompt_lengths.png          words per prompt
    data/kept/train-<fp>-00000-of-0000N.parquet     config "kept" (default): rows that passed the filter
    data/dropped/train-<fp>-00000-of-0000N.parquet  the rows it dropped; config "all" = kept + dropped files

The Parquet shards are the fake dataset's own, copied as ``promptmix filter`` wrote them (``<fp>``
fingerprints their bytes; each row is in one file, the ``all`` config lists both folders), so ``datasets.load_dataset(folder)`` reads the folder back with its configs and features,
and a new version's shards have new names: the old ones are deleted in the same commit.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..dataset_cards.card import (ASSETS_DIR, LICENSE_FILE, PROVENANCE_FILE, CardInputs, card_context,
                                  card_from_context, license_file_text, make_card_figures)
from ..errors import InputError
from ..utils.hashing import sha256_file
from ..utils.model_source import redact_local_paths
from ..utils.io import write_hub_layout, write_json_atomic, write_text_atomic

logger = logging.getLogger(__name__)

PROVENANCE_FORMAT = "promptmix-provenance/1"
OWNED_PREFIXES = ("data/", f"{ASSETS_DIR}/")  # folders a publication replaces as a whole on its branch
OWNED_FILES = ("README.md", PROVENANCE_FILE, LICENSE_FILE)


@dataclasses.dataclass
class RepoLayout:
    """A built repository folder: its root, every file (repo-relative, sorted) and the card's facts."""

    root: Path
    files: list[str]
    yaml_configs: list[dict[str, Any]]
    license: dict[str, str]
    pretty_name: str
    rows: dict[str, int]  # config -> rows over all splits

    def path(self, rel: str) -> Path:
        return self.root / rel


def copy_hub_data(source: Path, yaml_configs: Sequence[Mapping[str, Any]], root: Path) -> list[dict[str, Any]]:
    """Copy the Parquet shards a folder's README ``configs`` name into ``root`` as they are (same relative paths,
    so configs that share files -- ``all`` = the ``kept`` shards + the ``dropped`` ones -- still share them),
    and return those configs. The shard names fingerprint their bytes already."""
    import shutil

    copied = 0
    for entry in yaml_configs:
        files = entry.get("data_files") or []
        for item in [files] if isinstance(files, (str, dict)) else files:
            patterns = item.get("path") if isinstance(item, dict) else item
            for pattern in [patterns] if isinstance(patterns, str) else list(patterns or []):
                for src in sorted(source.glob(pattern)):
                    dst = root / src.relative_to(source)
                    if not dst.exists():
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(src, dst)
                        copied += 1
    if not copied:
        raise InputError(f"{source}: its README `configs` name no Parquet file; rerun `promptmix filter`")
    return [dict(e) for e in yaml_configs]


def list_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def build_repo(inputs: CardInputs, root: str | Path, *, repo_id: str, version: str, branch: str | None = None,
               history: Sequence[Mapping[str, Any]] = (), license: str | None = None,
               pretty_name: str | None = None, notice: str | None = None, date: str | None = None,
               publication: Mapping[str, Any] | None = None, local_path: str | None = None) -> RepoLayout:
    """Write the whole repository into ``root`` (an empty or new folder) and return its layout.

    ``history`` holds earlier versions (from the previous ``provenance.json``); ``publication`` is
    merged into the provenance file's ``publication`` record (e.g. the library versions publishing ran with).
    ``local_path``: a local publication (never pushed) at that path: the card loads it from there.
    ``provenance.json`` names local files and folders by their last part (with their hashes where the run
    recorded them), never by this machine's absolute paths.
    """
    from ..run_folder import library_versions

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if inputs.source_dir is not None and inputs.source_yaml_configs:
        yaml_configs = copy_hub_data(inputs.source_dir, inputs.source_yaml_configs, root)
    else:
        yaml_configs = write_hub_layout(root, inputs.configs, default=inputs.default_config)
    figures = make_card_figures(inputs, root)
    ctx, metadata = card_context(inputs, repo_id=repo_id, version=version, figures=figures, history=history,
                                 license=license, pretty_name=pretty_name, notice=notice, date=date,
                                 yaml_configs=yaml_configs, local_path=local_path)
    card = card_from_context(ctx, metadata, inputs.configs)
    write_text_atomic(root / "README.md", card.content)
    if ctx["license_meta"]["license"] == "other" and ctx["license_meta"].get("license_link") == LICENSE_FILE:
        write_text_atomic(root / LICENSE_FILE, license_file_text(ctx))
    files = list_files(root)
    rows = {c["name"]: c["rows"] for c in ctx["configs"]}
    provenance = {
        "format": PROVENANCE_FORMAT,
        "dataset": {"repo_id": repo_id, "version": ctx["version"], "tag": ctx["tag"], "branch": branch or "main",
                    "date": ctx["date"], "pretty_name": ctx["pretty_name"], "license": ctx["license_meta"],
                    "generator_license": ctx["generator_license"], "source_license": ctx["source_license"],
                    "task": inputs.task, "class_names": inputs.class_names, "configs": rows,
                    "real_dataset": redact_local_paths(inputs.real_ref)},
        "publication": {"versions": library_versions(), **dict(publication or {})},
        "history": ctx["history"],
        "run": redact_local_paths({"path": str(inputs.run_dir), "captions_info": inputs.info,
                                   "manifest": inputs.manifest}),
        "files": {rel: {"sha256": sha256_file(root / rel), "bytes": (root / rel).stat().st_size} for rel in files},
    }
    write_json_atomic(root / PROVENANCE_FILE, provenance)
    return RepoLayout(root=root, files=list_files(root), yaml_configs=yaml_configs, license=ctx["license_meta"],
                      pretty_name=ctx["pretty_name"], rows=rows)


def read_provenance(folder: str | Path) -> dict[str, Any] | None:
    """The ``provenance.json`` of a folder written by ``promptmix publish``, or None when there is none."""
    path = Path(folder) / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("format") == PROVENANCE_FORMAT else None


def stale_files(existing: Sequence[str], new: Sequence[str]) -> list[str]:
    """Files of an earlier publication on the branch that the new one no longer has (to delete in the commit)."""
    keep = set(new)
    return sorted(f for f in existing if f not in keep and (f.startswith(OWNED_PREFIXES) or f in OWNED_FILES))
