"""The local files a pipeline config reads, and where each input of the papers' configs comes from.

:data:`SOURCES` is the table of ``docs/DATASETS.md``: every raw dataset, checkpoint and policy file the configs in
``configs/`` name, with its link. :func:`local_inputs` lists the files a config reads (raw data, annotator
checkpoints, backbone weights, policy files, manual prompts), which ``PipelineConfig.check_inputs`` (``promptmix run
--check``) and ``promptmix init`` report with those links. Nothing here imports torch or datasets.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable

DOCS = "docs/DATASETS.md"


@dataclasses.dataclass(frozen=True)
class Source:
    """Where an input of the papers' configs comes from: ``path`` as the configs write it (a prefix)."""

    path: str
    what: str
    url: str
    how: str = ""


#: every local input of configs/ (path prefixes as the configs write them), with its origin
SOURCES: tuple[Source, ...] = (
    Source("data/ShanghaiTech", "ShanghaiTech parts A and B (Zhang et al., CVPR 2016): part_A/ and part_B/, each "
           "with train_data/ and test_data/ holding images/IMG_n.jpg and ground-truth/GT_IMG_n.mat",
           "https://www.kaggle.com/datasets/tthien/shanghaitech",
           "unzip so that data/ShanghaiTech/part_B/train_data/images exists (the MCNN authors' release, also linked "
           "from https://github.com/leeyeehoo/CSRNet-pytorch)"),
    Source("data/UCF-QNRF_ECCV18", "UCF-QNRF (Idrees et al., ECCV 2018): Train/ and Test/ with img_NNNN.jpg and "
           "img_NNNN_ann.mat", "https://www.crcv.ucf.edu/data/ucf-qnrf/",
           "unzip UCF-QNRF_ECCV18.zip into data/"),
    Source("data/nyu_depth_v2_labeled.mat", "NYU Depth V2, labeled subset (Silberman et al., ECCV 2012): 1,449 "
           "RGB-D images, MATLAB v7.3 (2.8 GB)",
           "http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat",
           "the dataset page: https://cs.nyu.edu/~fergus/datasets/nyu_depth_v2.html"),
    Source("data/PANDA-Crowd", "PANDA-Crowd (Wang et al., CVPR 2020): image_train/<scene>/*.jpg and "
           "image_annos/*.json with head boxes", "http://www.panda-dataset.com/",
           "the layout the PANDA toolkit reads (https://github.com/GigaVision/PANDA-Toolkit)"),
    Source("data/caltech101", "Caltech101 (Fei-Fei et al., 2004): 101_ObjectCategories/<class>/image_NNNN.jpg",
           "https://data.caltech.edu/records/mzrjq-6wc02",
           "extract 101_ObjectCategories and move BACKGROUND_Google out of it (it is not a class)"),
    Source("data/brain-tumor-mri", "the brain-tumour MRI set MVC uses (it cites Chaki & Wozniak, 2023): Training/ "
           "and Testing/, one folder per class",
           "https://www.kaggle.com/datasets/masoudnickparvar/brain-tumor-mri-dataset",
           "that release has the Training/ and Testing/ layout the config expects"),
    Source("data/policies/fast_autoaugment_cifar.json", "the Fast AutoAugment authors' searched CIFAR policy, as JSON",
           "https://github.com/kakaobrain/fast-autoaugment",
           "python -c \"import json; from FastAutoAugment.archive import fa_reduced_cifar10; "
           "json.dump(fa_reduced_cifar10(), open('data/policies/fast_autoaugment_cifar.json', 'w'))\""),
    Source("checkpoints/SASNet_SHHA.pth", "SASNet trained on ShanghaiTech A, released by its authors (Song et al., "
           "AAAI 2021) as SHHA.pth", "https://github.com/TencentYoutuResearch/CrowdCounting-SASNet",
           "the README's Google Drive folder (https://drive.google.com/drive/folders/"
           "17WobgYjekLTq3QIRW3wPyNByq9NJTmZ9): save SHHA.pth as checkpoints/SASNet_SHHA.pth"),
    Source("checkpoints/SASNet_SHHB.pth", "SASNet trained on ShanghaiTech B, released by its authors as SHHB.pth",
           "https://github.com/TencentYoutuResearch/CrowdCounting-SASNet",
           "the README's Google Drive folder (https://drive.google.com/drive/folders/"
           "17WobgYjekLTq3QIRW3wPyNByq9NJTmZ9): save SHHB.pth as checkpoints/SASNet_SHHB.pth"),
    Source("checkpoints/DMCount_QNRF.pth", "DM-Count (VGG-19) trained on UCF-QNRF, released by its authors (Wang et "
           "al., NeurIPS 2020) as model_qnrf.pth", "https://github.com/cvlab-stonybrook/DM-Count",
           "the README's Pretrained models (pretrained_models/ or its Google Drive folder): save model_qnrf.pth as "
           "checkpoints/DMCount_QNRF.pth"),
    Source("checkpoints/SASNet_PANDA.pth", "a SASNet fine-tuned on PANDA-Crowd: no released weights (the paper "
           "fine-tuned its own)", "https://github.com/TencentYoutuResearch/CrowdCounting-SASNet",
           "fine-tune SHHA.pth on PANDA-Crowd with the SASNet code and save the state dict here"),
    Source("checkpoints/ddrnet23s_imagenet.safetensors", "DDRNet-23-slim ImageNet weights, GuideDepth's encoder "
           "(DDRNet23s_imagenet.pth)", "https://github.com/ydhongHIT/DDRNet",
           "as linked from https://github.com/mic-rud/GuideDepth; convert: python -c \"import torch; from "
           "safetensors.torch import save_file; save_file(torch.load('DDRNet23s_imagenet.pth', weights_only=True), "
           "'checkpoints/ddrnet23s_imagenet.safetensors')\""),
    Source("checkpoints/efficientnet_b0_imagenet.safetensors", "torchvision's EfficientNet-B0 ImageNet weights "
           "(IMAGENET1K_V1)", "https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth",
           "convert: python -c \"import torch; from safetensors.torch import save_file; save_file(torch.load("
           "'efficientnet_b0_rwightman-7f5810bc.pth', weights_only=True), "
           "'checkpoints/efficientnet_b0_imagenet.safetensors')\""),
)


def source_of(path: str | Path) -> Source | None:
    """The :data:`SOURCES` entry of an input path (as a config writes it, or under another data folder)."""
    text = Path(path).as_posix()
    for src in SOURCES:
        rel = src.path.split("/", 1)[1]  # under another data or checkpoints folder (`promptmix init --data DIR`)
        if any(text == p or text.startswith(p + "/") or text.endswith("/" + p) or f"/{p}/" in text
               for p in (src.path, rel)):
            return src
    name = Path(text).name
    return next((s for s in SOURCES if Path(s.path).name == name), None)


# -- the inputs of a config ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Input:
    key: str  # the config key that names it
    path: Path
    source: Source | None

    @property
    def present(self) -> bool:
        return self.path.exists()


def _is_local_file_ref(ref: str) -> bool:
    from ..preflight import WEIGHT_SUFFIXES
    from ..utils.model_source import looks_like_path

    return looks_like_path(ref) or Path(ref).suffix.lower() in WEIGHT_SUFFIXES or ref.endswith(".pth.tar")


def local_inputs(config) -> list[Input]:
    """Every local file or folder ``config`` reads, with the config key naming it (raw data, annotator
    checkpoints, backbone weights, policy files, manual prompts)."""
    out: list[Input] = []

    def add(key: str, path: str | Path) -> None:
        p = Path(path)
        if all(i.path != p for i in out):
            out.append(Input(key, p, source_of(p)))

    for path in config.real.local_inputs():
        add("real", path)
    if config.prompts.manual_file is not None:
        add("prompts.manual_file", config.prompts.manual_file)
    if config.annotate is not None:
        from ..annotation.annotators.registry import parse_spec

        for i, spec in enumerate(config.annotate.annotators):
            target = parse_spec(spec).target
            if _is_local_file_ref(target):
                add(f"annotate.annotators[{i}]", target)
    for name, run in config.train.items():
        if run.pretrained and run.pretrained != "imagenet" and _is_local_file_ref(run.pretrained):
            add(f"train.{name}.pretrained", run.pretrained)
        if run.augment_policy:
            add(f"train.{name}.augment_policy", run.augment_policy)
    return out


def hub_models(config) -> list[tuple[str, str]]:
    """``(config key, Hub id)`` of every model and dataset ``config`` downloads from the Hub on first use."""
    from ..utils.model_source import is_hub_id

    out: list[tuple[str, str]] = []
    if config.real.builder == "hub" and getattr(config.real, "dataset", None):
        out.append(("real.dataset", str(config.real.dataset)))
    if config.caption is not None:
        out.append(("caption.model", config.caption.model))
    if config.finetune is not None:
        out.append(("finetune.base_model", config.finetune.base_model))
    elif config.generate.model:
        out.append(("generate.model", config.generate.model))
    if config.annotate is not None:
        from ..annotation.annotators.registry import parse_spec

        for i, spec in enumerate(config.annotate.annotators):
            target = parse_spec(spec).target
            if not _is_local_file_ref(target) and is_hub_id(target):
                out.append((f"annotate.annotators[{i}]", target))
    from ..models import pretrained_id

    for name, run in config.train.items():
        if run.pretrained and not _is_local_file_ref(run.pretrained):
            out.append((f"train.{name}.pretrained", pretrained_id(run.model, run.pretrained)))
    seen: set[str] = set()
    return [(k, v) for k, v in out if is_hub_id(v) and not (v in seen or seen.add(v))]


def missing_message(missing: Iterable[Input]) -> str:
    """One line per missing input: its key, its path and where to get it."""
    lines = []
    for item in missing:
        line = f"  {item.key}: {item.path} does not exist"
        if item.source is not None:
            line += f"; it is {item.source.what}: {item.source.url}"
        lines.append(line)
    return "\n".join(lines)


