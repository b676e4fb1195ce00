"""The papers' experiments as ready configs (``configs/``), the files each one needs, and where to get them.

``promptmix init shtb`` copies ``configs/promptmix_shtb.yaml`` (the PromptMix paper's settings for
ShanghaiTech part B: SD v1.4 at the source size, 50 steps, k = 10, full-width networks, 500 epochs,
device auto) to a file of your own, with only the data and checkpoint paths left to fill, and prints
every input with where it comes from (:data:`SOURCES`, the same table as ``docs/DATASETS.md``).
``PipelineConfig.check_inputs`` (``promptmix run --check``) lists every missing input the same way.

Nothing here imports torch or datasets.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError
from .inputs import DOCS, SOURCES, Input, Source, hub_models, local_inputs, missing_message, source_of

__all__ = ["CONFIGS_DIR", "DOCS", "SOURCES", "Input", "Source", "describe", "experiments", "find_experiment",
           "hub_models", "local_inputs", "missing_message", "source_of", "write_experiment"]

CONFIGS_DIR = Path(__file__).resolve().parents[3] / "configs"  # the source checkout's configs/
CONFIG_PREFIX = "promptmix_"


# -- the experiments ----------------------------------------------------------------------------------------
def experiment_name(config_file: Path) -> str:
    """``promptmix_shtb.yaml`` -> ``shtb``, ``mvc_cifar10.yaml`` -> ``mvc-cifar10``."""
    stem = config_file.stem
    return (stem[len(CONFIG_PREFIX):] if stem.startswith(CONFIG_PREFIX) else stem).replace("_", "-")


def experiments(configs_dir: Path = CONFIGS_DIR) -> dict[str, Path]:
    """Every experiment of ``configs/`` by name (the toy config left out)."""
    if not configs_dir.is_dir():
        return {}
    return {experiment_name(p): p for p in sorted(configs_dir.glob("*.yaml")) if "toy" not in p.stem}


def describe(config_file: Path, limit: int = 120) -> str:
    """What a config reproduces: its first comment sentence (up to the paper reference), cut to ``limit``."""
    words: list[str] = []
    for line in config_file.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#") or not line.strip("# "):
            break
        words.append(line.lstrip("# ").strip())
    full = " ".join(words)
    text = re.split(r"\s\((?:PromptMix paper|MVC paper|Paulsen et al\.)", full)[0].rstrip(" ,.")
    text = re.sub(r", \"Dataset Augmentation by Mixing Visual Concepts\"$", "", text)
    table = re.search(r'Tables? [IVX\d]+(?: (?:rows?|column) "(?:\\"|[^"])*")?', full)
    if table and table.group(0) not in text:
        text += ": " + table.group(0).replace('\\"', "'")
    return text if len(text) <= limit else text[: limit - 3].rsplit(" ", 1)[0] + "..."


def find_experiment(name: str, configs_dir: Path = CONFIGS_DIR) -> Path:
    """The config of experiment ``name`` (or a config file's path)."""
    if Path(name).suffix in (".yaml", ".yml") and Path(name).is_file():
        return Path(name)
    known = experiments(configs_dir)
    if not known:
        raise InputError(f"the papers' configs are not here ({configs_dir} does not exist): they come with the "
                         "source checkout of promptmix (its configs/ folder); run `promptmix init` from a clone "
                         "installed with `pip install -e .`, or give a config file: promptmix init path/to/config.yaml")
    key = name.replace("_", "-").lower()
    key = key[len("promptmix-"):] if key.startswith("promptmix-") and key not in known else key
    if key in known:
        return known[key]
    from ..utils.suggest import did_you_mean

    raise ConfigError(f"unknown experiment {name!r}{did_you_mean(key, known)}; known: {', '.join(known)} "
                      "(`promptmix init --list` says what each reproduces)")


# -- promptmix init --------------------------------------------------------------------------------------
_PATH_TOKEN = r"(?<![\w./-]){}/"


def adapt_config_text(text: str, *, name: str, source: Path, out: Path, data: str | None = None,
                      checkpoints: str | None = None, run_dir: str | None = None) -> str:
    """The text of ``source`` for the user's own copy: a header saying where it comes from, ``data/`` and
    ``checkpoints/`` moved to the given folders, ``run_dir`` replaced; every comment (the paper's sections)
    kept."""
    for prefix, folder in (("data", data), ("checkpoints", checkpoints)):
        if folder:
            text = re.sub(_PATH_TOKEN.format(prefix), Path(folder).as_posix().rstrip("/") + "/", text)
    if run_dir:
        text, n = re.subn(r"(?m)^run_dir:.*$", f"run_dir: {Path(run_dir).as_posix()}", text)
        if n != 1:
            raise ConfigError(f"{source}: expected one top-level run_dir line")
    rel = f"configs/{source.name}"
    text = text.replace(rel, out.name)
    header = (f"# Written by `promptmix init {name}` from {rel}: the paper's settings (model sizes, steps, k, "
              "epochs, learning rates;\n# device auto: CUDA when there is one). Only the inputs are yours to "
              f"provide: `promptmix run {out.name} --check`\n# lists the missing ones with where to get them "
              f"({DOCS}).\n#\n")
    return header + text


def write_experiment(name: str, out: str | Path | None = None, *, data: str | None = None,
                     checkpoints: str | None = None, run_dir: str | None = None, force: bool = False,
                     configs_dir: Path = CONFIGS_DIR) -> tuple[Path, Any]:
    """Write experiment ``name``'s config to ``out`` (default ``./<config file name>``) and return it loaded.

    An existing file with other content is refused, naming it, unless ``force``."""
    from ..config import read_yaml_mapping
    from ..utils.io import write_text_atomic
    from .config import PipelineConfig

    source = find_experiment(name, configs_dir)
    out = Path(out) if out is not None else Path(source.name)
    if out.is_dir():
        out = out / source.name
    text = adapt_config_text(source.read_text(encoding="utf-8"), name=experiment_name(source), source=source,
                             out=out, data=data, checkpoints=checkpoints, run_dir=run_dir)
    if out.exists() and out.read_text(encoding="utf-8") != text and not force:
        raise InputError(f"{out} exists (maybe with your edits); keeping it. Give another --out, or --force to "
                         "replace it")
    write_text_atomic(out, text)
    try:
        config = PipelineConfig.from_dict(read_yaml_mapping(out))
    except ConfigError as exc:
        raise ConfigError(f"{out}: {exc}") from None
    return out, config
