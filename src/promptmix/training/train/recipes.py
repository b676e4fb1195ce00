"""Training recipes: named presets of optimiser, learning-rate schedule and augmentation settings.

A :class:`~promptmix.training.train.config.TrainConfig` names one with ``recipe``; every recipe
setting the config leaves unset (``None``) takes the preset's value, and a setting given explicitly
always wins (``recipe: autoaugment-cifar`` with ``weight_decay: 5.0e-3`` is the AutoAugment recipe
with another weight decay). The resolved values are what the run's ``config.yaml`` records.

================================ ========================================================================
recipe                           settings (and where they come from)
================================ ========================================================================
``promptmix`` (default)          AdamW, weight decay 1e-4, lr x 0.99 after every epoch, lr picked from
                                 {1e-3, 1e-4, 1e-5, 1e-6} on the validation split; crop-flip
                                 augmentation (PromptMix Sec. IV-A; also what every run used before
                                 recipes existed)
``autoaugment-cifar``            SGD, momentum 0.9, Nesterov, weight decay 5e-4, lr 0.1, cosine decay;
                                 pad-4 crop + flip, the AutoAugment CIFAR-10 policy, Cutout 16 px
                                 (AutoAugment, Cubuk et al. 2019: Wide-ResNet-28-10 on CIFAR, 200
                                 epochs, batch 128; Cutout as in its CIFAR pipeline)
``randaugment-cifar``            the same optimiser and schedule; RandAugment with N ops of magnitude M
                                 (``randaugment_ops``/``randaugment_magnitude``, default N=3, M=4, the
                                 values RandAugment reports for Wide-ResNet-28-2 on CIFAR-10; set your
                                 network's), then Cutout 16 px (RandAugment, Cubuk et al. 2020)
``fast-autoaugment-cifar``       the same optimiser and schedule; a searched policy read from
                                 ``augment_policy`` (a JSON file, Fast AutoAugment's format: sub-policies
                                 of ``[op, probability, level in [0, 1]]``; export ``fa_reduced_cifar10``
                                 from the authors' ``archive.py``), then Cutout 16 px (Lim et al. 2019)
``caltech101-adam``              Adam, lr 1e-4, no weight decay, constant lr; crop-flip augmentation
                                 (MVC supplement Sec. 1: "LR: 0.0001, Optimizer: Adam ... Batch Size: 50")
``brain-tumour-adam``            Adam, lr 1e-3, no weight decay, constant lr (MVC supplement Sec. 1:
                                 ResNet50 and WideResNet-50-2, "LR:0.001, ADAM optimizer, batch size:50")
``brain-tumour-efficientnet``    SGD (momentum 0.9: not given in the paper), lr 0.02, multistep decay
                                 gamma 0.1 at half and three quarters of the epochs (milestones not given)
                                 (MVC supplement Sec. 1: EfficientNet-b0 "LR:0.02, Optimizer: SGD with
                                 Multistep Scheduler and gamma=0.1")
================================ ========================================================================

Epochs and batch size are not part of a recipe: each config states them (the papers' values are in
the configs' comments). The MVC tables' "AA" and "RA" columns on 224 x 224 images (Caltech101, the
brain-tumour MRI set) combine the Adam/SGD recipes above with ``augment: autoaugment-imagenet`` or
``randaugment``.
"""

from __future__ import annotations

from typing import Any

from ...errors import ConfigError

#: the settings a recipe fills in (each a TrainConfig field whose ``None`` means "from the recipe")
RECIPE_FIELDS = ("lr", "optimizer", "momentum", "nesterov", "weight_decay", "lr_schedule", "lr_decay",
                 "lr_milestones", "lr_gamma", "augment", "cutout", "randaugment_ops", "randaugment_magnitude")

_BASE: dict[str, Any] = {
    "lr": None, "optimizer": "adamw", "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4,
    "lr_schedule": "exponential", "lr_decay": 0.99, "lr_milestones": (), "lr_gamma": 0.1,
    "augment": "crop-flip", "cutout": 0, "randaugment_ops": 2, "randaugment_magnitude": 9.0,
}
_CIFAR_SGD = {"lr": 0.1, "optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
              "lr_schedule": "cosine", "lr_decay": 1.0, "cutout": 16}

RECIPES: dict[str, dict[str, Any]] = {
    "promptmix": dict(_BASE),
    "autoaugment-cifar": {**_BASE, **_CIFAR_SGD, "augment": "autoaugment-cifar"},
    "randaugment-cifar": {**_BASE, **_CIFAR_SGD, "augment": "randaugment", "randaugment_ops": 3,
                          "randaugment_magnitude": 4.0},
    "fast-autoaugment-cifar": {**_BASE, **_CIFAR_SGD, "augment": "policy-file"},
    "caltech101-adam": {**_BASE, "lr": 1e-4, "optimizer": "adam", "weight_decay": 0.0, "lr_decay": 1.0},
    "brain-tumour-adam": {**_BASE, "lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0, "lr_decay": 1.0},
    "brain-tumour-efficientnet": {**_BASE, "lr": 0.02, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.0,
                                  "lr_schedule": "multistep", "lr_decay": 1.0, "lr_gamma": 0.1},
}
RECIPE_NAMES = tuple(RECIPES)


def recipe_values(name: str) -> dict[str, Any]:
    """The settings of recipe ``name`` (a copy)."""
    try:
        return dict(RECIPES[name])
    except KeyError:
        raise ConfigError(f"recipe: expected one of {', '.join(RECIPE_NAMES)}; got {name!r}") from None


def resolve_recipe(config: Any) -> None:
    """Fill every recipe field of ``config`` that is ``None`` from its ``recipe`` (in place).

    ``lr`` stays ``None`` when the recipe has no fixed learning rate (the grid is searched then).
    """
    values = recipe_values(config.recipe)
    for name in RECIPE_FIELDS:
        if getattr(config, name) is None:
            value = values[name]
            setattr(config, name, tuple(value) if isinstance(value, list) else value)
