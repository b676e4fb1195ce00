"""Training recipes (promptmix.training.train.recipes): presets, optimisers, augmentation policies, Cutout;
every preset trains one toy epoch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from promptmix.errors import ConfigError, InputError
from promptmix.training.train import augment as A
from promptmix.training.train.config import TrainConfig
from promptmix.training.train.recipes import RECIPE_FIELDS, RECIPE_NAMES, RECIPES
from promptmix.training.train.trainer import make_optimizer

BASE = {"task": "classification", "real": "r", "output_dir": "o"}


def test_default_recipe_is_the_promptmix_one_and_explicit_settings_win():
    cfg = TrainConfig(**BASE)
    assert cfg.recipe == "promptmix"
    assert (cfg.optimizer, cfg.weight_decay, cfg.lr_schedule, cfg.lr_decay, cfg.lr, cfg.augment, cfg.cutout) == (
        "adamw", 1e-4, "exponential", 0.99, None, "crop-flip", 0)  # AdamW x0.99, lr from the grid (IV-A)
    aa = TrainConfig(**BASE, recipe="autoaugment-cifar", weight_decay=5e-3)
    assert (aa.optimizer, aa.momentum, aa.nesterov, aa.lr, aa.lr_schedule, aa.augment, aa.cutout) == (
        "sgd", 0.9, True, 0.1, "cosine", "autoaugment-cifar", 16)
    assert aa.weight_decay == 5e-3  # given explicitly: the preset does not override it
    again = TrainConfig.from_dict(aa.to_dict())  # the saved (resolved) config reads back to the same run
    assert again == aa and again.config_hash() == aa.config_hash()
    bt = TrainConfig.from_dict({**BASE, "recipe": "brain-tumour-efficientnet", "lr_milestones": [5, 9]})
    assert (bt.optimizer, bt.lr, bt.lr_schedule, bt.lr_gamma, bt.lr_milestones) == ("sgd", 0.02, "multistep", 0.1,
                                                                                   (5, 9))
    for name in RECIPE_NAMES:  # every preset fills every recipe setting
        assert set(RECIPES[name]) == set(RECIPE_FIELDS)
    with pytest.raises(ConfigError, match="recipe: expected one of"):
        TrainConfig(**BASE, recipe="sgd-please")
    with pytest.raises(ConfigError, match="nesterov"):
        TrainConfig(**BASE, optimizer="adam", nesterov=True)
    with pytest.raises(ConfigError, match="augment_policy"):
        TrainConfig(**BASE, recipe="fast-autoaugment-cifar")
    with pytest.raises(ConfigError, match="augment: expected crop-flip for a counting run"):
        TrainConfig(task="counting", real="r", output_dir="o", augment="randaugment")


def test_optimizers_follow_the_recipe():
    params = [torch.nn.Parameter(torch.zeros(2))]
    sgd = make_optimizer(params, TrainConfig(**BASE, recipe="randaugment-cifar"), 0.1)
    assert isinstance(sgd, torch.optim.SGD)
    group = sgd.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (0.1, 0.9, True, 5e-4)
    adam = make_optimizer(params, TrainConfig(**BASE, recipe="caltech101-adam"), 1e-4)
    assert type(adam) is torch.optim.Adam and adam.param_groups[0]["weight_decay"] == 0.0
    assert type(make_optimizer(params, TrainConfig(**BASE), 1e-3)) is torch.optim.AdamW


def _image(seed=0, size=32):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def test_operations_do_what_the_paper_says():
    rng = np.random.default_rng(0)
    img = Image.fromarray(_image())
    assert np.array_equal(np.asarray(A.apply_op(img, "Rotate", 0.0, rng)), np.asarray(img))  # level 0: no change
    shifted = np.asarray(A.apply_op(img, "TranslateXAbs", 0.5, np.random.default_rng(1)))  # 5 px, random sign
    arr = np.asarray(img)
    assert np.array_equal(shifted[:, 5:], arr[:, :-5]) or np.array_equal(shifted[:, :-5], arr[:, 5:])
    assert (shifted == 128).all(axis=2).any()  # the uncovered strip is grey
    post = np.asarray(A.apply_op(img, "Posterize", 1.0, rng))  # keep 8 - 4 = 4 bits
    assert (post & 0x0F == 0).all()
    sol = np.asarray(A.apply_op(img, "Solarize", 0.5, rng))  # invert pixels >= 128
    assert np.array_equal(sol, np.where(arr >= 128, 255 - arr, arr))
    assert np.array_equal(np.asarray(A.apply_op(img, "Invert", 0.3, rng)), 255 - arr)
    with pytest.raises(InputError, match="augmentation op"):
        A.apply_op(img, "Blur", 0.5, rng)


def test_policies_are_seeded_and_change_images():
    assert len(A.AUTOAUGMENT_CIFAR10) == len(A.AUTOAUGMENT_IMAGENET) == 25
    assert {op for sub in A.AUTOAUGMENT_CIFAR10 + A.AUTOAUGMENT_IMAGENET for op, _, _ in sub} <= A.OPS
    image = _image(3)
    for kind in ("autoaugment-cifar", "autoaugment-imagenet", "randaugment"):
        policy = A.PolicyAugment(kind, randaugment_ops=2, randaugment_magnitude=9)
        outs = [policy(image, np.random.default_rng(s)) for s in range(12)]
        assert np.array_equal(outs[0], policy(image, np.random.default_rng(0)))  # same generator, same image
        assert sum(not np.array_equal(o, image) for o in outs) >= 6  # most draws change the picture
        assert all(o.shape == image.shape and o.dtype == np.uint8 for o in outs)
    assert not A.PolicyAugment("crop-flip").changes_pixels


def test_cutout_zeroes_one_square():
    x = torch.ones(3, 32, 32)
    out = A.cutout(x, 16, np.random.default_rng(4))
    zero = (out == 0).all(dim=0)
    rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
    assert 0 < zero.sum() <= 256 and zero.sum() == len(rows) * len(cols)  # one rectangle, at most 16 x 16
    assert (len(rows) == 16 or rows.min() == 0 or rows.max() == 31) and x.sum() == 3 * 32 * 32  # input untouched
    assert torch.equal(A.cutout(x, 0, np.random.default_rng(0)), x)


def test_policy_file(tmp_path):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps([[["ShearX", 0.5, 0.3], ["Cutout", 1.0, 0.5]], [["Equalize", 0.2, 0.0]]]))
    policy = A.PolicyAugment("policy-file", policy_file=path)
    assert len(policy.policy) == 2 and policy(_image(), np.random.default_rng(0)).shape == (32, 32, 3)
    path.write_text(json.dumps([[["ShearX", 0.5, 3]]]))  # an AutoAugment level (0-9), not [0, 1]
    with pytest.raises(InputError, match="level in \\[0, 1\\]"):
        A.load_policy_file(path)
    with pytest.raises(InputError, match="does not exist"):
        A.load_policy_file(tmp_path / "none.json")


@pytest.fixture(scope="module")
def tiny_classification(tmp_path_factory):
    from promptmix.testing.synthetic import write_real_dataset

    folder = tmp_path_factory.mktemp("recipes")
    real = write_real_dataset(folder / "real", "classification", sizes={"train": 6, "validation": 3, "test": 3},
                              size=(32, 32))
    policy = folder / "policy.json"
    policy.write_text(json.dumps([[["Rotate", 0.8, 0.4], ["Color", 0.5, 0.9]], [["TranslateYAbs", 0.9, 0.5]]]))
    return folder, real, policy


@pytest.mark.parametrize("recipe", RECIPE_NAMES)
def test_every_recipe_trains_one_toy_epoch(recipe, tiny_classification):
    from promptmix.training.train.trainer import train

    folder, real, policy = tiny_classification
    extra = {"augment_policy": str(policy)} if recipe == "fast-autoaugment-cifar" else {}
    cfg = TrainConfig(**{**BASE, "real": str(real), "output_dir": str(folder / recipe)}, recipe=recipe,
                      model="resnet18", width_div=16, image_size=32, epochs=1, batch_size=3,
                      lr=None if RECIPES[recipe]["lr"] else 1e-3, report_to="none", cpu=True, **extra)
    metrics = train(cfg)
    (epoch,) = metrics["history"]
    assert epoch["steps"] == 2 and np.isfinite(epoch["train_loss"]) and epoch["real_rows"] == 6
    assert metrics["chosen_lr"] == (RECIPES[recipe]["lr"] or 1e-3)  # the recipe's learning rate
    assert 0.0 <= metrics["test/top1"] <= 1.0
