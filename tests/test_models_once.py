"""Every network is defined once, in ``promptmix.models``, and the annotators and trainers share it."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

import promptmix

SRC = Path(promptmix.__file__).parent


def _module_classes() -> dict[str, list[str]]:
    """Class name -> the files (relative to src/promptmix) that define an ``nn.Module`` class of that name."""
    found: dict[str, list[str]] = defaultdict(list)
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                found[node.name].append(str(path.relative_to(SRC)))
    return found


def test_each_counting_network_is_defined_once_in_models():
    classes = _module_classes()
    for name in ("CSRNet", "ResCSRNet", "DMCount", "SASNet", "GuideDepth", "ResNet18", "WideResNet"):
        assert len(classes[name]) == 1, f"{name} is defined in {classes[name]}"
        assert classes[name][0].startswith("models/"), classes[name]
    # no second VGG ``make_layers`` either: one builder of VGG stacks
    fn_defs = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
               for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
               if isinstance(node, ast.FunctionDef) and node.name in ("make_layers", "_vgg_layers", "vgg_layers")]
    assert fn_defs == ["models/backbones.py"]


def test_the_csrnet_annotator_and_the_csrnet_trainer_build_the_same_class(tmp_path):
    from promptmix.annotation.annotators.registry import build_annotator
    from promptmix.models import create_model
    from promptmix.models.counting import CounterConfig, build_counter, save_counter

    trainer = create_model("csrnet", width_div=16)
    annotator_net = build_counter(CounterConfig.default("csrnet", width_div=16))
    assert type(trainer) is type(annotator_net)
    # weights a trainer saves load into the annotator unchanged (same keys, same forward)
    save_counter(trainer, CounterConfig.default("csrnet", width_div=16), tmp_path / "m")
    ann = build_annotator(str(tmp_path / "m"))
    ann.load()
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        assert torch.equal(ann.model(x), trainer.eval()(x))
    assert isinstance(ann.model, nn.Module) and type(ann.model) is type(trainer)


def test_backbone_kinds_table_equals_each_built_model():
    """``models.BACKBONE_KINDS`` (read without torch, by `promptmix init` and the pre-flight check) is what each
    model carries once built; ``pretrained_id`` maps ``imagenet`` through it."""
    import torch

    from promptmix.models import BACKBONE_KINDS, DEFAULT_PRETRAINED, MODEL_NAMES, MODEL_TASKS, create_model, pretrained_id

    assert set(BACKBONE_KINDS) == set(MODEL_NAMES)
    for name in MODEL_NAMES:
        kwargs = {"num_classes": 2} if MODEL_TASKS[name] == "classification" else {}
        with torch.device("meta"):
            assert create_model(name, **kwargs).backbone_kind == BACKBONE_KINDS[name], name
    assert pretrained_id("rescsrnet", "imagenet") == DEFAULT_PRETRAINED["resnet18"] == "timm/resnet18.tv_in1k"
    assert pretrained_id("csrnet", "imagenet") == "timm/vgg16.tv_in1k"
    assert pretrained_id("efficientnet-b0", "imagenet") == "imagenet"  # no default copy: the loader says how
    assert pretrained_id("csrnet", "me/my-vgg") == "me/my-vgg"
