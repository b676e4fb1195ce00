"""BatchNorm at batch size 1: ``bn: auto`` freezes it (running statistics, never updated; scale and shift
still trained), ``bn: train`` keeps PyTorch's behaviour and warns."""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import load_file

from promptmix.models import create_model
from promptmix.models.norm import apply_bn_mode, batchnorm_layers, resolve_bn_mode
from promptmix.testing.synthetic import write_real_dataset
from promptmix.training.train.config import TrainConfig
from promptmix.training.train.trainer import train


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def test_auto_resolves_by_batch_size_and_frozen_means_eval_mode_with_trained_affine():
    assert resolve_bn_mode("auto", 1) == "frozen" and resolve_bn_mode("auto", 8) == "train"
    assert resolve_bn_mode("train", 1) == "train" and resolve_bn_mode("frozen", 8) == "frozen"
    assert TrainConfig(task="counting", real="r", output_dir="o").bn_mode == "frozen"  # the default batch size is 1
    assert TrainConfig(task="counting", real="r", output_dir="o", batch_size=4).bn_mode == "train"

    torch.manual_seed(0)
    model = create_model("rescsrnet", width_div=16)
    bns = batchnorm_layers(model)
    assert len(bns) == 10  # bn1, two per block in layer1-2 (4 blocks), layer2.0.downsample.1
    model.train()
    apply_bn_mode(model, "frozen")
    assert model.training and not any(m.training for m in bns)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(1, 3, 64, 64)
    model(x).pow(2).sum().backward()
    opt.step()
    after = model.state_dict()
    stats = [k for k in before if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)  # never updated
    assert not torch.equal(before["frontend.bn1.weight"], after["frontend.bn1.weight"])  # affine still trains
    # frozen: one image's output does not depend on the others in its batch (evaluation's network)
    model.zero_grad()
    y = torch.randn(2, 3, 64, 64)
    features = lambda x: model.frontend(x)[-1]  # noqa: E731 - the BatchNorm part of the network
    with torch.no_grad():
        assert torch.allclose(features(y[:1]), features(y)[:1], atol=1e-5)
        model.train()  # PyTorch's training mode: the batch statistics couple the images
        assert not torch.allclose(features(y[:1]), features(y)[:1], atol=1e-2)


def test_training_at_batch_1_freezes_by_default_and_warns_when_bn_trains(tmp_path, caplog):
    real = write_real_dataset(tmp_path / "real", "counting", sizes={"train": 3, "validation": 2, "test": 2})
    kw = dict(task="counting", real=str(real), model="rescsrnet", width_div=16, epochs=1, lr=1e-3, batch_size=1,
              report_to="none", cpu=True)
    init = create_model("rescsrnet", width_div=16).state_dict()
    with caplog.at_level(logging.WARNING, logger="promptmix.training.train.trainer"):
        train(TrainConfig(output_dir=str(tmp_path / "auto"), **kw))
    assert not [r for r in caplog.records if "BatchNorm" in r.getMessage()]
    best = load_file(str(tmp_path / "auto" / "lr-0.001" / "best" / "model.safetensors"))
    assert torch.equal(best["frontend.bn1.running_var"], init["frontend.bn1.running_var"])  # not updated
    assert not torch.equal(best["frontend.bn1.weight"], init["frontend.bn1.weight"])  # trained

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="promptmix.training.train.trainer"):
        train(TrainConfig(output_dir=str(tmp_path / "train"), bn="train", **kw))
    warned = [r.getMessage() for r in caplog.records if "BatchNorm trains at batch size 1" in r.getMessage()]
    assert len(warned) == 1 and "bn: frozen" in warned[0]
    best = load_file(str(tmp_path / "train" / "lr-0.001" / "best" / "model.safetensors"))
    assert not torch.equal(best["frontend.bn1.running_var"], init["frontend.bn1.running_var"])
