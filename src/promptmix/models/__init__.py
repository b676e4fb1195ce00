"""Every network of the project, once: the trainers' registry (timm-style ``create_model(name, ...)``) and
the annotators' released architectures.

Modules: :mod:`.csrnet` (CSRNet: the csrnet annotator and the csrnet trainer), :mod:`.rescsrnet`,
:mod:`.dmcount`, :mod:`.sasnet` (the authors' module trees), :mod:`.counting` (counting-model folder format,
loading authors' checkpoints, ``predict_density``), :mod:`.classification`, :mod:`.depth`,
:mod:`.backbones` (VGG / ResNet pieces with torchvision's names), :mod:`.pretrained` (ImageNet backbones),
:mod:`.checkpoints` (safe weight loading, checkpoint inspection), :mod:`.norm` (BatchNorm modes),
:mod:`.info` (parameters, GMACs).

Trainers' networks:

===================  ==============  =============================================  ==============================
name                 task            architecture                                   ImageNet backbone
===================  ==============  =============================================  ==============================
csrnet               counting        VGG-16 front end + dilated back end            VGG-16 (torchvision)
rescsrnet            counting        ResNet-18 ``layer1-2`` + 128-ch back end       ResNet-18 (torchvision)
guidedepth           depth           GuideDepth (Rudolph et al. 2022): DDRNet-23-   DDRNet-23-slim (the authors'
                                     slim + guided upsampling decoder               ImageNet checkpoint's keys)
guidedepth-resnet18  depth           ResNet-18 ``layer1-3`` + the same decoder      ResNet-18 (torchvision)
                                     (this project's earlier depth student)
resnet18             classification  ResNet-18                                      ResNet-18 (torchvision)
resnet50             classification  ResNet-50 (torchvision v1.5 bottlenecks)       ResNet-50 (torchvision)
wide-resnet50-2      classification  Wide ResNet-50-2 (bottlenecks twice as wide)   Wide ResNet-50-2 (torchvision)
efficientnet-b0      classification  EfficientNet-B0 (Tan & Le 2019)                EfficientNet-B0 (torchvision)
wrn-28-2             classification  Wide ResNet-28-2 (CIFAR)                       none (random init)
wrn-28-10            classification  Wide ResNet-28-10 (CIFAR)                      none (random init)
===================  ==============  =============================================  ==============================

``width_div`` divides every channel width (tiny models for tests: ``width_div=16``).
``pretrained`` loads an ImageNet backbone from safetensors in torchvision's key layout: a file,
a folder holding one, a Hub id (e.g. ``timm/resnet18.tv_in1k``), or ``"imagenet"`` for the
default Hub id of the model's backbone (:data:`DEFAULT_PRETRAINED`). Without it the model is
randomly initialised (no network needed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..errors import ConfigError
from .backbone_ids import BACKBONE_KINDS, DEFAULT_PRETRAINED

if TYPE_CHECKING:  # pragma: no cover - torch is imported when a model is built (keeps the name tables light)
    from torch import nn

MODEL_TASKS = {
    "csrnet": "counting",
    "rescsrnet": "counting",
    "guidedepth": "depth",
    "guidedepth-resnet18": "depth",
    "resnet18": "classification",
    "resnet50": "classification",
    "wide-resnet50-2": "classification",
    "efficientnet-b0": "classification",
    "wrn-28-2": "classification",
    "wrn-28-10": "classification",
}
MODEL_NAMES = tuple(MODEL_TASKS)
DEFAULT_MODEL = {"counting": "rescsrnet", "depth": "guidedepth", "classification": "resnet18"}
def pretrained_id(model_name: str, pretrained: str) -> str:
    """What ``pretrained`` names for ``model_name``: ``imagenet`` is its backbone's default Hub id (or stays
    ``imagenet`` when the backbone has none); anything else is itself."""
    if pretrained != "imagenet":
        return pretrained
    return DEFAULT_PRETRAINED.get(BACKBONE_KINDS.get(model_name), pretrained)


def _builders() -> dict[str, Callable[..., nn.Module]]:
    from .classification import ResNet18, WideResNet
    from .csrnet import CSRNet
    from .depth import GuideDepth, GuideDepthResNet18
    from .imagenet import EfficientNetB0, ResNetBottleneck
    from .rescsrnet import ResCSRNet

    return {
        "csrnet": lambda width_div, **kw: CSRNet(width_div=width_div),
        "rescsrnet": lambda width_div, **kw: ResCSRNet(width_div=width_div),
        "guidedepth": lambda width_div, max_depth=10.0, **kw: GuideDepth(width_div=width_div, max_depth=max_depth),
        "guidedepth-resnet18": lambda width_div, max_depth=10.0, **kw: GuideDepthResNet18(
            width_div=width_div, max_depth=max_depth),
        "resnet50": lambda width_div, num_classes, **kw: ResNetBottleneck(num_classes, width_div=width_div),
        "wide-resnet50-2": lambda width_div, num_classes, **kw: ResNetBottleneck(
            num_classes, width_div=width_div, width_per_group=128),
        "efficientnet-b0": lambda width_div, num_classes, dropout=0.2, **kw: EfficientNetB0(
            num_classes, width_div=width_div, dropout=dropout),
        "resnet18": lambda width_div, num_classes, cifar_stem=False, **kw: ResNet18(
            num_classes, width_div=width_div, cifar_stem=cifar_stem),
        "wrn-28-2": lambda width_div, num_classes, dropout=0.0, **kw: WideResNet(
            28, 2, num_classes, width_div=width_div, dropout=dropout),
        "wrn-28-10": lambda width_div, num_classes, dropout=0.0, **kw: WideResNet(
            28, 10, num_classes, width_div=width_div, dropout=dropout),
    }


def list_models(task: str | None = None) -> list[str]:
    return [n for n, t in MODEL_TASKS.items() if task is None or t == task]


def model_task(name: str) -> str:
    try:
        return MODEL_TASKS[name]
    except KeyError:
        raise ConfigError(f"model: expected one of {', '.join(MODEL_NAMES)}; got {name!r}") from None


def create_model(name: str, *, pretrained: str | None = None, pretrained_revision: str | None = None,
                 width_div: int = 1, num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    """Build model ``name``; see the module docstring for names and ``pretrained``.

    Extra keyword arguments: ``cifar_stem`` (resnet18), ``dropout`` (wrn-*, efficientnet-b0), ``max_depth``
    (guidedepth, guidedepth-resnet18).
    The model carries ``task``, ``output_stride`` and, after loading, ``pretrained_source``
    (a record of the weights used).
    """
    task = model_task(name)
    if int(width_div) < 1:
        raise ConfigError(f"width_div: expected an integer >= 1; got {width_div!r}")
    if task == "classification":
        if num_classes is None or int(num_classes) < 1:
            raise ConfigError(f"num_classes: model {name} needs a positive class count; got {num_classes!r}")
        kwargs["num_classes"] = int(num_classes)
    model = _builders()[name](int(width_div), **kwargs)
    model.model_name = name
    model.pretrained_source = None
    if pretrained:
        if model.backbone_kind is None:
            raise ConfigError(f"pretrained: model {name} has no ImageNet backbone to load (it trains from "
                              f"random initialisation); got {pretrained!r}")
        if int(width_div) != 1:
            raise ConfigError(f"pretrained: ImageNet weights fit only full-width models (width_div 1); "
                              f"got width_div {width_div}")
        from .pretrained import load_pretrained_backbone

        model.pretrained_source = load_pretrained_backbone(model, pretrained, pretrained_revision)
    return model


def __getattr__(name: str) -> Any:
    if name == "load_pretrained_backbone":
        from . import pretrained

        return getattr(pretrained, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BACKBONE_KINDS", "DEFAULT_MODEL", "DEFAULT_PRETRAINED", "MODEL_NAMES", "MODEL_TASKS", "create_model", "list_models",
           "load_pretrained_backbone", "model_task"]
