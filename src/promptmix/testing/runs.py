"""Finished run folders made by the real stages with tiny models, for tests of what reads a finished run
(dataset cards, publishing).

:func:`make_run` writes a raw dataset in its real on-disk layout (:mod:`promptmix.testing.raw_datasets`),
builds it with ``promptmix real``'s builder, and runs the stages ``caption``, ``prompts``, ``generate``,
``annotate`` and ``filter`` through their :class:`~promptmix.stage.Stage` entry points, with the tiny
models of :func:`promptmix.testing.save_tiny_models` served from the Hugging Face cache under realistic
repo ids (:func:`promptmix.testing.hub.install_in_hub_cache`), so every record is what a user's run
writes: the same writers, the same manifest, commit hashes included. Nothing here imitates a stage.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

REAL_NAMES = {"counting": "shanghaitech-part-b", "depth": "nyu-depth-v2", "classification": "cifar10-subset"}
#: the Hub ids the tiny models are served under (what the card and the license rule see)
CAPTIONER_ID = "Salesforce/blip-image-captioning-base"
GENERATOR_ID = "stabilityai/stable-diffusion-2-1-base"


@dataclasses.dataclass(frozen=True)
class FinishedRun:
    run_dir: Path
    real_dir: Path
    task: str
    class_names: tuple[str, ...]
    rows: int  # rows of the fake dataset (config "all")
    kept: int  # rows kept by the filter


def _annotator_models(task: str, names: Sequence[str], class_names: Sequence[str], folder: Path) -> list[str]:
    """SPECs ``NAME:HUB_ID`` of tiny annotators of ``task``, one per name, each different."""
    from . import _annotators
    from .hub import install_in_hub_cache

    specs = []
    for i, name in enumerate(names):
        path = folder / f"{task}-{name}"
        if task == "counting":
            arch = ("csrnet", "dmcount", "sasnet")[i % 3]
            _annotators.save_tiny_counter(path, arch=arch, seed=i) if not path.exists() else None
        elif task == "depth":
            _annotators.save_tiny_depth(path, seed=i) if not path.exists() else None
        else:
            _annotators.save_tiny_classifier(path, class_names=class_names, seed=i) if not path.exists() else None
        repo = f"promptmix-test/{name}-{task}"
        install_in_hub_cache(path, repo)
        specs.append(f"{name}:{repo}")
    return specs


def _real_dataset(task: str, root: Path, n_real: int, class_names: Sequence[str], seed: int) -> tuple[Path, dict]:
    """A raw download of ``task`` and the ``real`` config that builds it with ``n_real`` training images."""
    from . import raw_datasets as raw

    if task == "counting":  # ShanghaiTech layout; one training image moves to validation
        src = raw.write_shanghaitech_raw(root / "raw", part="B", n_train=n_real + 1, n_test=2, size=(48, 32),
                                         seed=seed, quality=75, grayscale_every=3, people=(3, 9))
        return src, {"builder": "shanghaitech", "root": str(src), "part": "B",
                     "options": {"validation_fraction": 1 / (n_real + 1)}}
    if task == "depth":
        mat = raw.write_nyu_labeled_mat(root / "raw" / "nyu_depth_v2_labeled.mat", n=max(5, round(n_real / 0.7)),
                                        size=(48, 32), seed=seed)
        return mat, {"builder": "nyu-depth-v2", "mat": str(mat)}
    src = raw.write_imagefolder(root / "raw", class_names, per_class=max(2, n_real // len(class_names) + 1),
                                with_split=True, size=(32, 32), seed=seed, test_per_class=1, quality=75)
    return src, {"builder": "imagefolder", "root": str(src)}


def make_run(root: str | Path, *, task: str = "counting", class_names: Sequence[str] = ("cat", "dog", "bird"),
             n_real: int = 4, k: int = 3, annotators: Sequence[str] = ("csrnet", "dmcount"),
             keep_percent: float = 60.0, manual_prompts: Sequence[str] = ("a crowded train station platform",),
             seed: int = 1234, models: dict[str, Path] | None = None) -> FinishedRun:
    """Write ``root/<real name>`` (built from ``root/raw``) and ``root/run`` (caption ... filter) and return them.

    ``n_real`` real training images (counting: exactly), each captioned; every caption prompt (kept apart:
    no merging of equal captions) plus, for counting, each manual prompt gives ``k`` images generated with
    ``seed``; ``annotators`` name tiny annotators of the task; the filter keeps ``keep_percent`` %. ``models``:
    folders from :func:`promptmix.testing.save_tiny_models` (made under ``root/models`` when not given).
    The tiny captioner and generator are served as :data:`CAPTIONER_ID` and :data:`GENERATOR_ID`.
    """
    from ..annotation.annotate.config import AnnotateConfig
    from ..annotation.filter.config import FilterConfig
    from ..builders.config import RealConfig
    from ..generation.caption.config import CaptionConfig
    from ..generation.generate.config import GenerateConfig
    from ..generation.prompts.config import PromptsConfig
    from ..run_folder import RunFolder
    from ..stage import get_stage
    from ..tasks import get_task
    from . import save_tiny_models
    from .hub import install_in_hub_cache

    root = Path(root)
    spec = get_task(task)
    class_names = tuple(class_names) if spec.has_classes else ()
    models = models or save_tiny_models(root / "models", keys=("sd", "captioner"))
    install_in_hub_cache(models["captioner"], CAPTIONER_ID)
    install_in_hub_cache(models["sd"], GENERATOR_ID)

    _, real_raw = _real_dataset(task, root, n_real, class_names or ("cat", "dog", "bird"), seed)
    real_dir = root / REAL_NAMES[task]
    get_stage("real").run(RealConfig.from_dict({**real_raw, "out": str(real_dir), "task": task}, section="real"),
                          None)
    run = RunFolder(root / "run")
    get_stage("caption").run(CaptionConfig(real=str(real_dir), model=CAPTIONER_ID, max_new_tokens=8, batch_size=8),
                             run)
    prompts = PromptsConfig(prefix="large crowd" if task == "counting" else "", suffix="grayscale", dedupe=False,
                            manual=list(manual_prompts) if task == "counting" else [])
    get_stage("prompts").run(prompts, run)
    generate = GenerateConfig(prompts=str(run.prompts), model=GENERATOR_ID, images_per_prompt=k, seed=seed, steps=2,
                              max_side=64, default_jpeg_quality=75, batch_size=8, device="cpu")
    get_stage("generate").run(generate, run)
    specs = _annotator_models(task, annotators, class_names, root / "models")
    get_stage("annotate").run(AnnotateConfig(annotators=specs, batch_size=8, device="cpu"), run)
    record = get_stage("filter").run(FilterConfig(keep_percent=keep_percent if len(annotators) > 1 else 100.0,
                                                  target="mean" if len(annotators) > 1 else "first"), run)
    return FinishedRun(run_dir=run.root, real_dir=real_dir, task=task, class_names=class_names,
                       rows=int(record["rows"]), kept=int(record["kept"]))
