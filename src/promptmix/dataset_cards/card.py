"""The dataset card of a published fake dataset: inputs, facts, license, figures, rendering.

``load_card_inputs(RUN)`` reads what a finished run holds (``RUN/fake`` with its configs,
``RUN/manifest.json``, ``RUN/captions/info.json``, the prompt bag, the real train split);
``render_card(inputs, repo_id=..., version=...)`` fills the Jinja template shipped in this package
(``card_template.md``) through huggingface_hub's ``DatasetCard.from_template`` with a
``DatasetCardData`` header. ``make_card_figures`` writes the PNG figures the card links to.
Every template variable is documented in ``dataset_cards/README.md`` at the top of the repository.

License rule (also stated in every card): the fake images are outputs of the generator, so its
license applies to them; prompts and labels derive from the source dataset (captions of its images,
annotators trained on it), so its terms apply too. The card's ``license`` is the common id when
both are the same known license, ``unknown`` when either is unknown, and otherwise ``other`` with
``license_name`` (both ids) and ``license_link`` (``LICENSE.md`` in the repo, naming both).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import schema as S
from ..builders.loading import load_source
from ..errors import InputError
from ..tasks import get_task
from ..utils.model_source import is_hub_id, looks_like_path

logger = logging.getLogger(__name__)

TEMPLATE_PATH = Path(__file__).with_name("card_template.md")
ASSETS_DIR = "assets"
PROVENANCE_FILE = "provenance.json"
LICENSE_FILE = "LICENSE.md"
STAGE_ORDER = ("caption", "prompts", "finetune", "generate", "annotate", "filter")
NOT_SHOWN_STAGES = ("publish",)  # recorded after the card is made; listed in the version history instead
STAGE_TITLES = {"caption": "Captions", "prompts": "Prompt bag", "generate": "Image generation",
                "annotate": "Annotation", "filter": "Quality filter", "real": "Real dataset",
                "finetune": "Fine-tuning of the generator (MVC)"}
STAGE_WHAT = {
    "caption": "Each training image of the real dataset was captioned by an image-captioning model.",
    "finetune": "The diffusion model was fine-tuned on pairs of same-class real images (InstructPix2Pix-style "
                "image conditioning, Mixing Visual Concepts).",
    "prompts": "Captions (and any manual prompts or class templates) became prompts: a prefix and a suffix "
               "read from the source image (grayscale or colour) were added, duplicates merged.",
    "generate": "Each prompt was given to the text-to-image model k times with distinct seeds; each image has its "
                "source image's size and is stored as a JPEG at the source's quality.",
    "annotate": "Every generated image was annotated by every annotator network.",
    "filter": "Each image got a quality score (the largest disagreement between two annotators divided by the "
              "largest magnitude); the images with the lowest scores were kept.",
}
FEATURE_DOCS = {
    S.ROW_ID: "unique id of the row: `{prompt_id}-{image_index:05d}`",
    S.IMAGE: "the generated image (JPEG at the source image's quality, at the source image's size)",
    S.PROMPT: "the prompt the image was generated from",
    S.PROMPT_ID: "stable hash of the prompt",
    S.IMAGE_INDEX: "0..k-1: which of the prompt's k images this is",
    S.SOURCE_IMAGE_ID: "`image_id` of the real training image whose caption made the prompt (null for manual prompts)",
    S.LABEL: "class of the prompt (classification); null for other tasks",
    S.SEED: "the generator seed of this image, derived from (run seed, prompt_id, image_index)",
    S.WIDTH: "image width in pixels", S.HEIGHT: "image height in pixels",
    S.JPEG_QUALITY: "JPEG quality the image was stored at (null when not a JPEG)",
    S.MIXING: "JSON record of the Mixing-Visual-Concepts embedding mix (null when MVC was not used)",
    S.CONDITIONING_IMAGE_ID: "real image that conditioned an image-conditioned generator (null otherwise)",
    S.ANNOTATIONS: "every annotator's output, one struct per annotator: name, prediction (maps as `{shape, dtype, data}`), "
                   "`ok` (false on NaN/inf)",
    S.QUALITY_SCORE: "max pairwise disagreement of the annotators / max magnitude (lower is better; null with one annotator)",
    S.KEPT: "whether the row passed the quality filter (all rows of the `kept` config are true)",
    S.ANNOTATION_OK: "false when an annotator produced NaN/inf for this image",
    S.TARGET_ANNOTATOR: "which annotator the training target comes from (`mean`: the mean of all annotators)",
    S.DENSITY: "the mean target's density map (`target_annotator` `mean`), else null: the target is the map of "
               "`target_annotator` in `annotations` (at its output resolution, sums to the count)",
    S.COUNT: "training target: the count (sum of the density map)",
    S.DEPTH: "the mean target's depth map in metres (`target_annotator` `mean`), else null: the target is the map "
             "of `target_annotator` in `annotations` (at its output resolution)",
}

# -- licenses ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LicenseInfo:
    id: str  # Hub license id, or "other"/"unknown"
    name: str  # human-readable name
    link: str | None = None
    note: str = ""


@dataclasses.dataclass(frozen=True)
class SourceDataset:
    key: str
    pretty_name: str
    patterns: tuple[str, ...]
    license: LicenseInfo
    url: str
    bibtex: str = ""


_RESEARCH_ONLY = "no license is published with the data; the authors distribute it for academic research"
KNOWN_SOURCES: tuple[SourceDataset, ...] = (
    SourceDataset("shanghaitech", "ShanghaiTech", ("shanghaitech", "shtech", "shta", "shtb", "sht-a",
                                                                    "sht-b", "sht_a", "sht_b"),
                  LicenseInfo("unknown", "no license (research use)", None, _RESEARCH_ONLY),
                  "https://github.com/desenzhou/ShanghaiTechDataset",
                  "@inproceedings{zhang2016mcnn,\n  title = {Single-Image Crowd Counting via Multi-Column Convolutional "
                  "Neural Network},\n  author = {Zhang, Yingying and Zhou, Desen and Chen, Siqin and Gao, Shenghua and "
                  "Ma, Yi},\n  booktitle = {CVPR},\n  year = {2016}\n}"),
    SourceDataset("ucf-qnrf", "UCF-QNRF", ("ucf-qnrf", "ucf_qnrf", "qnrf"),
                  LicenseInfo("unknown", "no license (research use)", None, _RESEARCH_ONLY),
                  "https://www.crcv.ucf.edu/data/ucf-qnrf/",
                  "@inproceedings{idrees2018composition,\n  title = {Composition Loss for Counting, Density Map "
                  "Estimation and Localization in Dense Crowds},\n  author = {Idrees, Haroon and Tayyab, Muhmmad and "
                  "Athrey, Kishan and Zhang, Dong and Al-Maadeed, Somaya and Rajpoot, Nasir and Shah, Mubarak},\n  "
                  "booktitle = {ECCV},\n  year = {2018}\n}"),
    SourceDataset("panda", "PANDA-Crowd", ("panda",),
                  LicenseInfo("unknown", "no license (research use)", None, _RESEARCH_ONLY),
                  "https://www.gigavision.cn/", ""),
    SourceDataset("nyu-depth-v2", "NYU Depth V2", ("nyu",),
                  LicenseInfo("unknown", "no license (research use)", None, _RESEARCH_ONLY),
                  "https://cs.nyu.edu/~fergus/datasets/nyu_depth_v2.html",
                  "@inproceedings{silberman2012indoor,\n  title = {Indoor Segmentation and Support Inference from RGBD "
                  "Images},\n  author = {Silberman, Nathan and Hoiem, Derek and Kohli, Pushmeet and Fergus, Rob},\n  "
                  "booktitle = {ECCV},\n  year = {2012}\n}"),
    SourceDataset("cifar100", "CIFAR-100", ("cifar100", "cifar-100", "cifar_100"),
                  LicenseInfo("unknown", "no license stated", None, "the authors state no license"),
                  "https://www.cs.toronto.edu/~kriz/cifar.html",
                  "@techreport{krizhevsky2009learning,\n  title = {Learning Multiple Layers of Features from Tiny "
                  "Images},\n  author = {Krizhevsky, Alex},\n  institution = {University of Toronto},\n  year = {2009}\n}"),
    SourceDataset("cifar10", "CIFAR-10", ("cifar10", "cifar-10", "cifar_10"),
                  LicenseInfo("unknown", "no license stated", None, "the authors state no license"),
                  "https://www.cs.toronto.edu/~kriz/cifar.html",
                  "@techreport{krizhevsky2009learning,\n  title = {Learning Multiple Layers of Features from Tiny "
                  "Images},\n  author = {Krizhevsky, Alex},\n  institution = {University of Toronto},\n  year = {2009}\n}"),
    SourceDataset("caltech101", "Caltech 101", ("caltech101", "caltech-101", "caltech_101"),
                  LicenseInfo("cc-by-4.0", "Creative Commons Attribution 4.0",
                              "https://creativecommons.org/licenses/by/4.0/"),
                  "https://data.caltech.edu/records/mzrjq-6wc02",
                  "@inproceedings{feifei2004learning,\n  title = {Learning Generative Visual Models from Few Training "
                  "Examples: An Incremental Bayesian Approach Tested on 101 Object Categories},\n  author = {Fei-Fei, Li "
                  "and Fergus, Rob and Perona, Pietro},\n  booktitle = {CVPR Workshops},\n  year = {2004}\n}"),
    SourceDataset("tiny-imagenet", "Tiny ImageNet", ("tiny-imagenet", "tiny_imagenet", "tinyimagenet"),
                  LicenseInfo("other", "ImageNet terms of access (non-commercial research)",
                              "https://image-net.org/download.php"),
                  "http://cs231n.stanford.edu/", ""),
)

_OPENRAIL_M = LicenseInfo("creativeml-openrail-m", "CreativeML OpenRAIL-M",
                          "https://huggingface.co/spaces/CompVis/stable-diffusion-license",
                          "use-based restrictions (Attachment A) apply to the model and its outputs")
_OPENRAIL_PP = LicenseInfo("openrail++", "CreativeML Open RAIL++-M",
                           "https://huggingface.co/stabilityai/stable-diffusion-2/blob/main/LICENSE-MODEL",
                           "use-based restrictions (Attachment A) apply to the model and its outputs")
# (patterns matched in the lower-cased model id, license): first match wins, so specific ids come first.
KNOWN_GENERATORS: tuple[tuple[tuple[str, ...], LicenseInfo], ...] = (
    (("instruct-pix2pix",), LicenseInfo("mit", "MIT", "https://huggingface.co/timbrooks/instruct-pix2pix")),
    (("stable-diffusion-3",), LicenseInfo("other", "Stability AI Community License",
                                          "https://stability.ai/community-license-agreement")),
    (("stable-diffusion-xl", "sdxl", "sd-turbo", "sdxl-turbo"),
     LicenseInfo("openrail++", "CreativeML Open RAIL++-M",
                 "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/LICENSE.md",
                 "use-based restrictions (Attachment A) apply to the model and its outputs")),
    (("stable-diffusion-2",), _OPENRAIL_PP),
    (("stable-diffusion-v1", "stable-diffusion-v-1", "sd-v1"), _OPENRAIL_M),
)
UNKNOWN_LICENSE = LicenseInfo("unknown", "unknown", None)


def source_dataset(*names: str | None) -> SourceDataset | None:
    """The known source dataset whose pattern occurs in any of ``names`` (ids, folder names, pretty names)."""
    text = " ".join(n.lower() for n in names if n)
    for source in KNOWN_SOURCES:
        if any(p in text for p in source.patterns):
            return source
    return None


def generator_license(model_id: str | None) -> LicenseInfo:
    """The license of a known text-to-image model id; ``unknown`` for local folders and unknown ids."""
    text = (model_id or "").lower()
    for patterns, info in KNOWN_GENERATORS:
        if any(p in text for p in patterns):
            return info
    return UNKNOWN_LICENSE


def _slug(license_id: str) -> str:
    return re.sub(r"[^a-z0-9.-]+", "-", license_id.lower().replace("+", "-plus")).strip("-")


def combine_licenses(generator: LicenseInfo, source: LicenseInfo) -> dict[str, str]:
    """The card's license metadata from the generator's and the source dataset's licenses (rule in the module doc)."""
    if "unknown" in (generator.id, source.id):
        return {"license": "unknown"}
    if generator.id == source.id and generator.id != "other":
        return {"license": generator.id}
    return {"license": "other", "license_name": f"{_slug(generator.id)}-and-{_slug(source.id)}"
            if generator.id != source.id else "other", "license_link": LICENSE_FILE}


# -- citations ---------------------------------------------------------------------------------------------------
# The papers' entries are those of docs/papers.md (arXiv id, venue and year as published; arXiv-style @misc
# entries with the venue in ``note``). Latent diffusion, the
# generator family the PromptMix paper uses (its ref. [14]), is given the same way. The diffusion-augmentation
# baseline has no venue or arXiv id we could find (its text carries the ICML template's header only), so it stays a
# @misc. The caption-prompts paper is left out: no stage here depends on it alone. ``when``: which runs cite it
# (:func:`citations_for`).
CITATIONS: tuple[dict[str, str], ...] = (
    {"key": "bakhtiarnia_promptmix", "when": "always", "what": "PromptMix: the pipeline this dataset was made with",
     "bibtex": "@misc{bakhtiarnia_promptmix,\n  title         = {PromptMix: Text-to-image diffusion models enhance "
               "the performance of lightweight networks},\n  author        = {Bakhtiarnia, Arian and Zhang, Qi and "
               "Iosifidis, Alexandros},\n  year          = {2023},\n  note          = {International Joint "
               "Conference on Neural Networks (IJCNN)},\n  eprint        = {2301.12914},\n  archivePrefix = {arXiv}\n}"},
    {"key": "rahat_mvc", "when": "mvc", "what": "Mixing Visual Concepts (MVC) embeddings and image-conditioned fine-tuning",
     "bibtex": "@misc{rahat_mvc,\n  title         = {Dataset Augmentation by Mixing Visual Concepts},\n  author        = "
               "{Rahat, Abdullah Al and Venkateswara, Hemanth},\n  year          = {2025},\n  note          = {IEEE/CVF "
               "Winter Conference on Applications of Computer Vision (WACV)},\n  eprint        = {2412.15358},\n"
               "  archivePrefix = {arXiv}\n}"},
    {"key": "paulsen_diffaug", "when": "class_prompts", "what": "class-name prompts with Stable Diffusion as a baseline",
     "bibtex": "@misc{paulsen_diffaug,\n  title  = {Improving Image Classification through Diffusion-based Dataset "
               "Augmentation},\n  author = {Paulsen, Derek and Liu, Bojun and Gozum, Gabriel and Gorka, Joe}\n}"},
    {"key": "rombach_ldm", "when": "always", "what": "latent diffusion (Stable Diffusion), the generator family",
     "bibtex": "@misc{rombach_ldm,\n  title         = {High-Resolution Image Synthesis with Latent Diffusion Models},\n"
               "  author        = {Rombach, Robin and Blattmann, Andreas and Lorenz, Dominik and Esser, Patrick and "
               "Ommer, Bj{\\\"o}rn},\n  year          = {2022},\n  note          = {IEEE/CVF Conference on Computer "
               "Vision and Pattern Recognition (CVPR)},\n  eprint        = {2112.10752},\n  archivePrefix = {arXiv}\n}"},
)



def citations_for(inputs: CardInputs, origins: Mapping[str, int]) -> list[dict[str, str]]:
    """The entries of :data:`CITATIONS` behind this run: PromptMix and latent diffusion always, MVC when rows were
    made with mixed embeddings or an image-conditioned generator, the class-prompt baseline when class-name prompts
    were used (``origins``: prompt origin -> count, from :func:`prompt_facts`)."""
    all_rows = inputs.rows(inputs.all_config)
    mvc_cfg = _stage_config(inputs, "generate").get("mvc")
    used = {"always",
            *(["class_prompts"] if origins.get("class") else []),
            *(["mvc"] if (isinstance(mvc_cfg, Mapping) and mvc_cfg.get("enabled", True))
              or any(v is not None for c in (S.MIXING, S.CONDITIONING_IMAGE_ID) for v in _column(all_rows, c))
              else [])}
    return [dict(c) for c in CITATIONS if c.get("when", "always") in used]


# -- inputs ------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class CardInputs:
    """Everything a card is made from, read from a finished run by :func:`load_card_inputs`."""

    run_dir: Path
    task: str
    class_names: list[str]
    manifest: dict[str, Any]
    info: dict[str, Any]  # RUN/captions/info.json
    configs: dict[str, dict[str, Any]]  # fake dataset: config -> split -> datasets.Dataset
    default_config: str
    real: Any | None = None  # the real train split (datasets.Dataset), None when it could not be read
    real_ref: str | None = None  # folder or Hub id of the real dataset, as recorded
    real_metadata: dict[str, Any] = dataclasses.field(default_factory=dict)  # its README's YAML, when local
    prompts: Any | None = None  # RUN/prompts/prompts.parquet (datasets.Dataset)
    source_dir: Path | None = None  # the fake dataset's folder (its shards are published as they are)
    source_yaml_configs: list[dict[str, Any]] | None = None  # its README's `configs`

    @property
    def kept_config(self) -> str:
        return "kept" if "kept" in self.configs else self.default_config

    @property
    def all_config(self) -> str:
        if "all" in self.configs:
            return "all"
        return max(self.configs, key=lambda c: sum(len(d) for d in self.configs[c].values()))

    def rows(self, config: str | None = None):
        """All splits of a config concatenated (one split: that split)."""
        from datasets import concatenate_datasets

        splits = list(self.configs[config or self.kept_config].values())
        return splits[0] if len(splits) == 1 else concatenate_datasets(splits)


def _read_yaml_front_matter(readme: Path) -> dict[str, Any]:
    from huggingface_hub import DatasetCard

    try:
        return DatasetCard(readme.read_text(encoding="utf-8"), ignore_metadata_errors=True).data.to_dict()
    except (OSError, ValueError) as exc:
        raise InputError(f"{readme}: could not read its YAML header ({exc})") from None


def read_hub_folder(folder: str | Path) -> tuple[dict[str, dict[str, Any]], str]:
    """Read a local Hub-layout dataset folder: ``({config: {split: Dataset}}, default config)``.

    The Parquet shards named by the README's YAML ``configs`` (or ``data/<split>-*.parquet`` when it has
    none) are read with ``Dataset.from_parquet``, whose cache key includes each file's path and mtime.
    (``load_dataset(folder)`` caches a folder by its name and YAML only, so two runs' ``fake/`` folders,
    or one folder rewritten, would share a stale cache.)
    """
    import datasets

    folder = Path(folder)
    readme = folder / "README.md"
    meta = _read_yaml_front_matter(readme) if readme.is_file() else {}
    yaml_configs = meta.get("configs") or []
    if not yaml_configs:
        splits = sorted({p.name.split("-")[0] for p in (folder / "data").glob("*.parquet")})
        yaml_configs = [{"config_name": "default", "data_files": [
            {"split": s, "path": f"data/{s}-*.parquet"} for s in splits]}]
    default = next((c["config_name"] for c in yaml_configs if c.get("default")), yaml_configs[0]["config_name"])
    configs: dict[str, dict[str, Any]] = {}
    for entry in yaml_configs:
        name = entry.get("config_name", "default")
        data_files = entry.get("data_files") or []
        if isinstance(data_files, (str, dict)):
            data_files = [data_files]
        configs[name] = {}
        for item in data_files:
            split, patterns = (item.get("split", "train"), item.get("path")) if isinstance(item, dict) \
                else ("train", item)
            patterns = [patterns] if isinstance(patterns, str) else list(patterns or [])
            files = sorted({str(p) for pat in patterns for p in folder.glob(pat)})
            if not files:
                raise InputError(f"{folder}: config {name!r} split {split!r}: no file matches {patterns}")
            try:
                configs[name][split] = datasets.Dataset.from_parquet(files, split=split)
            except Exception as exc:  # corrupt shards
                raise InputError(f"{folder}: config {name!r} split {split!r} could not be read: {exc}") from None
    if not any(configs.values()):
        raise InputError(f"{folder}: no Parquet data found (expected data/ shards named in README.md `configs`)")
    return configs, default


def _infer_task(features) -> tuple[str, list[str]]:
    from datasets import ClassLabel

    if S.DENSITY in features:
        return "counting", []
    if S.DEPTH in features:
        return "depth", []
    label = features.get(S.LABEL)
    return "classification", list(label.names) if isinstance(label, ClassLabel) else []


def _resolve_local(ref: str, run_dir: Path) -> Path | None:
    for candidate in (Path(ref).expanduser(), run_dir / ref, run_dir.parent / ref):
        if candidate.is_dir():
            return candidate
    return None


def load_card_inputs(run_dir: str | Path, *, real: str | os.PathLike | None = None) -> CardInputs:
    """Read a finished run folder. ``real`` overrides the real dataset recorded in ``captions/info.json``.

    Raises :class:`InputError` when ``RUN/fake`` is missing or lacks the fake dataset's columns.
    The real dataset is optional: when it cannot be read (moved, or a Hub id while offline) the card
    says so and its real-vs-fake figures show the fake side only.
    """
    import datasets

    from ..run_folder import RunFolder

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run folder {run_dir} does not exist")
    fake_dir = RunFolder(run_dir).fake
    readme = fake_dir / "README.md"
    if not readme.is_file():
        raise InputError(f"{fake_dir} has no README.md: expected the fake dataset written by "
                         f"`promptmix filter {run_dir}`; run that first")
    configs, default = read_hub_folder(fake_dir)
    first = next(iter(next(iter(configs.values())).values()))
    required = {S.ROW_ID, S.IMAGE, S.PROMPT, S.PROMPT_ID, S.KEPT, S.QUALITY_SCORE, S.ANNOTATIONS}
    missing = sorted(required - set(first.column_names))
    if missing:
        raise InputError(f"{fake_dir}: columns {missing} are missing; expected the columns of "
                         "schema.fake_features(task, class_names)")

    info_path = RunFolder(run_dir).captions / "info.json"
    info: dict[str, Any] = {}
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{info_path} is not valid JSON: {exc}") from None
    else:
        logger.warning("%s not found: the task is inferred from the fake dataset's columns", info_path)
    task, names_from_features = _infer_task(first.features)
    task = info.get("task") or task
    if task not in S.TASKS:
        raise InputError(f"{info_path}: task: expected one of {S.TASKS}; got {task!r}")
    class_names = list(info.get("class_names") or names_from_features)

    manifest = RunFolder(run_dir).read_manifest()
    recorded = info.get("real")
    real_revision, real_split = None, "train"
    if isinstance(recorded, Mapping):  # promptmix caption: {"ref", "revision", "split"}
        real_revision, real_split = recorded.get("revision"), recorded.get("split") or "train"
        recorded = recorded.get("ref")
    if real is not None:
        real_revision = None
    real_ref = str(real) if real is not None else (str(recorded) if recorded else None)
    real_ds, real_meta = None, {}
    if real_ref:
        local = _resolve_local(real_ref, run_dir)
        try:
            if local is not None:
                if (local / "README.md").is_file():
                    real_meta = _read_yaml_front_matter(local / "README.md")
                real_configs, real_default = read_hub_folder(local)
                real_ds = real_configs[real_default].get(real_split)
                if real_ds is None:
                    raise InputError(f"real dataset {local}: expected a {real_split!r} split (the one captioned); "
                                     f"found {sorted(real_configs[real_default])}")
            elif looks_like_path(real_ref):
                raise InputError(f"real dataset folder {real_ref} does not exist (expected a folder written by "
                                 "`promptmix real ...` or a Hub dataset id); pass --real with its new place")
            else:
                try:  # a Hub id that cannot be reached (offline, private): the card still renders
                    real_ds = load_source(real_ref, real_revision, what="real dataset")[real_split]
                except (InputError, KeyError) as exc:
                    logger.warning("real dataset %s could not be read (%s): the card shows fake data only",
                                   real_ref, exc)
                    real_ds = None
        except InputError:
            raise
        except Exception as exc:
            logger.warning("real dataset %s could not be read (%s): the card shows fake data only",
                           real_ref, type(exc).__name__)
            real_ds = None
    prompts = None
    prompts_path = RunFolder(run_dir).prompts / "prompts.parquet"
    if prompts_path.is_file():
        prompts = datasets.Dataset.from_parquet(str(prompts_path))
    fake_yaml = _read_yaml_front_matter(readme).get("configs") or None
    return CardInputs(run_dir=run_dir, task=task, class_names=class_names, manifest=manifest, info=info,
                      configs=configs, default_config=default, real=real_ds, real_ref=real_ref,
                      real_metadata=real_meta, prompts=prompts, source_dir=fake_dir, source_yaml_configs=fake_yaml)


# -- facts from the manifest --------------------------------------------------------------------------------------
def _first(mapping: Mapping[str, Any] | None, *keys: str) -> Any:
    for key in keys:
        if mapping and mapping.get(key) is not None:
            return mapping[key]
    return None


def _annotator_eval(inputs: CardInputs) -> dict | None:
    """``RUN/annotations/real_eval.json`` (``annotate.evaluate_split``): each annotator on real labelled images."""
    from ..annotation.evaluate import read_real_eval
    from ..run_folder import RunFolder

    if not getattr(inputs, "run_dir", None):
        return None
    record = read_real_eval(RunFolder(inputs.run_dir))
    if not record or not record.get("annotators"):
        return None
    rows = []
    for name, r in record["annotators"].items():
        rows.append({"name": name, "n": r.get("n"), "mae": r.get("mae"), "rmse": r.get("rmse"),
                     "accuracy": r.get("accuracy"), "mean_count": r.get("mean_count")})
    return {"split": record.get("split"), "task": record.get("task"), "rows": rows}


def _stage(inputs: CardInputs, name: str) -> dict[str, Any]:
    return dict((inputs.manifest.get("stages") or {}).get(name) or {})


def _stage_config(inputs: CardInputs, name: str) -> dict[str, Any]:
    return dict(_stage(inputs, name).get("config") or {})


_MODEL_DETAILS = ("pipeline", "scheduler", "kind", "architecture", "output_stride", "dtype")


def model_records(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The models of a stage record, each with its role: ``record["models"]`` (role -> model record) when
    present, else every dict with ``name`` and ``commit_hash``/``revision`` found in the record.

    A model record is ``ModelSource.record()`` (name, revision, commit_hash, local) or, for an annotator
    loaded from a checkpoint file, ``{"weights_sha256": ...}`` (its spec comes from ``record["annotators"]``).
    """
    annotators = {a.get("name"): a for a in record.get("annotators") or [] if isinstance(a, Mapping)}
    models = record.get("models")
    if isinstance(models, Mapping):
        out = []
        for role, m in models.items():
            m = {"name": m} if isinstance(m, str) else dict(m or {})
            extra = dict(annotators.get(role) or {})
            details = {k: v for k, v in {**extra, **m}.items()
                       if k in _MODEL_DETAILS and v is not None and not isinstance(v, (dict, list))}
            out.append({"role": str(role), "name": m.get("name") or extra.get("spec") or str(role),
                        "revision": m.get("revision"), "commit_hash": m.get("commit_hash"),
                        "weights_sha256": m.get("weights_sha256") or extra.get("weights_sha256"),
                        "local": bool(m.get("local")),
                        "details": ", ".join(f"{k} {display_value(v)}" for k, v in details.items())})
        return out
    found: list[dict[str, Any]] = []

    def walk(value: Any, role: str) -> None:
        if isinstance(value, Mapping):
            if "name" in value and ("commit_hash" in value or "revision" in value) and isinstance(value["name"], str):
                found.append({"role": role, "name": value["name"], "revision": value.get("revision"),
                              "commit_hash": value.get("commit_hash"), "weights_sha256": value.get("weights_sha256"),
                              "local": bool(value.get("local")), "details": ""})
                return
            for key, sub in value.items():
                if key not in ("versions", "config"):
                    walk(sub, str(key))
        elif isinstance(value, (list, tuple)):
            for i, sub in enumerate(value):
                walk(sub, f"{role}[{i}]")

    walk(record, "model")
    seen, unique = set(), []
    for m in found:
        key = (m["role"], m["name"], m["commit_hash"])
        if key not in seen:
            seen.add(key)
            unique.append(m)
    return unique


def display_value(value: Any, limit: int = 160) -> str:
    """A config value for a Markdown table: local paths shortened to their last part, long values cut."""
    from ..utils.model_source import redact_local_paths

    if isinstance(value, str):
        text = f".../{Path(value).name}" if looks_like_path(value) else redact_local_paths(value)
    elif isinstance(value, (list, tuple, dict)):
        text = json.dumps(redact_local_paths(value), ensure_ascii=False, default=str)
    elif value is None:
        text = "null"
    else:
        text = str(value)
    if len(text) > limit:
        text = text[: limit - 30] + f"... (full value in {PROVENANCE_FILE})"
    # shown in a code span: control characters dropped, a backtick (which would end the span) made a quote
    return _CONTROL.sub("", text).replace("`", "'").replace("|", "\\|").replace("\n", " ")


def display_model_name(name: str) -> str:
    return f".../{Path(name).name} (local folder)" if looks_like_path(name) else name


def _semver_key(version: str) -> tuple:
    parts = re.findall(r"\d+", version)
    return tuple(int(p) for p in parts[:3])


def size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return label
    return "10M<n<100M"


# -- numbers and figures ------------------------------------------------------------------------------------------
def _column(ds, name: str) -> list:
    if ds is None or name not in ds.column_names:
        return []
    return list(ds.select_columns([name]).with_format(None)[name])


def _map_sample(ds, column: str, max_rows: int = 64, max_values: int = 2048) -> np.ndarray:
    """Depth values of up to ``max_rows`` maps, each subsampled to about ``max_values`` pixels."""
    if ds is None or column not in ds.column_names or len(ds) == 0:
        return np.zeros(0)
    from ..maps import decode

    idx = np.linspace(0, len(ds) - 1, min(max_rows, len(ds))).round().astype(int)
    out = []
    cols = [c for c in (column, S.TARGET_ANNOTATOR, S.ANNOTATIONS) if c in ds.column_names]
    for row in ds.select_columns(cols).select(sorted(set(idx.tolist()))).with_format("numpy"):
        value = S.fake_target_map(row, column) if S.ANNOTATIONS in row else row[column]
        m = decode(value)
        if m is None:
            continue
        m = m.ravel()
        step = max(1, m.size // max_values)
        out.append(m[::step])
    return np.concatenate(out) if out else np.zeros(0)


def filter_facts(inputs: CardInputs) -> dict[str, Any]:
    """keep_percent (r_img), the threshold q, row counts and score statistics, from the manifest or the data."""
    rec = _stage(inputs, "filter")
    cfg = dict(rec.get("config") or {})
    all_rows = inputs.rows(inputs.all_config)
    scores = _column(all_rows, S.QUALITY_SCORE)
    kept = _column(all_rows, S.KEPT)
    n_all, n_kept = len(all_rows), len(inputs.rows(inputs.kept_config))
    keep_percent = _first(rec, "keep_percent", "r_img") or _first(cfg, "keep_percent", "r_img", "keep")
    threshold = _first(rec, "threshold", "q_threshold", "quality_threshold", "q")
    kept_scores = [s for s, k in zip(scores, kept) if k and s is not None]
    if threshold is None and kept_scores:
        threshold = float(max(kept_scores))
    valid = np.asarray([s for s in scores if s is not None], dtype=float)
    ok = _column(all_rows, S.ANNOTATION_OK)
    return {
        "keep_percent": float(keep_percent) if keep_percent is not None else (100.0 * n_kept / n_all if n_all else None),
        "threshold": float(threshold) if threshold is not None else None,
        "rows_all": n_all, "rows_kept": n_kept,
        "scored": int(valid.size),
        "score_min": float(valid.min()) if valid.size else None,
        "score_median": float(np.median(valid)) if valid.size else None,
        "score_max": float(valid.max()) if valid.size else None,
        "annotation_failed": int(sum(1 for v in ok if v is False)),
        "scores": scores, "kept": kept,
    }


def make_card_figures(inputs: CardInputs, out_dir: str | Path) -> dict[str, str]:
    """Write the card's PNG figures under ``out_dir/assets``; returns ``{name: path relative to out_dir}``.

    Names: ``samples`` (real beside fake), ``quality`` (score histogram; only with scores),
    ``distribution`` (counts / depth values / labels, real vs fake), ``prompt_lengths``.
    """
    from . import figures as F

    out_dir = Path(out_dir)
    out: dict[str, str] = {}

    def save(name: str, fig_or_image) -> None:
        rel = f"{ASSETS_DIR}/{name}.png"
        F.save_png(fig_or_image, out_dir / rel)
        out[name] = rel

    rows = sample_grid_rows(inputs)
    if rows:
        save("samples", F.sample_grid(rows))
    facts = filter_facts(inputs)
    if facts["scored"]:
        save("quality", F.quality_histogram(facts["scores"], facts["kept"], facts["threshold"], facts["keep_percent"]))
    kept, all_rows = inputs.rows(inputs.kept_config), inputs.rows(inputs.all_config)
    save("distribution", _DISTRIBUTIONS[get_task(inputs.task).distribution_figure](F, inputs, kept, all_rows))
    prompts = prompt_facts(inputs)["texts"]
    if prompts:
        save("prompt_lengths", F.prompt_length_histogram(prompts))
    return out


def _target_text(task: str, row: Mapping[str, Any], class_names: Sequence[str]) -> str:
    return get_task(task).describe_target(row, class_names)


# the real-vs-fake distribution figure each task names (Task.distribution_figure)
_DISTRIBUTIONS = {
    "count_histogram": lambda F, inputs, kept, all_rows: F.count_histogram(
        _column(inputs.real, S.COUNT), [c for c in _column(kept, S.COUNT) if c is not None],
        [c for c in _column(all_rows, S.COUNT) if c is not None]),
    "depth_histogram": lambda F, inputs, kept, all_rows: F.depth_histogram(
        _map_sample(inputs.real, S.DEPTH), _map_sample(kept, S.DEPTH)),
    "label_bar_chart": lambda F, inputs, kept, all_rows: F.label_bar_chart(
        inputs.class_names, _column(inputs.real, S.LABEL), _column(kept, S.LABEL)),
}


def sample_grid_rows(inputs: CardInputs, max_rows: int = 4, max_fakes: int = 4) -> list:
    """Grid rows: a real source image beside fakes made from its prompts (grouped by source image, else label)."""
    from .figures import GridCell, GridRow

    all_rows = inputs.rows(inputs.all_config)
    if len(all_rows) == 0:
        return []
    meta_cols = [c for c in (S.SOURCE_IMAGE_ID, S.LABEL, S.PROMPT_ID, S.IMAGE_INDEX) if c in all_rows.column_names]
    meta = all_rows.select_columns(meta_cols).with_format(None).to_list()
    groups: dict[tuple, list[int]] = collections.defaultdict(list)
    for i, m in enumerate(meta):
        if m.get(S.SOURCE_IMAGE_ID):
            key = ("source", m[S.SOURCE_IMAGE_ID])
        elif get_task(inputs.task).has_classes and m.get(S.LABEL) is not None:
            key = ("label", m[S.LABEL])
        else:
            key = ("none", "")
        groups[key].append(i)
    order = sorted(groups, key=lambda g: (g[0] == "none", str(g[1])))
    chosen = order[:max_rows]
    if ("none", "") in groups and ("none", "") not in chosen and len(chosen) == max_rows:
        chosen[-1] = ("none", "")  # show one manual-prompt row when there are manual prompts
    real = inputs.real
    real_index: dict[str, int] = {}
    real_labels: list = []
    if real is not None:
        real_index = {v: i for i, v in enumerate(_column(real, S.IMAGE_ID))}
        real_labels = _column(real, S.LABEL)
    grid = []
    for kind, key in chosen:
        idx = sorted(groups[(kind, key)], key=lambda i: (meta[i].get(S.PROMPT_ID) or "", meta[i].get(S.IMAGE_INDEX) or 0))
        fakes = []
        for i in idx[:max_fakes]:
            row = all_rows[i]
            status = "kept" if row[S.KEPT] else "dropped"
            q = row.get(S.QUALITY_SCORE)
            head = " | ".join(x for x in (status, f"q={q:.2f}" if q is not None else "",
                                          _target_text(inputs.task, row, inputs.class_names)) if x)
            fakes.append(GridCell(row[S.IMAGE], f"{head}: {row[S.PROMPT]}"))
        real_cell = GridCell(None, "manual prompt: no source image" if kind == "none" else "real image not available")
        j = None
        if kind == "source" and key in real_index:
            j = real_index[key]
        elif kind == "label" and key in real_labels:
            j = real_labels.index(key)
        if j is not None:
            r = real[j]
            target = _target_text(inputs.task, r, inputs.class_names)
            real_cell = GridCell(r[S.IMAGE], f"real {r[S.IMAGE_ID]}" + (f" | {target}" if target else ""))
        grid.append(GridRow(real_cell, fakes))
    return grid


_STOPWORDS = frozenset("a an the of in on at and with to for from by is are there some two three people "
                       "image color black white photo picture".split())


def prompt_facts(inputs: CardInputs) -> dict[str, Any]:
    """Distinct prompts of the published rows, words per prompt, origins, frequent words, images per prompt."""
    all_rows = inputs.rows(inputs.all_config)
    kept = inputs.rows(inputs.kept_config)
    by_id: dict[str, str] = {}
    for pid, text in zip(_column(all_rows, S.PROMPT_ID), _column(all_rows, S.PROMPT)):
        by_id.setdefault(pid, text)
    texts = [by_id[k] for k in sorted(by_id)]
    words = np.asarray([len(t.split()) for t in texts], dtype=float)
    counter = collections.Counter(w for t in texts for w in re.findall(r"[a-z][a-z'-]+", t.lower())
                                  if w not in _STOPWORDS)
    origins: dict[str, int] = {}
    if inputs.prompts is not None and S.ORIGIN in inputs.prompts.column_names:
        for pid, origin in zip(_column(inputs.prompts, S.PROMPT_ID), _column(inputs.prompts, S.ORIGIN)):
            if pid in by_id:
                origins[origin] = origins.get(origin, 0) + 1
    kept_ids = set(_column(kept, S.PROMPT_ID))
    per_prompt = collections.Counter(_column(all_rows, S.PROMPT_ID))
    return {
        "texts": texts,
        "distinct": len(texts),
        "with_kept_rows": len(kept_ids),
        "bag_size": len(inputs.prompts) if inputs.prompts is not None else None,
        "words_mean": float(words.mean()) if words.size else 0.0,
        "words_min": int(words.min()) if words.size else 0,
        "words_max": int(words.max()) if words.size else 0,
        "origins": dict(sorted(origins.items())),
        "top_words": counter.most_common(12),
        "images_per_prompt": max(per_prompt.values()) if per_prompt else 0,
        "examples": [markdown_text(t) for t in texts[:5]],
    }


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>-])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def markdown_text(text: str, limit: int = 300) -> str:
    """User text (a prompt) as one line of plain Markdown: control characters (NUL...) dropped, line breaks made
    spaces, HTML escaped (``<script>`` shows as text), Markdown syntax escaped (a ``[link](url)`` or an image
    shows as typed, never as a link), cut to ``limit`` characters."""
    import html

    text = _CONTROL.sub("", str(text)).replace("\r", " ").replace("\n", " ").replace("\t", " ")
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def jpeg_facts(inputs: CardInputs) -> dict[str, Any]:
    cfg = _stage_config(inputs, "generate")
    policy = cfg.get("jpeg_quality")
    qualities = [q for q in _column(inputs.rows(inputs.all_config), S.JPEG_QUALITY) if q is not None]
    counts = collections.Counter(qualities)
    if policy == "source":
        text = ("each image is stored as a JPEG at the quality of its source image (estimated from its quantization "
                f"tables); images without a JPEG source use quality {cfg.get('default_jpeg_quality', 'default')}")
    elif policy is not None:
        text = f"every image is stored as a JPEG at quality {policy}"
    else:
        text = "not recorded in the manifest"
    if counts:
        dist = ", ".join(f"{q}: {n}" for q, n in sorted(counts.items()))
        text += f". Qualities in this dataset (quality: images): {dist}"
    return {"policy": policy, "text": text}


# -- the card ----------------------------------------------------------------------------------------------------
def reproduce_command(run_ref: str, row_id: str) -> str:
    return f"promptmix reproduce {run_ref} --row-id {row_id}"


def history_entry(version: str, date: str, rows_kept: int, rows_all: int, notes: str | None = None) -> dict[str, Any]:
    """One row of the card's version history (also kept in ``provenance.json``)."""
    return {"version": version, "date": date, "rows_kept": rows_kept, "rows_all": rows_all, "notes": notes}


def resolve_date(date: str | None) -> str:
    if date:
        return date
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc).date().isoformat()
    return _dt.datetime.now(_dt.timezone.utc).date().isoformat()


def card_context(inputs: CardInputs, *, repo_id: str, version: str, figures: Mapping[str, str] | None = None,
                 history: Sequence[Mapping[str, Any]] = (), license: str | None = None,
                 pretty_name: str | None = None, notice: str | None = None, date: str | None = None,
                 yaml_configs: Sequence[Mapping[str, Any]] | None = None,
                 local_path: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The template variables and the YAML metadata of the card (both documented in dataset_cards/README.md).

    ``local_path``: the card is for a local publication (a folder that is not pushed): the load snippets use
    that folder's path, and neither a Hub id nor a git tag is mentioned."""
    from ..utils.io import hub_yaml_configs

    task = inputs.task
    version = version.lstrip("v")
    tag = f"v{version}"
    date = resolve_date(date)
    gen_cfg = _stage_config(inputs, "generate")
    gen_models = model_records(_stage(inputs, "generate"))
    generator_id = (gen_models[0]["name"] if gen_models else None) or gen_cfg.get("model")
    gen_license = generator_license(generator_id)
    source = source_dataset(inputs.real_ref and Path(inputs.real_ref).name, inputs.real_ref,
                            inputs.real_metadata.get("pretty_name"), " ".join(inputs.real_metadata.get("tags") or []))
    src_license = source.license if source else UNKNOWN_LICENSE
    real_license_id = inputs.real_metadata.get("license")
    if isinstance(real_license_id, str) and real_license_id not in ("", "unknown"):
        src_license = LicenseInfo(real_license_id, real_license_id, None, "from the real dataset's card")
    license_meta = {"license": license} if license else combine_licenses(gen_license, src_license)

    kept, all_rows = inputs.rows(inputs.kept_config), inputs.rows(inputs.all_config)
    facts = filter_facts(inputs)
    prompts = prompt_facts(inputs)
    annotators = [m["role"] for m in model_records(_stage(inputs, "annotate"))]
    if not annotators and len(all_rows):
        annotators = [a[S.ANNOTATOR] for a in all_rows[0][S.ANNOTATIONS]]
    k = _first(gen_cfg, "images_per_prompt", "k") or prompts["images_per_prompt"]
    targets = sorted({t for t in _column(kept, S.TARGET_ANNOTATOR) if t}) or \
        [t for t in [_stage(inputs, "filter").get("target")] if t]

    real_name = source.pretty_name if source else (inputs.real_metadata.get("pretty_name")
                                                   or (Path(inputs.real_ref).name if inputs.real_ref else "unknown"))
    # what the real folder calls itself (e.g. "ShanghaiTech Part B"): more precise than the known source's name
    real_title = str(inputs.real_metadata.get("pretty_name") or real_name)
    truncated = _stage(inputs, "generate").get("truncated_prompts") or {}
    real_is_hub = bool(inputs.real_ref) and is_hub_id(inputs.real_ref) and \
        _resolve_local(inputs.real_ref, inputs.run_dir) is None and inputs.real_ref.count("/") == 1
    pretty = pretty_name or f"PromptMix synthetic {real_name}"

    stages = []
    stage_names = [s for s in STAGE_ORDER if s in (inputs.manifest.get("stages") or {})]
    stage_names += sorted(set(inputs.manifest.get("stages") or {}) - set(STAGE_ORDER) - set(NOT_SHOWN_STAGES))
    for i, name in enumerate(stage_names, 1):
        rec = _stage(inputs, name)
        stages.append({
            "number": i, "name": name, "title": STAGE_TITLES.get(name, name.replace("_", " ").capitalize()),
            "what": STAGE_WHAT.get(name, ""),
            "finished_at": rec.get("finished_at"),
            "config": [(key, display_value(v)) for key, v in (rec.get("config") or {}).items()],
            "models": [{**m, "display": display_model_name(m["name"])} for m in model_records(rec)],
            "config_hash": rec.get("config_hash"),
        })
    libs = sorted({lib for name in stage_names for lib in (_stage(inputs, name).get("versions") or {})})
    versions = [{"library": lib, "by_stage": [(_stage(inputs, n).get("versions") or {}).get(lib, "") for n in stage_names]}
                for lib in libs]

    seeds = {f"{name}.{key}": v for name in stage_names for key, v in (_stage_config(inputs, name)).items()
             if "seed" in key.lower() and not isinstance(v, (dict, list))}
    features = [{"name": n, "type": _feature_type(f), "doc": FEATURE_DOCS.get(n, "")}
                for n, f in kept.features.items()]
    splits_by_config = {c: {s: len(d) for s, d in splits.items()} for c, splits in inputs.configs.items()}
    config_rows = []
    for c, splits in splits_by_config.items():
        what = ("rows that passed the quality filter" if c == inputs.kept_config else
                "every generated row with its annotations and quality score" if c == inputs.all_config else "")
        config_rows.append({"name": c, "rows": sum(splits.values()), "splits": splits, "what": what,
                            "default": c == inputs.default_config})
    example_row = min(_column(all_rows, S.ROW_ID)) if len(all_rows) else "ROW_ID"
    history_rows = [dict(h) for h in history if str(h.get("version")) != version]
    history_rows.append(history_entry(version, date, facts["rows_kept"], facts["rows_all"],
                                      next((h.get("notes") for h in history if str(h.get("version")) == version), None)))
    history_rows.sort(key=lambda h: _semver_key(str(h.get("version", "0"))), reverse=True)
    source_cite = source.bibtex if source and source.bibtex else ""
    where = ("a local folder (not on the Hub)" if local_path else
             f"\\url{{https://huggingface.co/datasets/{repo_id}}}")
    dataset_bibtex = (f"@misc{{{re.sub(r'[^A-Za-z0-9]+', '_', repo_id)}_{version.replace('.', '_')},\n"
                      f"  title = {{{pretty}}},\n  howpublished = {{{where}}},\n"
                      f"  note = {{Version {version}, made with promptmix}},\n  year = {{{date[:4]}}}\n}}")

    ctx = {
        "pretty_name": pretty, "repo_id": repo_id, "version": version, "tag": tag, "date": date, "notice": notice,
        "local_path": local_path,
        "task": task, "task_title": get_task(task).title, "class_names": inputs.class_names,
        "target_columns": list(get_task(task).target_columns),
        "real_name": real_name, "real_title": real_title, "real_ref": inputs.real_ref if real_is_hub else
        (Path(inputs.real_ref).name if inputs.real_ref else None), "real_is_hub": real_is_hub,
        "real_url": source.url if source else (f"https://huggingface.co/datasets/{inputs.real_ref}" if real_is_hub else None),
        "real_available": inputs.real is not None, "real_rows": len(inputs.real) if inputs.real is not None else None,
        "generator": display_model_name(generator_id) if generator_id else "unknown",
        "generator_license": dataclasses.asdict(gen_license), "source_license": dataclasses.asdict(src_license),
        "license_meta": license_meta, "license_overridden": bool(license),
        "annotators": annotators, "annotator_eval": _annotator_eval(inputs), "k": k, "targets": targets, "keep_percent": facts["keep_percent"], "threshold": facts["threshold"],
        "rows_all": facts["rows_all"], "rows_kept": facts["rows_kept"], "scored": facts["scored"],
        "score_min": facts["score_min"], "score_median": facts["score_median"], "score_max": facts["score_max"],
        "annotation_failed": facts["annotation_failed"],
        "configs": config_rows, "default_config": inputs.default_config, "kept_config": inputs.kept_config,
        "all_config": inputs.all_config, "features": features,
        "stages": stages, "stage_names": stage_names, "versions": versions, "seeds": seeds,
        "versions_same": all(len(set(v["by_stage"])) == 1 for v in versions),
        "jpeg": jpeg_facts(inputs), "prompts": prompts, "figures": dict(figures or {}),
        "truncated": {"count": int(truncated.get("count") or 0), "of": truncated.get("of"),
                      "max_tokens": truncated.get("max_tokens")},
        "example_row_id": example_row, "reproduce": reproduce_command("RUN", example_row),
        "history": history_rows, "citations": citations_for(inputs, prompts["origins"]), "source_bibtex": source_cite,
        "dataset_bibtex": dataset_bibtex, "provenance_file": PROVENANCE_FILE, "license_file": LICENSE_FILE,
    }

    metadata = {
        **license_meta,
        "pretty_name": pretty,
        "task_categories": list(get_task(task).card_categories),
        "tags": ["synthetic", "promptmix", "diffusion-generated", *get_task(task).card_tags],
        "size_categories": [size_category(facts["rows_all"])],
        "source_datasets": [f"extended|{inputs.real_ref}"] if real_is_hub else ["extended"],
        "annotations_creators": ["machine-generated"],
        "language_creators": ["machine-generated"],
        "language": ["en"],
        "configs": list(yaml_configs) if yaml_configs is not None else hub_yaml_configs(inputs.configs,
                                                                                         inputs.default_config),
    }
    return ctx, metadata


def _add_dataset_info(card_data, configs: Mapping[str, Mapping[str, Any]]) -> None:
    """Each config's features and split sizes in the YAML ``dataset_info`` (as ``push_to_hub`` writes it)."""
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict

    infos = {}
    for name, splits in configs.items():
        split_dict = SplitDict({s: SplitInfo(name=s, num_bytes=int(d.data.nbytes), num_examples=len(d))
                                for s, d in splits.items()})
        first = next(iter(splits.values()))
        infos[name] = DatasetInfo(features=first.features, splits=split_dict)
    DatasetInfosDict(infos).to_dataset_card_data(card_data)


def _feature_type(feature) -> str:
    from datasets import ClassLabel, Image, List, Value

    if isinstance(feature, Value):
        return feature.dtype
    if isinstance(feature, dict) and set(feature) == {"shape", "dtype", "data"}:
        return "map (`shape` [H, W], `dtype`, `data`: H*W values as little-endian bytes, row-major)"
    if isinstance(feature, Image):
        return "image"
    if isinstance(feature, ClassLabel):
        return f"class label ({len(feature.names)} classes)"
    if isinstance(feature, List):
        inner = feature.feature
        if isinstance(inner, List):
            return f"list of lists of {_feature_type(inner.feature)}"
        if isinstance(inner, dict):
            return "list of structs (" + ", ".join(inner) + ")"
        return f"list of {_feature_type(inner)}"
    if isinstance(feature, dict):
        return "struct (" + ", ".join(feature) + ")"
    return type(feature).__name__


def render_card(inputs: CardInputs, *, repo_id: str, version: str, figures: Mapping[str, str] | None = None,
                history: Sequence[Mapping[str, Any]] = (), license: str | None = None,
                pretty_name: str | None = None, notice: str | None = None, date: str | None = None,
                yaml_configs: Sequence[Mapping[str, Any]] | None = None, template_path: str | Path | None = None):
    """The ``huggingface_hub.DatasetCard`` of a run, from the template shipped with promptmix.

    ``figures`` maps figure names (see :func:`make_card_figures`) to repo-relative PNG paths;
    ``history`` lists earlier versions (``version``, ``date``, ``notes``, row counts); ``license``
    overrides the derived license id; ``date`` (ISO) defaults to ``SOURCE_DATE_EPOCH`` or today.
    """
    ctx, metadata = card_context(inputs, repo_id=repo_id, version=version, figures=figures, history=history,
                                 license=license, pretty_name=pretty_name, notice=notice, date=date,
                                 yaml_configs=yaml_configs)
    return card_from_context(ctx, metadata, inputs.configs, template_path=template_path)


def card_from_context(ctx: Mapping[str, Any], metadata: Mapping[str, Any], configs: Mapping[str, Mapping[str, Any]],
                      *, template_path: str | Path | None = None):
    """Render the template with ``ctx`` under a ``DatasetCardData(**metadata)`` header (plus ``dataset_info``)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    card_data = DatasetCardData(**metadata)
    _add_dataset_info(card_data, configs)
    template = Path(template_path or TEMPLATE_PATH).read_text(encoding="utf-8")
    card = DatasetCard.from_template(card_data, template_str=template, **ctx)
    text = re.sub(r"\n{3,}", "\n\n", card.content).rstrip() + "\n"
    return DatasetCard(text)


def license_file_text(ctx: Mapping[str, Any]) -> str:
    """``LICENSE.md`` for cards whose license is ``other``: both licenses that apply, with links."""
    gen, src = ctx["generator_license"], ctx["source_license"]

    def line(what: str, lic: Mapping[str, Any]) -> str:
        link = f" <{lic['link']}>" if lic.get("link") else ""
        note = f" ({lic['note']})" if lic.get("note") else ""
        return f"- {what}: **{lic['name']}** (`{lic['id']}`){link}{note}"

    return (f"# License of {ctx['pretty_name']}\n\n"
            "Two sets of terms apply to every row of this dataset, and users must follow both:\n\n"
            f"{line('The images are outputs of the generator ' + ctx['generator'], gen)}\n"
            f"{line('The prompts and labels derive from the source dataset ' + ctx['real_name'], src)}\n\n"
            "The images were generated; no image of the source dataset is redistributed here.\n")
